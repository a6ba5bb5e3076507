"""The agent's published OpenAPI description matches its routes, operation for operation."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from starlette.routing import Route

from node.app import PREFIX, build_app
from node.core import Options
from node.openapi import build_schema


def routed(allow: bool) -> set[tuple[str, str]]:
    # build_app only reads the runtime's options while it builds the routes.
    app = build_app(SimpleNamespace(options=Options(allow_fault_injection=allow)))
    out = set()
    for route in app.routes:
        assert isinstance(route, Route)
        path = route.path.removeprefix(PREFIX).replace("{path:path}", "{path}")
        out |= {(m.lower(), path) for m in route.methods or () if m != "HEAD"}
    return out


def described(allow: bool) -> set[tuple[str, str]]:
    paths = build_schema(allow)["paths"]
    return {(method, path) for path, ops in paths.items() for method in ops}


@pytest.mark.parametrize("allow", [False, True])
def test_every_route_is_described_and_every_description_is_routed(allow):
    assert routed(allow) == described(allow)


def test_fault_exists_only_with_the_flag():
    assert ("post", "/fault") not in described(False) | routed(False)
    assert ("post", "/fault") in described(True) & routed(True)


def test_every_operation_documents_its_errors_in_one_shape():
    schema = build_schema(True)
    for path, ops in schema["paths"].items():
        for method, op in ops.items():
            for status, response in op["responses"].items():
                if int(status) >= 400:
                    body = response["content"]["application/json"]["schema"]
                    assert body == {"$ref": "#/components/schemas/Error"}, (method, path)
