"""The node protocol's message shapes and limits, shared by the agent and the CMS.

A small package with no dependency on either side (it imports neither ``node`` nor
``cms``/``failover``; only pydantic, and ``scramp`` and ``cryptography`` for the login
and pairing in ``scram``), so both may import it while staying separate
deployables. ``messages`` holds the answers' schemas, ``limits`` the bounds the CMS
applies to them, ``scram`` the login and the pairing credential, and ``parsing``
the bounded parse that turns bytes into a model or a :class:`BadAnswer` with a short,
readable reason.
"""

from .limits import (
    MAX_ANSWER_BYTES,
    MAX_JSON_DEPTH,
    MAX_LISTING_PAGES,
    MAX_PAGE_ITEMS,
)
from .parsing import BadAnswer, explain, json_depth, loads_bounded, parse, validate

__all__ = [
    "MAX_ANSWER_BYTES",
    "MAX_JSON_DEPTH",
    "MAX_LISTING_PAGES",
    "MAX_PAGE_ITEMS",
    "BadAnswer",
    "explain",
    "json_depth",
    "loads_bounded",
    "parse",
    "validate",
]
