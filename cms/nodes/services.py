"""Test Connection: what the admin's button and the API call before saving a server.

It walks the same steps as real use and stops at the first failure, saying which
one failed: address (QuickConnect resolution), reachability, TLS certificate (and
the pin), "is this a node at all", credentials, health. Nothing is written to the
database: a fingerprint seen for the first time is returned in the report so the
caller can save it with the server.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from cms.nodes.client import DEFAULT_TIMEOUT, client_for
from cms.nodes.errors import CertificateChanged, NodeError


@dataclass
class ConnectionReport:
    ok: bool
    name: str = ""
    model: str = ""
    version: str = ""
    serial: str = ""
    cms_mode: str = ""
    cms_enabled: bool | None = None
    paired: bool | None = None
    locked: bool | None = None
    health: str = ""
    fingerprint: str = ""
    error_code: str = ""
    message: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def test_connection(
    server: Any,
    *,
    timeout: tuple[float, float] = (3.05, 8.0),
    cms_host_id: str | None = None,
) -> ConnectionReport:
    """Try ``server`` (a saved or unsaved ``Server``, or any object with its fields)."""
    report = ConnectionReport(ok=False)
    try:
        client = client_for(
            server,
            timeout=timeout or DEFAULT_TIMEOUT,
            retries=0,
            cms_host_id=cms_host_id,
            pin=False,
        )
        report.fingerprint = client.pin() or ""
        info = client.info()
        report.name, report.model = info["name"], info["model"]
        report.version, report.serial = str(info.get("version", "")), info["serial"]
        report.cms_mode, report.cms_enabled = info["cms_mode"], info.get("cms_enabled")
        report.paired, report.locked = info.get("paired"), info.get("locked")
        report.health = client.health().get("state", "")
    except CertificateChanged as exc:
        report.error_code, report.message = exc.code, exc.message
        report.fingerprint = exc.actual
        return report
    except NodeError as exc:  # unreachable, auth_failed, too_many_attempts, not_a_node, ...
        report.error_code, report.message = exc.code, exc.message
        return report
    report.ok = True
    report.message = f"Connected to {report.name} ({report.model}), CMS mode {report.cms_mode}"
    if not report.cms_enabled:
        report.message += "; the CMS service is not enabled on this node yet"
    return report
