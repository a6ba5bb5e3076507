"""QuickConnect registration: tell the CMS host's directory where this node is now.

The node registers ``{id, serial, token, port[, host][, enrollment]}`` at
``<directory>/register`` on start and then every ``INTERVAL`` seconds. The directory
binds the ID only to a node that presents the enrollment secret the CMS issued for it
(``--quickconnect-enrollment``); from then on it knows the node by its serial and
token, and refuses anyone else, so another node cannot hijack the ID. The token is a
random secret kept in the node's state; the enrollment secret is kept in memory only
until the directory accepts it. Neither appears in logs or in ``/info``.
"""

from __future__ import annotations

import json
import logging
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

log = logging.getLogger("node.quickconnect")

INTERVAL = 60.0


class QuickConnectRegistrar(threading.Thread):
    def __init__(
        self,
        directory: str,
        payload: Callable[[], dict[str, Any]],
        status: dict[str, Any],
        interval: float = INTERVAL,
        enrollment: str | None = None,
    ) -> None:
        super().__init__(name="quickconnect", daemon=True)
        if not directory.startswith(("http://", "https://")):
            raise ValueError("--directory must be an http:// or https:// URL")
        self.url = directory.rstrip("/") + "/register"
        self.payload = payload
        self.status = status
        self.interval = interval
        self._enrollment = enrollment
        self._stop = threading.Event()

    def register_once(self) -> None:
        body = self.payload()
        if self._enrollment:
            body = {**body, "enrollment": self._enrollment}
        req = urllib.request.Request(  # noqa: S310 (scheme checked in __init__)
            self.url,
            data=json.dumps(body).encode(),
            method="POST",
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(req, timeout=5) as resp:  # noqa: S310
                resp.read(4096)
            # Accepted: the ID is bound to this node's serial and token, and the secret
            # is spent on the CMS side. Forget it.
            self._enrollment = None
            self.status.update(registered=True, error=None)
        except urllib.error.HTTPError as exc:
            try:
                detail = json.loads(exc.read(4096))["error"]["message"]
            except (ValueError, KeyError, TypeError):
                detail = f"HTTP {exc.code}"
            self.status.update(registered=False, error=detail)
            log.error("QuickConnect registration refused: %s", detail)
        except (OSError, ValueError) as exc:
            self.status.update(registered=False, error=f"directory unreachable: {exc}")
            log.warning("QuickConnect directory unreachable: %s", exc)

    def run(self) -> None:
        while True:
            self.register_once()
            if self._stop.wait(self.interval):
                return

    def stop(self) -> None:
        self._stop.set()
