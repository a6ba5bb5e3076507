"""The capacity planner's page and the protection warning, in Chromium, against real
node agents (the site of tests/integration/test_capacity_planner.py: Big needs 3
cameras, Lobby 2, Small 1; Wide has room for 2, Narrow for 1)."""

from __future__ import annotations

import pytest

from failover.models import FailoverEvent, Protection
from tests.integration.test_capacity_planner import site  # noqa: F401 (a fixture)

pytestmark = pytest.mark.django_db(transaction=True)

CAPACITY_URL = "/admin/inventory/failoverserver/capacity/"


def test_the_page_says_who_cannot_be_carried_and_answers_the_what_if(page, site):  # noqa: F811
    page.goto("/admin/inventory/failoverserver/")
    page.click("#cms-capacity-link")
    page.wait_for_selector("#cms-capacity-table")
    assert page.locator("#cms-uncarried").inner_text().strip() == (
        "No failover server can carry Big whole (3 cameras)."
    )
    big = page.locator("#cms-capacity-table tbody tr", has_text="Big")
    assert "Narrow: 1 camera (too small)" in big.inner_text()
    assert big.locator("td").last.inner_text() == "No"

    for name in ("Big", "Lobby", "Small"):
        page.get_by_label(f"{name} fails").check()
    page.get_by_role("button", name="What if these fail at once?").click()
    rows = page.locator("#cms-what-if-result tbody tr")
    covered = {
        rows.nth(i).locator("th").inner_text(): rows.nth(i).locator("td").nth(1).inner_text()
        for i in range(rows.count())
    }
    assert covered == {"Big": "Nobody: left uncovered", "Lobby": "Wide", "Small": "Narrow"}
    assert page.locator(".errornote").inner_text() == "Left uncovered: Big."
    assert not FailoverEvent.objects.exists()


def test_removing_the_only_protector_that_carries_it_asks_first(page, site):  # noqa: F811
    _, servers = site
    lobby = servers["Lobby"]
    page.goto(f"/admin/inventory/recordingserver/{lobby.pk}/change/")
    wide = page.locator("#protections-group tbody tr.form-row:not(.empty-form)").nth(1)
    wide.get_by_role("checkbox", name="Delete").check()
    page.click("input[name=_save]")
    errors = page.locator("#protections-group .errorlist").first
    errors.wait_for()
    assert "No failover server protecting Lobby can carry its 2 cameras whole" in (
        errors.inner_text()
    )
    assert Protection.objects.filter(recording_server=lobby).count() == 2  # nothing saved

    page.get_by_label("Save protection that cannot carry it").check()
    wide = page.locator("#protections-group tbody tr.form-row:not(.empty-form)").nth(1)
    wide.get_by_role("checkbox", name="Delete").check()
    page.click("input[name=_save]")
    page.wait_for_selector("text=was changed successfully")
    assert [p.failover_server.name for p in Protection.objects.filter(recording_server=lobby)] == [
        "Narrow"
    ]
