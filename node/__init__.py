"""cms-node: the agent that runs on every recording and failover server.

A separate deployable: it never imports ``cms`` or ``failover``; the only link
with the CMS is the HTTP protocol documented in ``docs/node-api.md``.
"""

__version__ = "0.1.0"
API_VERSION = "1"
