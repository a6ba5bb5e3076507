"""The mass-failure guard's decision on made-up probe results, in the database alone:
what counts as a mass failure, and two workers deciding for one team at once."""

from __future__ import annotations

import threading

import pytest
from django.db import connection
from django.utils import timezone

from cms.inventory.choices import HealthStatus
from cms.inventory.models import Server
from failover import engine
from failover.models import FailoverEvent, GuardHold, MassFailureGuard, Protection


def team_of(make_server, n: int) -> list[Server]:
    standby = make_server(role="failover", name="Standby", status="normal")
    servers = []
    for i in range(n):
        server = make_server(role="recording", name=f"Cam{i}", status="normal")
        Protection.objects.create(recording_server=server, failover_server=standby)
        servers.append(server)
    return servers


def down(*servers: Server, failures: int = 3) -> list[Server]:
    Server.objects.filter(pk__in=[s.pk for s in servers]).update(
        status=HealthStatus.DISCONNECTED, consecutive_failures=failures
    )
    for server in servers:
        server.refresh_from_db()
    return list(servers)


def cycle(servers: list[Server], settings) -> list[int]:
    return engine.after_probe_cycle(servers, settings, timezone.now())


@pytest.mark.django_db
@pytest.mark.parametrize(("size", "failing", "guarded"), [
    (2, 1, False),  # fewer than the minimum (3) down: one dead of two is no mass
    (3, 3, True),
    (6, 1, False),
    (6, 2, False),  # 33 % but fewer than 3
    (6, 3, True),
    (10, 3, False),  # 30 %: not more than the share
    (10, 4, True),
])  # fmt: skip
def test_more_than_the_share_and_at_least_the_minimum(make_server, fo_settings, size, failing,
                                                      guarded):  # fmt: skip
    servers = team_of(make_server, size)
    cycle(down(*servers[:failing]), fo_settings)
    assert FailoverEvent.objects.count() == (0 if guarded else failing)
    assert GuardHold.objects.count() == (failing if guarded else 0)


@pytest.mark.django_db
def test_share_zero_turns_the_guard_off(make_server, fo_settings):
    fo_settings.mass_failure_share = 0
    fo_settings.save()
    servers = team_of(make_server, 3)
    cycle(down(*servers), fo_settings)
    assert FailoverEvent.objects.count() == 3
    assert not GuardHold.objects.exists()


@pytest.mark.django_db
def test_turning_the_guard_off_lets_the_held_servers_fail_over(make_server, fo_settings):
    servers = team_of(make_server, 3)
    cycle(down(*servers), fo_settings)
    assert GuardHold.objects.count() == 3
    fo_settings.mass_failure_share = 0
    fo_settings.save()
    cycle(servers, fo_settings)
    assert FailoverEvent.objects.count() == 3
    assert not GuardHold.objects.exists()
    assert MassFailureGuard.objects.get().engaged_at is None


@pytest.mark.django_db
def test_one_server_at_a_time_is_guarded_as_well(make_server, fo_settings):
    """Watch streams report one server per call: the guard counts from the database."""
    servers = team_of(make_server, 6)
    down(*servers[:3], failures=1)  # failing, not yet failed over
    for server in servers[:3]:
        cycle(down(server), fo_settings)
    assert not FailoverEvent.objects.exists()
    assert GuardHold.objects.count() == 3


@pytest.mark.django_db
def test_an_event_opened_before_the_guard_engaged_goes_on(make_server, fo_settings):
    servers = team_of(make_server, 6)
    cycle(down(servers[0]), fo_settings)
    first = FailoverEvent.objects.get()
    cycle(down(servers[1], servers[2]), fo_settings)  # with the first: 3 of 6 within the window
    assert list(FailoverEvent.objects.all()) == [first]
    assert set(GuardHold.objects.values_list("server", flat=True)) == {
        servers[1].pk,
        servers[2].pk,
    }


def decide_at_once(groups: list[list[Server]], settings) -> None:
    """One worker per group, each deciding on its group's failing probe results at the
    same moment, before any of them is written (in the workers' memory alone)."""
    for group in groups:
        for server in group:
            server.status, server.consecutive_failures = HealthStatus.DISCONNECTED, 3
    start = threading.Barrier(len(groups))
    errors: list[BaseException] = []

    def worker(group: list[Server]) -> None:
        try:
            Server.objects.exists()  # connected before the start, so that they do meet
            start.wait()
            cycle(group, settings)
        except BaseException as exc:  # the assertion below shows it
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(g,)) for g in groups]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors


def next_round() -> None:
    """Nothing held or open, no failure counted; the guard's row stays, so the rounds
    after the first decide on an existing row (as in production)."""
    FailoverEvent.objects.all().delete()
    GuardHold.objects.all().delete()
    MassFailureGuard.objects.update(engaged_at=None, down={})


@pytest.mark.django_db(transaction=True)
def test_two_workers_deciding_on_halves_at_once_are_still_guarded(make_server, fo_settings):
    """Together 4 of 6 (more than 50 %), each half alone 2 (not more): one half gets
    through, never both."""
    fo_settings.mass_failure_share = 50
    fo_settings.save()
    servers = team_of(make_server, 6)
    halves = [servers[:2], servers[2:4]]
    for _ in range(10):
        decide_at_once(halves, fo_settings)
        opened = set(FailoverEvent.objects.values_list("recording_server", flat=True))
        held = set(GuardHold.objects.values_list("server", flat=True))
        assert opened in ({s.pk for s in halves[0]}, {s.pk for s in halves[1]})
        assert held == {s.pk for s in servers[:4]} - opened
        next_round()


@pytest.mark.django_db(transaction=True)
def test_workers_deciding_on_one_server_each_at_once_are_still_guarded(make_server, fo_settings):
    """Eight workers (watch streams) with one server each: together 8 of 20 (more than
    30 %), each alone 1. No more get through than the share allows: 6."""
    servers = team_of(make_server, 20)
    failing = servers[:8]
    for _ in range(5):
        decide_at_once([[server] for server in failing], fo_settings)
        opened = set(FailoverEvent.objects.values_list("recording_server", flat=True))
        held = set(GuardHold.objects.values_list("server", flat=True))
        assert len(opened) <= 6
        assert opened | held == {s.pk for s in failing}
        assert not opened & held
        next_round()
