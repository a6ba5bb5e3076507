"""An operator watching an outage sees status changes without reloading the page."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_status_change_shows_on_the_list_without_a_reload(page, make_server):
    from cms.inventory.models import Server

    server = make_server(name="Lobby", status="normal")
    page.goto("/admin/inventory/recordingserver/")
    cell = page.locator(f'.cms-status[data-server="{server.pk}"]')
    assert cell.inner_text() == "Normal"
    page.evaluate("window.cmsMarker = 1")  # gone if the page reloads
    polls = []
    page.on(
        "request",
        lambda r: "live-updates" in r.url and polls.append(r.headers.get("hx-request")),
    )

    Server.objects.filter(pk=server.pk).update(status="disconnected")
    cell.filter(has_text="Disconnected").wait_for(timeout=10_000)
    assert page.evaluate("window.cmsMarker") == 1
    # rendered by the server, swapped in by htmx, and marked as changed
    assert polls and set(polls) == {"true"}
    assert "cms-changed" in cell.get_attribute("class")
    assert page.locator(".cms-status").count() == 1  # swapped in place, not added
