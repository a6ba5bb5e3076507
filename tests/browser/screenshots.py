"""The pictures of the admin in docs/screenshots/, taken in Chromium: `make screenshots`.

Runs under pytest for the browser tests' fixtures (a live server, real node agents, the
test database), as one "test" that `make test` does not collect (the file is not named
test_*.py): `python -m pytest tests/browser/screenshots.py`.

A small fleet of real agents is registered (Lobby, Garage and Warehouse protected by
Standby 1 and Standby 2, and Entrance, just added and not probed yet); Garage fails with
a service fault, is taken over, recovers, fails back and gets its recordings restored,
so its event has a full timeline; Lobby's agent is killed and Standby 1 acts for it.
Warehouse passes a failover drill (Standby 2 takes over by hand, records, fails back and
restores). Every page is taken at 1366x768 (the whole page) and the dashboard also at 1920x1080.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.fixtures.fleet import register
from tests.fixtures.nodes import wait_until

pytestmark = pytest.mark.django_db(transaction=True)

OUT = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
SMALL = {"width": 1366, "height": 768}
LARGE = {"width": 1920, "height": 1080}


def _cycles(n: int) -> None:
    from failover import probing

    for _ in range(n):
        probing.run_cycle(force=True)


def story(make_fleet, start_node, team, user):
    """The fleet and its two events (the one that ended, the one in progress), as the
    pages show them; `user` is in the fleet's team (Add Server's default team)."""
    from cms.inventory.licenses import install
    from cms.inventory.models import License, TeamMembership
    from failover import engine
    from failover.choices import EventState
    from failover.models import FailoverEvent, Protection

    TeamMembership.objects.create(team=team, user=user)
    fleet = make_fleet(failovers=2, cameras=2, name="Lobby")
    standby1, standby2 = fleet.failovers
    others = {}
    for name, cameras in (("Garage", 2), ("Warehouse", 3)):
        node = start_node(mode="recording", name=name.lower(), cameras=cameras)
        server = register(node, team, "recording", name)
        for priority, fo in enumerate((standby2, standby1)):
            Protection.objects.create(recording_server=server, failover_server=fo,
                                      priority=priority)  # fmt: skip
        engine.refresh_snapshot(server)
        others[name] = (server, node)
    for n, server in enumerate((fleet.recording, others["Garage"][0])):
        lic = License(key=f"AB12-CD3{n}-EF45-6789", team=team, cameras=4)
        lic.full_clean()
        lic.save()
        install(lic, server, actor="root")
    _cycles(1)

    # Garage: fails, is taken over, comes back, fails back, its recordings restored.
    garage, garage_node = others["Garage"]
    garage_node.client().set_fault("service")
    _cycles(2)
    event = FailoverEvent.objects.get(recording_server=garage)
    assert engine.advance(event.pk) == EventState.ACTIVE
    time.sleep(3)  # a few recordings made by the failover server
    garage_node.client().set_fault("clear")
    _cycles(2)
    wait_until(lambda: engine.advance(event.pk) in (EventState.COMPLETED,),
               timeout=60, message="Garage's failback and restoration")  # fmt: skip

    # Warehouse: a failover drill, run here as the worker would run it.
    from failover import drills
    from failover.models import DrillTargets

    DrillTargets.objects.create(team=team, recording_seconds=2)
    drill = drills.request_drill(user, [others["Warehouse"][0]])
    assert drills.run(drill.pk) == "passed", drill.servers.get().reason

    # Lobby: its agent dies; Standby 1 records for it.
    fleet.recording_node.kill()
    _cycles(2)
    lobby_event = FailoverEvent.objects.get(recording_server=fleet.recording, state="detected")
    assert engine.advance(lobby_event.pk) == EventState.ACTIVE
    # Entrance: just added, never probed.
    entrance_node = start_node(mode="recording", name="entrance", cameras=1)
    register(entrance_node, team, "recording", "Entrance")
    return event, lobby_event


def _shoot(page, url: str, name: str, viewport=SMALL, *, before=None) -> None:
    page.set_viewport_size(viewport)
    page.goto(url)
    page.wait_for_load_state("networkidle")
    if before:
        before(page)
    page.screenshot(path=str(OUT / f"{name}.png"), full_page=True)


def _search_lan(page) -> None:
    """Add Batch's LAN search, again if a datagram was lost, until both agents answer."""
    for _ in range(3):
        page.click("#cms-batch-search")
        page.wait_for_selector("#cms-batch-status:has-text('found')")
        rows = page.locator("#cms-batch-results tbody tr")
        if (
            rows.filter(has_text="Standby East").count()
            and rows.filter(has_text="Standby West").count()
        ):
            break
    # Both ticked: the server plans the names OK will give.
    with page.expect_response(lambda r: "/batch/rows/" in r.url):
        page.check("#cms-batch-all")
    page.wait_for_load_state("networkidle")


def _preview(page) -> None:
    """Replace protected server: its consequences, shown before OK."""
    page.click("#cms-replace-submit")
    page.wait_for_selector("#cms-replace-plan")


def test_take_screenshots(page, make_fleet, start_node, team, admin_user, settings):
    from tests.browser.test_add_server import free_udp_port

    OUT.mkdir(parents=True, exist_ok=True)
    done, active = story(make_fleet, start_node, team, admin_user)
    # Two agents that answer Add Batch's LAN search (on the loopback broadcast address).
    settings.CMS_DISCOVERY_PORT = free_udp_port()
    settings.CMS_DISCOVERY_ADDRESS = "127.255.255.255"
    for name in ("Standby East", "Standby West"):
        start_node(mode="failover", name=name, model="FS-7",
                   discovery_port=settings.CMS_DISCOVERY_PORT)  # fmt: skip
    events = "/admin/failover/failoverevent/"
    _shoot(page, "/admin/", "dashboard")
    _shoot(page, "/admin/", "dashboard-1920", LARGE)
    page.emulate_media(color_scheme="dark")  # the admin's dark theme (its "auto" setting)
    _shoot(page, "/admin/", "dashboard-dark")
    _shoot(page, f"{events}{done.pk}/change/", "event-timeline-dark")
    page.emulate_media(color_scheme="light")
    _shoot(page, "/admin/inventory/recordingserver/", "recording-servers")
    _shoot(page, "/admin/inventory/failoverserver/", "failover-servers")
    _shoot(page, "/admin/inventory/recordingserver/add/", "add-server")
    _shoot(page, "/admin/inventory/failoverserver/batch/", "add-batch", before=_search_lan)
    _shoot(page, events, "events")
    _shoot(page, f"{events}{done.pk}/change/", "event-timeline")
    coverage = f"/admin/inventory/recordingserver/{done.recording_server_id}/coverage/"
    _shoot(page, f"{coverage}?event={done.pk}", "coverage")
    _shoot(page, f"{events}{active.pk}/change/", "event-active")
    _shoot(page, f"{events}{active.pk}/replace/", "replace-dialog", before=_preview)
    _shoot(page, "/admin/failover/failoversettings/", "settings")
    from failover.models import Drill

    _shoot(page, f"/admin/failover/drill/{Drill.objects.get().pk}/change/", "drill-report")
    _shoot(page, "/admin/inventory/license/", "licenses")
    lobby = active.recording_server_id
    _shoot(page, f"/admin/inventory/recordingserver/{lobby}/change/", "server")
