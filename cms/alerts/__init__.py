"""Alerts: what happened, told to each team's channels (e-mail, any apprise URL).

`notify()` (service.py) is the one entry point; it only records and enqueues, so the
failover that calls it never waits for a mail server or a chat service. A worker
delivers (tasks.py) with retries. The app imports neither the inventory nor failover:
both call it.
"""

from typing import Any


def notify(team_id: int | None, kind: str, subject: str, body: str, *, url: str = "") -> None:
    """Alert the team's channels that want `kind` (see service.notify)."""
    from .service import notify as _notify  # models load only once the apps are ready

    _notify(team_id, kind, subject, body, url=url)


__all__: list[Any] = ["notify"]
