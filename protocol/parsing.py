"""Bounded, typed parsing of node answers: size, then depth, then JSON, then the schema.

Every step refuses with :class:`BadAnswer`, whose message is short enough to store as
a server's last error and says what was wrong, for example
``volume must be an object (got a string)``. Messages never quote the offending
value: a node could echo a token or a password back.
"""

from __future__ import annotations

import json
import re
from itertools import accumulate
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from .limits import MAX_ANSWER_BYTES, MAX_JSON_DEPTH

M = TypeVar("M", bound=BaseModel)

MESSAGE_LIMIT = 300


class BadAnswer(ValueError):
    """A node's answer that is too large, too deep, not JSON or not of its schema."""

    def __init__(self, message: str) -> None:
        super().__init__(message[:MESSAGE_LIMIT])
        self.message = message[:MESSAGE_LIMIT]

    def __str__(self) -> str:
        return self.message


# A JSON string, or what is left of one when the body ends inside it. Possessive
# quantifiers and the optional character after a backslash mean a match can never
# fail once it started at a quote, so stripping strings is one linear pass however
# the quotes and backslashes are arranged (no backtracking, no retry at each quote).
_STRING = re.compile(rb'"(?:[^"\\]++|\\.?)*+(?:"|\Z)', re.DOTALL)
_NOT_BRACKET = re.compile(rb"[^\[\]{}]++")
_STEPS = bytes.maketrans(b"[{]}", b"\x01\x01\xff\xff")  # +1 / -1 as signed bytes


def json_depth(data: bytes) -> int:
    """The deepest nesting of ``[`` and ``{`` outside strings, without parsing.

    Runs in C (regex, translate, accumulate) before ``json.loads`` ever recurses, so a
    body of 100,000 opening brackets costs milliseconds and no stack.
    """
    brackets = _NOT_BRACKET.sub(b"", _STRING.sub(b"", data)).translate(_STEPS)
    return max(accumulate(memoryview(brackets).cast("b")), default=0)


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def too_large(max_bytes: int) -> BadAnswer:
    return BadAnswer(f"answer larger than {_size(max_bytes)}")


def loads_bounded(
    data: bytes, *, max_bytes: int = MAX_ANSWER_BYTES, max_depth: int = MAX_JSON_DEPTH
) -> Any:
    """``json.loads`` for untrusted bytes: size and depth are checked first."""
    if len(data) > max_bytes:
        raise too_large(max_bytes)
    if json_depth(data) > max_depth:
        raise BadAnswer(f"answer nested deeper than {max_depth} levels")
    try:
        # NaN and Infinity are not JSON; a TTL of NaN would never expire.
        return json.loads(data, parse_constant=_no_constants)
    except RecursionError:  # only if max_depth is set above the interpreter's limit
        raise BadAnswer("answer nested too deep") from None
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, too many digits
        raise BadAnswer(f"answer is not valid JSON ({_first_line(exc)})") from None


def parse(model: type[M], data: bytes, *, max_bytes: int = MAX_ANSWER_BYTES) -> M:
    """Bytes of an answer -> a validated ``model``; :class:`BadAnswer` otherwise."""
    return validate(model, loads_bounded(data, max_bytes=max_bytes))


def validate(model: type[M], value: Any) -> M:
    """An already decoded (and bounded) JSON value -> a validated ``model``."""
    if not isinstance(value, dict):
        raise BadAnswer(f"answer must be a JSON object, not {_kind(value)}")
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        raise BadAnswer(explain(exc)) from None


def explain(exc: ValidationError) -> str:
    """The first problem of a pydantic error in words: ``items[3].size must be an integer``.

    Union branches add their type names to pydantic's location; they are dropped so
    the location is the field's path in the answer.
    """
    errors = exc.errors(include_url=False, include_input=True)
    first = errors[0]
    where = _path(first["loc"])
    same_place = [e for e in errors if _path(e["loc"]) == where]
    if len(same_place) > 1 and all(e["type"] != "missing" for e in same_place):
        text = f"{where} has neither of its allowed forms"
    else:
        text = f"{where} {_phrase(first)}" if where else _phrase(first)
    more = len({_path(e["loc"]) for e in errors}) - 1
    if more:
        text += f" (and {more} more problem{'s' if more > 1 else ''})"
    return text


_PHRASES = {
    "missing": "is missing",
    "model_type": "must be an object",
    "dict_type": "must be an object",
    "model_attributes_type": "must be an object",
    "string_type": "must be a string",
    "int_type": "must be an integer",
    "int_parsing": "must be an integer",
    "int_from_float": "must be an integer",
    "float_type": "must be a number",
    "float_parsing": "must be a number",
    "finite_number": "must be a finite number",
    "bool_type": "must be true or false",
    "list_type": "must be a list",
    "none_required": "must be null",
}


def _phrase(error: dict[str, Any]) -> str:
    kind, ctx = error["type"], error.get("ctx") or {}
    if kind in _PHRASES:
        phrase = _PHRASES[kind]
        if kind != "missing" and "input" in error:
            phrase += f" (got {_kind(error['input'])})"
        return phrase
    if kind == "literal_error":
        return f"must be one of {ctx.get('expected', 'the documented values')}"
    if kind == "too_long":
        return f"has more than {ctx.get('max_length')} items"
    if kind == "string_too_long":
        return f"is longer than {ctx.get('max_length')} characters"
    if kind == "string_too_short":
        return "is empty" if ctx.get("min_length") == 1 else "is too short"
    if kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        return "is out of range (" + str(error["msg"]).lower().replace("input ", "") + ")"
    message = str(error["msg"])
    return "is not valid: " + message[:1].lower() + message[1:]


def _path(loc: tuple[Any, ...]) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        elif isinstance(part, str) and part.isidentifier() and part not in _TYPE_NAMES:
            text += f".{part}" if text else part
        # else: a union branch's tag such as "list[Window]" or "literal['always']"
    return text


_TYPE_NAMES = {"str", "int", "float", "bool", "list", "dict", "none"}


def _kind(value: Any) -> str:
    """The JSON type of ``value`` in words (never the value itself)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _size(n: int) -> str:
    return f"{n // (1024 * 1024)} MiB" if n >= 1024 * 1024 else f"{n} bytes"


def _first_line(exc: Exception) -> str:
    return str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
