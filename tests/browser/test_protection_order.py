"""The failover servers protecting a recording server are reordered on its page."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.django_db(transaction=True)


def test_move_down_and_save_changes_which_failover_server_is_tried_first(page, make_server):
    from failover.models import Protection

    lobby = make_server(name="Lobby")
    first = make_server(name="Standby A", role="failover")
    second = make_server(name="Standby B", role="failover")
    Protection.objects.create(recording_server=lobby, failover_server=first, priority=0)
    Protection.objects.create(recording_server=lobby, failover_server=second, priority=1)

    page.goto(f"/admin/inventory/recordingserver/{lobby.pk}/change/")
    rows = page.locator("#protections-group tbody tr.form-row:not(.empty-form)")

    def names() -> list[str]:
        return [rows.nth(i).locator("td.field-failover_server select").evaluate(
            "s => s.options[s.selectedIndex].text") for i in range(rows.count())]  # fmt: skip

    rows.nth(0).get_by_role("button", name="Move down").click()
    assert names() == ["Standby B", "Standby A"]
    # By keyboard: Move up on Standby A, then Tab to its Move down.
    rows.nth(1).get_by_role("button", name="Move up").focus()
    page.keyboard.press("Enter")
    assert names() == ["Standby A", "Standby B"]
    page.keyboard.press("Tab")
    page.keyboard.press("Enter")
    assert names() == ["Standby B", "Standby A"]
    page.click("input[name=_save]")
    page.wait_for_selector("text=was changed successfully")
    order = Protection.objects.filter(recording_server=lobby).order_by("priority")
    assert [p.failover_server.name for p in order] == ["Standby B", "Standby A"]
