"""Django-side steps the failover benchmark runs in a child process.

Each RTO trial has its own database, so the orchestrator holds no Django setup of
its own; it runs this with the trial's environment (DATABASE_URL, CMS_VAR_DIR):

    python bench/cmsctl.py register < spec.json   -> {"recording_id", "failover_id", "node_tag",
                                                      "settings"}
    python bench/cmsctl.py fleet < fleet.json     -> {"recording": [ids], "failover": [ids],
                                                      "settings"}
    python bench/cmsctl.py timeline               -> every event with its transitions

spec: {"team": str, "settings": {FailoverSettings field: value},
       "recording": {"name", "host", "port", "password"}, "failover": {...}}
fleet: the same with lists of nodes for "recording" and "failover"; every recording
       server is protected by every failover server (the first choice rotates).
"""

from __future__ import annotations

import json
import sys
from typing import Any

import _harness  # noqa: F401 (puts the repository on sys.path)


def apply_settings(values: dict[str, Any]) -> dict[str, Any]:
    """Set the CMS's default failover settings; every field as saved (new fields too)."""
    from django.forms.models import model_to_dict

    from failover.models import FailoverSettings

    settings = FailoverSettings.load()
    for name, value in values.items():
        setattr(settings, name, value)
    settings.full_clean()
    settings.save()
    saved = model_to_dict(settings, exclude=["id", "team", "last_probe_cycle_at"])
    return {
        name: str(value) if hasattr(value, "isoformat") else value for name, value in saved.items()
    }


def add_server(team: Any, role: str, node: dict[str, Any]) -> Any:
    from cms.inventory.models import Server

    server = Server(
        team=team,
        role=role,
        name=node["name"],
        host=node["host"],
        port=node["port"],
        admin_password=node["password"],
    )
    server.full_clean()
    server.save()
    return server


def register(spec: dict[str, Any]) -> dict[str, Any]:
    from cms.inventory.models import Team
    from failover.engine import refresh_snapshot
    from failover.models import Protection

    settings = apply_settings(spec["settings"])
    team = Team.objects.create(name=spec.get("team", "Bench"))
    servers = {role: add_server(team, role, spec[role]) for role in ("recording", "failover")}
    Protection.objects.create(
        recording_server=servers["recording"], failover_server=servers["failover"], priority=0
    )
    # As the first healthy probe cycle would: failover needs a known configuration.
    refresh_snapshot(servers["recording"])
    return {
        "recording_id": servers["recording"].pk,
        "failover_id": servers["failover"].pk,
        "node_tag": f"rs{servers['recording'].pk}",
        "settings": settings,
    }


def fleet(spec: dict[str, Any]) -> dict[str, Any]:
    from cms.inventory.models import Team
    from failover.engine import refresh_snapshot
    from failover.models import Protection

    settings = apply_settings(spec["settings"])
    team = Team.objects.create(name=spec.get("team", "Bench"))
    added = {
        role: [add_server(team, role, node) for node in spec[role]]
        for role in ("recording", "failover")
    }
    failovers = added["failover"]
    for i, recording in enumerate(added["recording"]):
        # Rotated, so that a mass failover would spread over every failover server.
        order = failovers[i % len(failovers) :] + failovers[: i % len(failovers)]
        for priority, failover in enumerate(order):
            Protection.objects.create(
                recording_server=recording, failover_server=failover, priority=priority
            )
        refresh_snapshot(recording)
    return {role: [server.pk for server in servers] for role, servers in added.items()} | {
        "settings": settings
    }


def timeline() -> list[dict[str, Any]]:
    from failover.models import FailoverEvent

    def ts(value: Any) -> float | None:
        return value.timestamp() if value else None

    return [
        {
            "id": event.pk,
            "state": event.state,
            "detected_at": ts(event.detected_at),
            "taken_over_at": ts(event.taken_over_at),
            "attempts": event.attempts,
            "last_error": event.last_error,
            "transitions": [
                {"at": ts(t.at), "to": t.to_state, "reason": t.reason}
                for t in event.transitions.order_by("at", "pk")
            ],
        }
        for event in FailoverEvent.objects.order_by("pk")
    ]


def main(argv: list[str]) -> int:
    import django

    django.setup()
    if argv[:1] == ["register"]:
        out: Any = register(json.load(sys.stdin))
    elif argv[:1] == ["fleet"]:
        out = fleet(json.load(sys.stdin))
    elif argv[:1] == ["timeline"]:
        out = timeline()
    else:
        print(__doc__, file=sys.stderr)
        return 2
    sys.stdout.write(json.dumps(out) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
