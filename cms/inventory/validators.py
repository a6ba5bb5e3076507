"""The server name rule of the product, in one place for model, admin and API.

A name is case sensitive, 1 to 32 Unicode characters, contains none of the
excluded symbols, does not start with a minus sign or a space and does not end
with a space. Each rejection says which part of the rule was broken.
"""

from django.core.exceptions import ValidationError

NAME_MAX_LENGTH = 32
EXCLUDED_SYMBOLS = frozenset("~`!@#$%^&*()-_=+[{]}\\|;:'\"<>/?")


def name_rule_errors(name: str) -> list[str]:
    """Every part of the rule that `name` breaks, as messages; empty when it is valid."""
    if not isinstance(name, str) or len(name) == 0:
        return ["The name must have at least 1 character."]
    errors: list[str] = []
    if len(name) > NAME_MAX_LENGTH:
        errors.append(
            f"The name must have at most {NAME_MAX_LENGTH} characters; it has {len(name)}."
        )
    bad = sorted({ch for ch in name if ch in EXCLUDED_SYMBOLS})
    if bad:
        shown = " ".join(bad)
        errors.append(f"The name must not contain these symbols: {shown}")
    if any(ch in "\r\n\t\x00" for ch in name):
        errors.append("The name must not contain control characters (tab, new line).")
    if name[0] == "-":
        errors.append("The first character must not be a minus sign.")
    if name[0] == " ":
        errors.append("The first character must not be a space.")
    if name[-1] == " ":
        errors.append("The last character must not be a space.")
    return errors


def validate_server_name(name: str) -> None:
    """Django validator for a name typed by a person."""
    errors = name_rule_errors(name)
    if errors:
        raise ValidationError(errors, code="invalid_name")


def validate_name_prefix(prefix: str) -> None:
    """A custom prefix of the Prefix-No. naming rule obeys the same rule as a name."""
    errors = [e.replace("The name", "The prefix") for e in name_rule_errors(prefix)]
    if errors:
        raise ValidationError(errors, code="invalid_prefix")
