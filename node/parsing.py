"""Strict parsing of numbers that arrive as text (headers, query strings).

``str.isdigit()`` is true for "²" (which ``int()`` refuses) and for Arabic-Indic
digits (which ``int()`` reads); a header is therefore parsed against an ASCII pattern with a bounded
length, so that a bad value is a 400 and never an exception deeper down.
"""

from __future__ import annotations

import re

from node.errors import bad_request

# 18 digits stay below 2**63: every value fits SQLite and the file system's offsets.
ASCII_INT_RE = re.compile(r"[0-9]{1,18}")


def ascii_int(text: str | None, what: str, minimum: int = 0, maximum: int = 10**18 - 1) -> int:
    """``text`` as an integer within [minimum, maximum], or 400 naming ``what``."""
    if text is None or not ASCII_INT_RE.fullmatch(text):
        raise bad_request(f"{what} must be a whole number (ASCII digits 0-9)")
    value = int(text)
    if not minimum <= value <= maximum:
        raise bad_request(f"{what} must be between {minimum} and {maximum}")
    return value
