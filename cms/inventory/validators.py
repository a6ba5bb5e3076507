"""The server name rule and the license key format, in one place for model, admin and API.

A name is case sensitive, 1 to 32 Unicode characters, contains none of the
excluded symbols, does not start with a minus sign or a space and does not end
with a space. Each rejection says which part of the rule was broken.

What a screen cannot show is refused as well, wherever a name comes from: control
characters, line and paragraph separators, invisible and bidirectional formatting
characters (a U+202E RIGHT-TO-LEFT OVERRIDE makes "Lobby" read as another name), and
spaces of any kind at either end. Two names are the same server name when they are
equal after NFKC normalisation (a full-width "rec1" is "rec1"); case still counts.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata

from django.core.exceptions import ValidationError

NAME_MAX_LENGTH = 32
EXCLUDED_SYMBOLS = frozenset("~`!@#$%^&*()-_=+[{]}\\|;:'\"<>/?")

# Invisible characters outside the format category (Cf, refused as a whole): Hangul
# fillers, the braille blank and the combining grapheme joiner render as nothing.
INVISIBLE = frozenset("\u115f\u1160\u3164\uffa0\u2800\u034f")
# Control characters have no Unicode name; these are their usual ones.
CONTROL_NAMES = {
    0x00: "NULL",
    0x09: "CHARACTER TABULATION",
    0x0A: "LINE FEED",
    0x0B: "LINE TABULATION",
    0x0C: "FORM FEED",
    0x0D: "CARRIAGE RETURN",
    0x1B: "ESCAPE",
    0x7F: "DELETE",
    0x85: "NEXT LINE",
}
# Which characters a screen cannot show, by kind, in the order messages list them.
UNSEEN_KINDS = {
    "Cc": "control characters",
    "Zl": "line or paragraph separators",
    "Zp": "line or paragraph separators",
    "Cf": "invisible or bidirectional formatting characters",
    "Cs": "unpaired surrogates",
}


def describe(ch: str) -> str:
    """``U+202E RIGHT-TO-LEFT OVERRIDE``: a character a person can look up."""
    code = ord(ch)
    name = unicodedata.name(ch, "") or CONTROL_NAMES.get(code, "")
    if not name:
        name = "CONTROL CHARACTER" if unicodedata.category(ch) == "Cc" else "UNNAMED CHARACTER"
    return f"U+{code:04X} {name}"


def _unseen_kind(ch: str) -> str | None:
    if ch in INVISIBLE:
        return UNSEEN_KINDS["Cf"]
    return UNSEEN_KINDS.get(unicodedata.category(ch))


def _is_space(ch: str) -> bool:
    return ch.isspace() or unicodedata.category(ch) == "Zs"


def unsafe_name_errors(name: str) -> list[str]:
    """The parts of the rule every name obeys, typed or generated from what a server
    reports: no character a screen cannot show, no space of any kind at either end."""
    errors: list[str] = []
    found: dict[str, list[str]] = {}
    for ch in dict.fromkeys(name):  # each character once, in order
        kind = _unseen_kind(ch)
        if kind:
            found.setdefault(kind, []).append(describe(ch))
    for kind in dict.fromkeys(UNSEEN_KINDS.values()):
        if kind in found:
            errors.append(f"The name must not contain {kind}: {', '.join(found[kind])}.")
    if name and _is_space(name[0]):
        errors.append("The first character must not be a space" + _which_space(name[0]))
    if name and _is_space(name[-1]):
        errors.append("The last character must not be a space" + _which_space(name[-1]))
    return errors


def _which_space(ch: str) -> str:
    return "." if ch == " " else f" ({describe(ch)})."


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
    if name[0] == "-":
        errors.append("The first character must not be a minus sign.")
    errors += unsafe_name_errors(name)
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


def comparable_name(name: str) -> str:
    """What two names are compared by: NFKC, case kept (the rule is case sensitive)."""
    return unicodedata.normalize("NFKC", name)


def name_key(name: str) -> str:
    """The stored uniqueness key of a name: a fixed-size digest of its comparable form
    (NFKC can make a name up to 18 times longer, too long for an index)."""
    return hashlib.sha256(comparable_name(name).encode("utf-8", "surrogatepass")).hexdigest()


# A license key: groups of letters and digits (the format the nodes accept).
_LICENSE_KEY = re.compile(r"^[A-Z0-9]{4,8}(-[A-Z0-9]{4,8}){1,7}$")


def license_key_errors(key: str) -> list[str]:
    if not key:
        return ["Enter the license key."]
    if not _LICENSE_KEY.match(key):
        return [
            "A license key is groups of 4 to 8 letters or digits separated by hyphens, "
            "for example ABCD-1234-EFGH-5678."
        ]
    return []
