"""Where a server is and how to log in: one form of it for the admin's connection helpers,
the API's Test Connection and batch add, checked by `addresses.connection_errors` (the
model's own check)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .addresses import connection_errors
from .choices import ConnectionType
from .models import Server

DEFAULTS: dict[str, Any] = {
    "connection_type": ConnectionType.ADDRESS,
    "host": "",
    "port": 5000,
    "use_https": False,
    "quickconnect_id": "",
    "admin_username": "admin",
}


def server_for(role: str, fields: Mapping[str, Any], **extra: Any) -> Server:
    """An unsaved server of `role` reached as `fields` say (defaults for what is missing)."""
    values = {key: fields.get(key, default) for key, default in DEFAULTS.items()}
    return Server(role=role, admin_password=fields.get("admin_password", ""), **values, **extra)


def errors_of(server: Server) -> dict[str, list[str]]:
    return connection_errors(server.connection_type, server.host, server.quickconnect_id,
                             server.use_https)  # fmt: skip
