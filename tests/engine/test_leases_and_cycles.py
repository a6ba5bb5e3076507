"""Leases as short as the work they guard, and one probe cycle per interval."""

from __future__ import annotations

import datetime as dt
import itertools
import threading
import time

import pytest
from django.db import connection
from django.utils import timezone

from failover.choices import EventState
from failover.events import holding, lease_expired, renew_lease, take_lease
from failover.models import FailoverEvent, FailoverSettings
from failover.probing import claim_cycle, claim_shard
from failover.shards import Shard
from tests.engine.test_decisions import event_in

T0 = dt.datetime(2026, 12, 1, 3, 0, 0, tzinfo=dt.UTC)


@pytest.mark.parametrize("interval", [1, 2, 5])
def test_two_beats_at_any_phase_run_one_cycle_per_interval(fo_settings, interval):
    fo_settings.probe_interval = interval
    fo_settings.last_probe_cycle_at = None
    fo_settings.save()
    seconds = 20 * interval
    # Beat A ticks on the second, beat B half a second later, each with some jitter.
    ticks = sorted(
        [T0 + dt.timedelta(seconds=s + 0.01 * (s % 3)) for s in range(seconds)]
        + [T0 + dt.timedelta(seconds=s + 0.5 + 0.02 * (s % 2)) for s in range(seconds)]
    )
    claimed = [t for t in ticks if claim_cycle(FailoverSettings.load(), t)]
    assert len(claimed) == seconds // interval
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(claimed)]
    assert min(gaps) >= interval - 0.1


def test_a_clock_set_back_does_not_stop_the_cycles(fo_settings):
    assert claim_cycle(FailoverSettings.load(), T0)
    back = T0 - dt.timedelta(hours=1)
    assert claim_cycle(FailoverSettings.load(), back)
    assert not claim_cycle(FailoverSettings.load(), back + dt.timedelta(seconds=0.2))


@pytest.mark.parametrize("interval", [1, 2, 5])
def test_each_shard_is_claimed_once_per_slot_whatever_the_ticks(fo_settings, interval):
    fo_settings.probe_interval = interval
    fo_settings.save()
    shards = [Shard(index, 3) for index in range(3)]
    seconds = 10 * interval
    # Two ticks a second, each sending a task per shard; any worker runs any of them.
    ticks = sorted(
        [T0 + dt.timedelta(seconds=s + 0.01 * (s % 3)) for s in range(seconds)]
        + [T0 + dt.timedelta(seconds=s + 0.5) for s in range(seconds)]
    )
    claims = {shard.index: [t for t in ticks if claim_shard(fo_settings, shard, t)]
              for shard in shards}  # fmt: skip
    for claimed in claims.values():
        assert len(claimed) == seconds // interval
        assert min(b - a for a, b in itertools.pairwise(claimed)).total_seconds() >= interval - 0.1
    # The whole-fleet claim is separate: a whole cycle (a test's, an operator's) still runs.
    assert claim_cycle(FailoverSettings.load(), ticks[-1])


def test_a_shard_claim_survives_a_clock_set_back(fo_settings):
    shard = Shard(1, 2)
    assert claim_shard(fo_settings, shard, T0)
    back = T0 - dt.timedelta(hours=1)
    assert claim_shard(fo_settings, shard, back)
    assert not claim_shard(fo_settings, shard, back + dt.timedelta(seconds=0.2))


def test_a_shard_outside_the_count_is_refused():
    with pytest.raises(ValueError, match="not one of"):
        Shard(2, 2)


@pytest.mark.django_db(transaction=True)
def test_two_concurrent_claimers_get_one_cycle_per_slot():
    settings = FailoverSettings.load()
    settings.probe_interval = 1
    settings.save()
    wins: list[dt.datetime] = []
    barrier = threading.Barrier(2)

    def beat(phase: float) -> None:
        try:
            for s in range(6):
                barrier.wait()
                at = T0 + dt.timedelta(seconds=s + phase)
                if claim_cycle(FailoverSettings.load(), at):
                    wins.append(at)
        finally:
            connection.close()

    threads = [threading.Thread(target=beat, args=(p,)) for p in (0.0, 0.3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(wins) == 6
    assert sorted({int(w.timestamp()) for w in wins}) == [int(T0.timestamp()) + s for s in range(6)]


# -- leases ------------------------------------------------------------------------------


def test_a_lease_is_a_few_seconds(settings):
    from django.conf import settings as conf

    assert conf.CMS_EVENT_LEASE_SECONDS <= 5


def test_renewing_stops_once_the_event_moved_on(protected):
    recording, _ = protected
    event = event_in(recording, EventState.RESTORING)
    assert take_lease(event, EventState.RESTORING)
    assert renew_lease(event)
    FailoverEvent.objects.filter(pk=event.pk).update(state=EventState.DETECTED)
    assert not renew_lease(event)


@pytest.mark.django_db(transaction=True)
def test_holding_keeps_the_lease_while_the_work_lasts_and_not_after(make_server, settings):
    settings.CMS_EVENT_LEASE_SECONDS = 0.6
    server = make_server(role="recording", name="Lobby")
    event = event_in(server, EventState.TAKING_OVER)
    assert take_lease(event, EventState.TAKING_OVER)
    with holding(event, [EventState.TAKING_OVER]):
        time.sleep(2.0)  # a node call that outlasts the lease three times over
        event.refresh_from_db()
        assert not lease_expired(event)
    time.sleep(0.8)
    event.refresh_from_db()
    assert lease_expired(event)  # a worker that stopped holds nothing


@pytest.mark.django_db(transaction=True)
def test_holding_does_not_renew_a_lease_that_ran_out_or_moved_on(make_server, settings):
    settings.CMS_EVENT_LEASE_SECONDS = 0.6
    server = make_server(role="recording", name="Lobby")
    event = event_in(server, EventState.RESTORING)
    assert take_lease(event, EventState.RESTORING)
    with holding(event, [EventState.RESTORING]):
        FailoverEvent.objects.filter(pk=event.pk).update(
            state=EventState.DETECTED, lease_expires_at=None
        )
        time.sleep(0.5)
        event.refresh_from_db()
        assert event.lease_expires_at is None
        assert take_lease(event, EventState.DETECTED)  # another worker goes on at once
        time.sleep(0.8)
        event.refresh_from_db()
        assert lease_expired(event, timezone.now())  # not kept alive by the first holder


def test_an_event_whose_worker_died_is_handed_on_at_the_next_tick(protected):
    from failover.engine import abandoned
    from failover.events import release_lease

    recording, _ = protected
    now = timezone.now()
    event = event_in(recording, EventState.TAKING_OVER)
    assert take_lease(event, EventState.TAKING_OVER)
    assert abandoned(now) == []  # held
    assert abandoned(now + dt.timedelta(seconds=10)) == [event.pk]  # its holder died
    release_lease(event)
    assert abandoned(now + dt.timedelta(seconds=10)) == []  # released: the cycle's business
