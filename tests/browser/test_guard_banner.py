"""The mass-failure guard on the dashboard: the banner says why automatic failover is
paused, and an operator releases one server from it, then the rest."""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = pytest.mark.django_db(transaction=True)

SHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"


@pytest.fixture
def held_team(make_server, team):
    """Six protected recording servers of which three failed their probes at once."""
    from django.utils import timezone

    from cms.inventory.models import Server
    from failover import engine
    from failover.models import ConfigSnapshot, FailoverSettings, Protection

    settings = FailoverSettings.load()
    standby = make_server(role="failover", name="Standby 1", status="normal")
    servers = []
    for name in ("Lobby", "Garage", "Warehouse", "Entrance", "Yard", "Office"):
        server = make_server(role="recording", name=name, status="normal")
        Protection.objects.create(recording_server=server, failover_server=standby)
        ConfigSnapshot.objects.create(server=server, version="1", config={"cameras": []})
        servers.append(server)
    failing = servers[:3]
    Server.objects.filter(pk__in=[s.pk for s in failing]).update(
        status="disconnected", consecutive_failures=settings.failures_before_failover,
        last_error="connection refused",
    )  # fmt: skip
    for server in failing:
        server.refresh_from_db()
    engine.after_probe_cycle(failing, settings, timezone.now())
    return servers


def test_the_banner_says_why_and_releases(page, held_team, team):
    from failover.models import FailoverEvent, GuardHold

    page.set_viewport_size({"width": 1366, "height": 768})
    page.goto("/admin/")
    banner = page.locator(".cms-guard")
    assert (
        f"Automatic failover paused for 3 recording servers of {team.name}: 3 of 6 went down "
        "within 60 s (more than 30 %)" in banner.inner_text()
    )
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "dashboard-guard.png"), full_page=True)

    page.goto("/admin/inventory/recordingserver/")
    held = page.locator(".cms-status", has_text="Held by the mass-failure guard")
    assert held.count() == 3

    page.goto("/admin/")
    banner.locator("tr", has_text="Garage").get_by_role("button", name="Release").click()
    page.wait_for_load_state("networkidle")
    assert "Garage: released from the mass-failure guard" in page.content()
    assert list(FailoverEvent.objects.values_list("recording_server_name", flat=True)) == ["Garage"]
    assert "paused for 2 recording servers" in page.locator(".cms-guard").inner_text()

    page.get_by_role("button", name="Release all").click()
    page.wait_for_load_state("networkidle")
    assert page.locator(".cms-guard").count() == 0
    assert not GuardHold.objects.exists()
    assert FailoverEvent.objects.count() == 3
