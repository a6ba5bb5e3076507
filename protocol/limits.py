"""The bounds the CMS applies to every node answer (documented in docs/node-api.md).

A node is untrusted input: these numbers keep one misbehaving or hostile node from
using up a probe cycle's time, a worker's memory or the parser's stack.
"""

from __future__ import annotations

MAX_ANSWER_BYTES = 1024 * 1024
"""A JSON answer larger than this is refused (file downloads are streamed, not capped)."""

MAX_JSON_DEPTH = 32
"""The deepest nesting of arrays and objects accepted; real answers nest 5 levels."""

MAX_PAGE_ITEMS = 1000
"""The most items one listing page may hold (the node's own `limit` maximum)."""

MAX_LISTING_PAGES = 10_000
"""The most pages one listing follows (10 million files at the node's maximum page)."""

MAX_CAMERAS = 256
"""Cameras in one configuration (the node refuses more)."""

MAX_RECORDING_CAMERAS = 2 * MAX_CAMERAS
"""Cameras a node may record at once: its own plus those it took over."""

MAX_LICENSES = 10_000

MAX_STANDBY = 256
"""Standby configurations one failover node holds (the node refuses more)."""

MAX_TOKEN_TTL = 366 * 86400.0
"""A login token's lifetime, in seconds, that the CMS believes at most."""

MAX_LAN_ADDRESSES = 16
"""Listening addresses a node reports in ``/info`` (``lan``)."""

MAX_ADDRESS_CHARS = 262
"""One ``host:port``: a DNS name (253), a colon and a port, or a bracketed IPv6 address."""

MAX_PEER_PROBE_SECONDS = 2.0
"""The longest a node waits for another node's ``/info`` when the CMS asks it to probe."""
