"""Checks of the ways a server is reached: an IP address or FQDN, or a QuickConnect ID."""

import ipaddress
import re

_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")
_QC_ID = re.compile(r"^[A-Za-z][A-Za-z0-9-]{0,61}[A-Za-z0-9]$|^[A-Za-z]$")


def host_errors(host: str) -> list[str]:
    """Why `host` is not a usable IP address or FQDN (empty list when it is)."""
    host = host or ""
    if not host:
        return ["Enter the IP address or FQDN of the server."]
    if host != host.strip():
        return ["The address must not start or end with spaces."]
    if "://" in host or "/" in host:
        return ["Enter only the address, without http:// or a path; set the port separately."]
    try:
        ipaddress.ip_address(host.strip("[]"))
        return []
    except ValueError:
        pass
    if re.fullmatch(r"[0-9.]+", host):
        return [f"{host!r} is not a valid IPv4 address."]
    if len(host) > 253:
        return ["An FQDN has at most 253 characters."]
    labels = host.rstrip(".").split(".")
    bad = [label for label in labels if not _LABEL.match(label)]
    if bad:
        return [
            f"{host!r} is neither an IP address nor a valid host name: each part between dots "
            "has 1 to 63 letters, digits or hyphens and does not start or end with a hyphen."
        ]
    return []


def quickconnect_id_errors(qc_id: str) -> list[str]:
    qc_id = qc_id or ""
    if not qc_id:
        return ["Enter the QuickConnect ID of the server."]
    if not _QC_ID.match(qc_id):
        return [
            "A QuickConnect ID has 1 to 63 letters, digits or hyphens, starts with a letter "
            "and does not end with a hyphen."
        ]
    return []


def connection_errors(
    connection_type: str, host: str, quickconnect_id: str, use_https: bool
) -> dict[str, list[str]]:
    """Why a way to reach a server is not usable, by field: the one check of the model,
    the admin's connection helpers, the API and batch add."""
    if connection_type == "address":
        problems = host_errors(host)
        return {"host": problems} if problems else {}
    errors: dict[str, list[str]] = {}
    if problems := quickconnect_id_errors(quickconnect_id):
        errors["quickconnect_id"] = problems
    if use_https:
        errors["use_https"] = ["HTTPS is available only for the IP address/FQDN connection type."]
    return errors
