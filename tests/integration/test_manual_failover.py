"""Manual failover is its own trigger: the probes of the healthy recording server it was
asked for never close it; it ends by the operator's failback alone.

Real node agents, the real database and the real engine; probe cycles and the worker's
advance are called directly, in the order a busy CMS may run them.
"""

from __future__ import annotations

import pytest
from django.db.models import F

from cms.inventory.models import Server
from failover import engine, probing
from failover.choices import EventState
from failover.errors import FailoverError
from failover.models import FailoverEvent

pytestmark = pytest.mark.django_db(transaction=True)


def cycles(n: int) -> None:
    for _ in range(n):
        probing.run_cycle(force=True)


def recording_for(node) -> str | None:
    return (node.client().health()["recording"]["on_behalf_of"] or {}).get("id")


def timeline(event: FailoverEvent) -> list[str]:
    """The states the event went through (notes, which change no state, left out)."""
    return list(
        event.transitions.exclude(from_state="", to_state=EventState.DETECTED)
        .exclude(from_state=F("to_state"))
        .order_by("pk")
        .values_list("to_state", flat=True)
    )


RS_URL = "/admin/inventory/recordingserver/"


def admin_action(client, action: str, server) -> None:
    response = client.post(RS_URL, {"action": action, "_selected_action": [server.pk]})
    assert response.status_code == 302


def test_the_probe_cycle_before_the_worker_does_not_close_a_manual_failover(
    make_fleet, admin_client
):
    fleet = make_fleet(failovers=1)
    cycles(3)  # the recording server is healthy: good probes in a row
    admin_action(admin_client, "manual_failover", fleet.recording)
    event = FailoverEvent.objects.get()
    assert event.trigger == "manual"

    cycles(3)  # the probe cycles come before any worker has taken the event
    event.refresh_from_db()
    assert event.state == EventState.DETECTED
    assert engine.advance(event.pk) == EventState.ACTIVE
    assert recording_for(fleet.failover_nodes[0]) == event.node_tag

    cycles(3)
    event.refresh_from_db()
    assert event.state == EventState.ACTIVE  # stays until the operator fails back
    assert recording_for(fleet.failover_nodes[0]) == event.node_tag

    admin_action(admin_client, "fail_back_now", fleet.recording)
    assert engine.advance(event.pk) == EventState.COMPLETED
    assert timeline(event) == ["taking_over", "active", "failing_back", "restoring", "completed"]
    assert event.transitions.get(to_state="failing_back").actor == "root"


def test_a_manual_failover_nobody_can_take_says_so_and_waits_for_the_operator(make_fleet):
    fleet = make_fleet(failovers=1)
    cycles(3)
    Server.objects.filter(pk=fleet.failovers[0].pk).update(enabled=False)
    event = engine.manual_failover(fleet.recording, actor="root")

    assert engine.advance(event.pk) == EventState.NO_FAILOVER_SERVER
    event.refresh_from_db()
    assert "No enabled, healthy and idle failover server" in event.last_error
    cycles(3)
    event.refresh_from_db()
    assert event.state == EventState.NO_FAILOVER_SERVER  # the probes do not end it

    # A failover server free again takes over, as for any event waiting for one.
    Server.objects.filter(pk=fleet.failovers[0].pk).update(enabled=True)
    from django.utils import timezone

    from failover.models import FailoverSettings

    assert event.pk in engine.after_probe_cycle(
        Server.objects.all(), FailoverSettings.load(), timezone.now()
    )
    assert engine.advance(event.pk) == EventState.ACTIVE
    assert recording_for(fleet.failover_nodes[0]) == event.node_tag


def test_failing_back_ends_a_manual_failover_that_nobody_took_over(make_fleet, admin_client):
    fleet = make_fleet(failovers=1)
    cycles(3)
    Server.objects.filter(pk=fleet.failovers[0].pk).update(enabled=False)
    event = engine.manual_failover(fleet.recording, actor="root")
    assert engine.advance(event.pk) == EventState.NO_FAILOVER_SERVER

    admin_action(admin_client, "fail_back_now", fleet.recording)
    event.refresh_from_db()
    assert event.state == EventState.RECOVERED
    ended = event.transitions.get(to_state=EventState.RECOVERED)
    assert ended.actor == "root" and "no failover server had taken over" in ended.reason
    with pytest.raises(FailoverError):
        engine.fail_back_now(event, actor="root")  # ended: nothing to fail back
    # The next manual failover is a new event.
    Server.objects.filter(pk=fleet.failovers[0].pk).update(enabled=True)
    cycles(1)
    again = engine.manual_failover(fleet.recording, actor="root")
    assert again.pk != event.pk
    assert engine.advance(again.pk) == EventState.ACTIVE
