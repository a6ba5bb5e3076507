"""Replace planning: what a replacement would do, before any node is told anything."""

from __future__ import annotations

import pytest

from cms.inventory.choices import HealthStatus
from cms.inventory.models import License
from failover.choices import EventState
from failover.errors import FailoverError
from failover.models import FailoverEvent, Protection
from failover.replace import plan, replacement_choices


@pytest.fixture
def acting(protected):
    recording, (standby, _) = protected
    event = FailoverEvent.objects.create(
        team=recording.team, recording_server=recording, recording_server_name=recording.name,
        node_tag=f"rs{recording.pk}", trigger="disconnected", state=EventState.ACTIVE,
        failover_server=standby, failover_server_name=standby.name,
    )  # fmt: skip
    License.objects.create(key="AAAA-1111", team=recording.team, server=recording)
    return event


def test_the_acting_failover_server_takes_everything(acting, make_server, fo_settings):
    garage = make_server(role="recording", name="Garage")
    Protection.objects.create(recording_server=garage, failover_server=acting.failover_server)
    the_plan = plan(acting, acting.failover_server)
    assert the_plan.variant == "acting" and not the_plan.renamed and not the_plan.restore
    assert the_plan.licenses_moving == ["AAAA-1111"]
    assert the_plan.licenses_overwritten == []
    assert the_plan.losing_protection == ["Garage"]
    assert the_plan.left_unprotected == ["Garage"]  # Standby 1 was its only one
    assert any("becomes a recording server" in line for line in the_plan.consequences())


def test_another_normal_server_takes_the_name_and_overwrites_licenses(acting, make_server,
                                                                      fo_settings):  # fmt: skip
    spare = make_server(role="recording", name="Spare", status=HealthStatus.NORMAL)
    License.objects.create(key="CCCC-3333", team=spare.team, server=spare)
    assert spare in replacement_choices(acting)
    the_plan = plan(acting, spare)
    assert (the_plan.variant, the_plan.renamed, the_plan.restore) == ("other", True, True)
    assert the_plan.licenses_overwritten == ["CCCC-3333"]
    assert "Recordings made during the failover are restored to it." in the_plan.consequences()


def test_a_server_that_is_not_normal_cannot_replace(acting, make_server, fo_settings):
    spare = make_server(role="recording", name="Spare", status=HealthStatus.DISCONNECTED)
    assert spare not in replacement_choices(acting)
    with pytest.raises(FailoverError, match="cannot replace"):
        plan(acting, spare)


@pytest.mark.parametrize("state", [EventState.DETECTED, EventState.FAILING_BACK,
                                   EventState.RESTORING, EventState.COMPLETED])  # fmt: skip
def test_only_an_active_failover_can_be_replaced(acting, state, fo_settings):
    FailoverEvent.objects.filter(pk=acting.pk).update(state=state)
    with pytest.raises(FailoverError, match="only while its failover is active"):
        plan(acting, acting.failover_server)
