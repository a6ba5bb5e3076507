"""Coverage per camera across a real failover, failback and restoration: what the API
shows is what the nodes hold, and the only gap is the event's measured recording gap.

Real node agents (the recording one crashes), the real database; the engine's steps are
called directly, as the worker would run them.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import time

import pytest

from failover import coverage, engine, probing
from failover.choices import EventState
from tests.fixtures.nodes import wait_until

pytestmark = pytest.mark.django_db(transaction=True)


def parse(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))


def held(client, **filters) -> list[dict]:
    return list(client.list_recordings(kind="recording", **filters))


def ask(admin_client, server, since, until, suffix="") -> dict:
    answer = admin_client.get(
        f"/api/v1/recording-servers/{server.pk}/coverage/{suffix}",
        {"since": coverage.iso(since), "until": coverage.iso(until)},
    )
    assert answer.status_code == 200, answer.content
    return answer


def camera(found: dict, name: str) -> dict:
    return next(c for c in found["cameras"] if c["camera"] == name)


def files_by(found: dict, cam: str) -> dict[tuple[str, str], int]:
    counts: dict[tuple[str, str], int] = {}
    for span in camera(found, cam)["spans"]:
        key = (span["server"], span["source"])
        counts[key] = counts.get(key, 0) + span["files"]
    return counts


def test_coverage_across_a_failover_failback_and_restoration(make_fleet, admin_client):
    fleet = make_fleet(failovers=1, cameras=2)
    lobby = fleet.recording
    rec = fleet.recording_node.client()
    wait_until(lambda: len(held(rec)) >= 4, message="own segments before the crash")
    since = parse(held(rec)[0]["start"])  # the period starts where recording began

    fleet.recording_node.kill()  # a crash: the cameras record nowhere until takeover,
    time.sleep(3)  # which comes after the probes' failures (seconds, as in production)
    event = fleet.fail_over("kill")
    assert event.state == EventState.ACTIVE
    fo = fleet.failover_nodes[0].client()
    wait_until(lambda: len(held(fo, on_behalf_of=event.node_tag)) >= 6, message="takeover")

    # During the failover: Standby 1 records Lobby's cameras; Lobby's own node is down,
    # which the answer says rather than pretending it holds nothing.
    during = ask(admin_client, lobby, since, dt.datetime.now(dt.UTC)).json()
    assert not during["complete"]
    assert [(s["server"], s["ok"]) for s in during["sources"]] == [
        ("Lobby", False), ("Standby 1", True)
    ]  # fmt: skip
    assert ("Standby 1", "failover") in files_by(during, "cam1")

    fleet.recording_node.restart()
    for _ in range(2):
        probing.run_cycle(force=True)
    assert engine.step(event.pk) == EventState.FAILING_BACK
    assert engine.step(event.pk) == EventState.RESTORING  # gap measured, standby released
    event.refresh_from_db()
    assert event.recording_gap_seconds is not None and event.recording_gap_seconds > 0
    until = dt.datetime.now(dt.UTC)
    time.sleep(1.5)  # every segment open at `until` is closed and listed

    before = ask(admin_client, lobby, since, until).json()
    assert before["complete"] and before["next"] is None
    for cam in ("cam1", "cam2"):
        counts = files_by(before, cam)
        assert counts[("Standby 1", "failover")] == len(
            held(fo, on_behalf_of=event.node_tag, camera=cam, since=coverage.iso(since),
                 until=coverage.iso(until))
        )  # fmt: skip
        assert ("Lobby", "restored") not in counts

    assert engine.advance(event.pk) == EventState.COMPLETED
    after = ask(admin_client, lobby, since, until).json()
    assert after["complete"]
    assert held(fo, on_behalf_of=event.node_tag) == []  # moved to Lobby, not copied
    gaps = []
    for cam in ("cam1", "cam2"):
        counts = files_by(after, cam)
        # The restored footage is on Lobby now, file for file what Standby 1 recorded.
        assert counts[("Lobby", "restored")] == files_by(before, cam)[("Standby 1", "failover")]
        assert set(counts) == {("Lobby", "own"), ("Lobby", "restored")}
        on_lobby = held(rec, camera=cam, since=coverage.iso(since), until=coverage.iso(until))
        assert sum(counts.values()) == len(on_lobby)
        spans = camera(after, cam)["spans"]
        assert [s["source"] for s in spans] == ["own", "restored", "own"]
        (gap,) = camera(after, cam)["gaps"]  # the crash, and nothing else
        assert gap["start"] == spans[0]["end"] and gap["end"] == spans[1]["start"]
        assert parse(gap["start"]) < event.taken_over_at < parse(spans[1]["end"])
        gaps.append(gap["seconds"])
    # The event's recording gap is its worst camera's: the same figure, to the millisecond.
    assert max(gaps) == pytest.approx(event.recording_gap_seconds, abs=0.002)

    rows = list(csv.DictReader(io.StringIO(ask(admin_client, lobby, since, until, "csv/")
                                           .content.decode())))  # fmt: skip
    assert [r["row"] for r in rows if r["camera"] == "cam1"] == [
        "recorded", "gap", "recorded", "recorded"
    ]  # fmt: skip
    assert {float(r["seconds"]) for r in rows if r["row"] == "gap"} == set(gaps)

    # The admin page draws the failover period: one bar per camera, the gap in words.
    html = admin_page_of(admin_client, event)
    assert html.count('class="cms-coverage-bar"') == 2
    # (The period starts a probe window before detection: before this young fleet's
    # first recording, so a gap opens it; the crash's gap is the one measured.)
    assert f"<td>{max(gaps):.1f} s</td>" in html
    assert "Restored to the recording server" in html and "did not answer" not in html


def test_a_long_period_is_read_a_page_at_a_time(make_fleet, admin_client, monkeypatch):
    """Bounded work: a node read for more files than a request may take ends the answer
    where the reading stopped, and `next` picks up from there with nothing lost."""
    fleet = make_fleet(failovers=0, cameras=2)
    rec = fleet.recording_node.client()
    wait_until(lambda: len(held(rec)) >= 10, message="segments")
    since = parse(held(rec)[0]["start"])
    until = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1.5)
    monkeypatch.setattr(coverage, "PAGE_ITEMS", 2)
    monkeypatch.setattr(coverage, "PAGES", 2)
    seen, start, answers = 0, since, 0
    while start is not None:
        found = ask(admin_client, fleet.recording, start, until).json()
        assert sum(s["files"] for c in found["cameras"] for s in c["spans"]) <= 4
        assert all(not c["gaps"] for c in found["cameras"])
        seen += sum(s["files"] for c in found["cameras"] for s in c["spans"])
        start = found["next"] and parse(found["next"])
        answers += 1
    assert answers > 1
    # A file that straddles a page's end is counted in both answers, never in neither.
    assert seen >= len(held(rec, since=coverage.iso(since), until=coverage.iso(until)))


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ({"since": "yesterday"}, "since must be a time"),
        ({"since": "2026-01-02T00:00:00Z", "until": "2026-01-01T00:00:00Z"}, "before until"),
    ],
)
def test_a_bad_period_is_refused_with_a_clear_error(make_fleet, admin_client, query, message):
    fleet = make_fleet(failovers=0, cameras=1)
    answer = admin_client.get(f"/api/v1/recording-servers/{fleet.recording.pk}/coverage/", query)
    assert answer.status_code == 400
    assert message in str(answer.json()["error"])


def admin_page_of(admin_client, event) -> str:
    """The event page's link to its cameras' coverage, followed."""
    page = admin_client.get(f"/admin/failover/failoverevent/{event.pk}/change/").content.decode()
    link = (
        f"/admin/inventory/recordingserver/{event.recording_server_id}/coverage/?event={event.pk}"
    )
    assert f'href="{link}"' in page
    answer = admin_client.get(link)
    assert answer.status_code == 200
    return answer.content.decode()


def test_coverage_is_seen_only_by_the_servers_team(sites, api_user):
    """A viewer reads its own team's coverage (even with the nodes unreachable, which
    the answer says); another team's server answers 404, and no node is asked."""
    north, south = sites
    viewer = api_user("Viewer")
    own = viewer.get(f"/api/v1/recording-servers/{north.recording.pk}/coverage/")
    assert own.status_code == 200
    assert own.json()["complete"] is False
    assert own.json()["sources"][0]["server"] == north.recording.name
    other = viewer.get(f"/api/v1/recording-servers/{south.recording.pk}/coverage/")
    assert other.status_code == 404
    assert (
        viewer.get(f"/api/v1/recording-servers/{south.recording.pk}/coverage/csv/").status_code
        == 404
    )
    assert api_user(None).get(
        f"/api/v1/recording-servers/{north.recording.pk}/coverage/"
    ).status_code in (403, 404)


@pytest.mark.parametrize("fault", ["service", "volume"])
def test_failback_after_a_fault_overlaps_never_a_gap(make_fleet, admin_client, fault):
    """A fault cleared on a node that kept running (its segment counters did not start
    again from zero): the failover server is released only once the recording server
    has written a new file, so its cameras' coverage overlaps at failback."""
    fleet = make_fleet(failovers=1, cameras=2)
    rec = fleet.recording_node.client()
    wait_until(lambda: len(held(rec)) >= 4, message="own segments before the fault")
    event = fleet.fail_over(fault)
    assert event.state == EventState.ACTIVE
    fo = fleet.failover_nodes[0].client()
    wait_until(lambda: len(held(fo, on_behalf_of=event.node_tag)) >= 4, message="takeover")
    # From the takeover's first file on: the fault's own gap, before it, is not looked at.
    since = parse(min(f["start"] for f in held(fo, on_behalf_of=event.node_tag)))

    # The worst moment: just after the paused recorder's once-a-second look, so that its
    # cameras start again only about a second after the fault is cleared.
    sleep_until_just_after_a_look(held(rec))
    rec.set_fault("clear")
    for _ in range(2):
        probing.run_cycle(force=True)
    assert engine.step(event.pk) == EventState.FAILING_BACK
    assert engine.step(event.pk) == EventState.RESTORING  # the standby released
    until = dt.datetime.now(dt.UTC)
    time.sleep(1.5)  # every segment open at `until` is closed and listed

    found = ask(admin_client, fleet.recording, since, until).json()
    assert found["complete"]
    for cam in ("cam1", "cam2"):
        spans = camera(found, cam)["spans"]
        assert [(s["server"], s["source"]) for s in spans] == [
            ("Standby 1", "failover"), ("Lobby", "own")
        ], "Lobby recorded nothing before the standby stopped: a gap at failback"  # fmt: skip
        # The recording server's first new file starts before the standby's last ends.
        assert parse(spans[1]["start"]) < parse(spans[0]["end"]), spans
        assert camera(found, cam)["gaps"] == []


def sleep_until_just_after_a_look(own_files: list[dict]) -> None:
    """A camera paused by a fault looks again every second (its 1-second segments' rhythm,
    kept from the end of the last file it wrote): sleep until 0.1 s after such a look."""
    rhythm = max(parse(f["end"]) for f in own_files).timestamp()
    time.sleep((rhythm + 0.1 - time.time()) % 1.0)
