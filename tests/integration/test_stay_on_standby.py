"""Stay on the failover server: the failback setting under which the failover server
keeps recording a recovered recording server's cameras until an operator fails back,
and what it recorded is still restored afterwards. Real node agents, real database."""

from __future__ import annotations

import pytest
from django.db.models import F

from failover import engine, probing
from failover.choices import EventState
from failover.models import EventTransition

pytestmark = pytest.mark.django_db(transaction=True)


def recording_for(node) -> str | None:
    return (node.client().health()["recording"]["on_behalf_of"] or {}).get("id")


def failover_files(node, tag: str) -> list[dict]:
    return list(node.client().list_recordings(origin="failover", on_behalf_of=tag))


def test_it_stays_on_the_failover_server_until_the_operator_fails_back(
    make_fleet, failover_settings
):
    failover_settings.failback_mode = "stay"
    failover_settings.failback_hold_down = 0  # would fail back at once if it were automatic
    failover_settings.restore_recordings = True
    failover_settings.full_clean()
    failover_settings.save()
    fleet = make_fleet(failovers=1)
    event = fleet.fail_over("service")
    assert event.state == EventState.ACTIVE
    standby = fleet.failover_nodes[0]

    fleet.recording_node.client().set_fault("clear")
    for _ in range(6):  # the recovery's probes, and several cycles more
        report = probing.run_cycle(force=True)
        assert event.pk not in report.wake  # nothing for a worker to do
        assert engine.advance(event.pk) in (EventState.ACTIVE, EventState.WAITING_FAILBACK)
    assert engine.advance(event.pk) == EventState.WAITING_FAILBACK
    event.refresh_from_db()
    assert event.recovered_at is not None
    assert recording_for(standby) == event.node_tag  # still the one recording for Lobby
    recorded = failover_files(standby, event.node_tag)
    assert recorded
    assert not EventTransition.objects.filter(event=event, to_state="failing_back").exists()

    engine.fail_back_now(event, actor="root")
    assert engine.advance(event.pk) == EventState.COMPLETED
    event.refresh_from_db()
    assert recording_for(standby) is None
    assert event.restoration.state == "completed"
    assert event.restoration.files_done >= len(recorded)
    assert failover_files(standby, event.node_tag) == []  # moved to Lobby, verified
    restored = {f["path"] for f in fleet.recording_node.client().list_recordings(origin="own")}
    for meta in recorded:
        assert "own/" + meta["path"].split("/", 2)[2] in restored
    failing_back = EventTransition.objects.get(event=event, to_state="failing_back")
    assert failing_back.actor == "root"
    moves = event.transitions.exclude(from_state=F("to_state"))  # notes change no state
    states = list(moves.values_list("to_state", flat=True))
    assert states[-3:] == ["failing_back", "restoring", "completed"]


def test_the_settings_offer_it_in_the_api_and_the_admin(admin_user, admin_client, team):
    from rest_framework.test import APIClient

    from failover.models import FailoverSettings

    api = APIClient()
    api.force_authenticate(admin_user)
    response = api.patch(f"/api/v1/failover-settings/?team={team.pk}",
                         {"failback_mode": "stay"}, format="json")  # fmt: skip
    assert response.status_code == 200, response.json()
    assert FailoverSettings.for_team(team.pk).failback_mode == "stay"
    assert FailoverSettings.load().failback_mode != "stay"  # the team's own, not the defaults
    page = admin_client.get("/admin/failover/failoversettings/1/change/").content.decode()
    assert "Stay on the failover server until an operator fails back" in page
