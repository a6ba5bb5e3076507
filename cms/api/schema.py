"""OpenAPI schema tweaks."""

from drf_spectacular.openapi import AutoSchema


class Schema(AutoSchema):
    def get_operation_id(self) -> str:
        operation_id = super().get_operation_id()
        # /servers/test-connection/ (a server not yet added) and /servers/{id}/test-connection/
        # would otherwise share an id.
        if getattr(self.view, "action", None) == "test_new_connection":
            operation_id = operation_id.replace("test_connection", "test_new_connection")
        return operation_id


ERROR_STATUSES = {
    "400": "Invalid input; `error.fields` says which field broke which rule.",
    "401": "Not authenticated.",
    "403": "Not allowed for this user's role.",
    "404": "No such object (or it belongs to another team).",
    "409": "Not possible in the object's current state, or needs `confirm`.",
    "415": "The request body's content type or encoding cannot be read.",
    "429": "Too many requests (logins are throttled).",
    "502": "A node agent did not answer as expected.",
}


# Read-only fields that only some answers carry (a secret shown once): drf-spectacular
# marks every read-only field required, which these are not.
WRITE_ONCE = {"quickconnect_enrollment_secret"}


def add_error_responses(result: dict, generator: object, request: object, public: bool) -> dict:
    """drf-spectacular postprocessing hook: every operation documents the error shape (and
    the write-once fields are optional)."""
    schemas = result.setdefault("components", {}).setdefault("schemas", {})
    for component in schemas.values():
        properties = component.get("properties", {})
        optional = {n for n in WRITE_ONCE if properties.get(n, {}).get("readOnly")}
        if optional and "required" in component:
            component["required"] = [n for n in component["required"] if n not in optional]
    schemas["Error"] = {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["code", "message"],
                "properties": {
                    "code": {"type": "string", "description": "Stable, for scripts."},
                    "message": {"type": "string", "description": "For people."},
                    "fields": {"type": "object", "additionalProperties": True},
                    "consequences": {"type": "array", "items": {"type": "string"}},
                    "rows": {"type": "object", "additionalProperties": True},
                    "naming": {"type": "array", "items": {"type": "string"}},
                },
                "additionalProperties": True,
            }
        },
    }
    error = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
    for path in result.get("paths", {}).values():
        for operation in path.values():
            responses = operation.setdefault("responses", {})
            for status, description in ERROR_STATUSES.items():
                responses.setdefault(status, {"description": description, **error})
    return result
