"""Add Batch in a real browser: search, Edit each row, Prefix-No., Enable, all or none."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.browser.test_add_server import free_udp_port

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def no_prompt(page):
    """window.prompt shows what is typed in clear text: any prompt fails the test."""
    prompts = []

    def on_dialog(dialog):
        if dialog.type == "prompt":
            prompts.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", on_dialog)
    yield
    assert prompts == []


@pytest.fixture
def lan(settings):
    settings.CMS_DISCOVERY_PORT = free_udp_port()
    settings.CMS_DISCOVERY_ADDRESS = "127.255.255.255"
    return settings.CMS_DISCOVERY_PORT


def search_until(page, *names: str) -> None:
    for _ in range(3):  # UDP may drop a datagram
        page.click("#cms-batch-search")
        page.wait_for_selector("#cms-batch-status:has-text('found')")
        rows = page.locator("#cms-batch-results tbody tr")
        if all(rows.filter(has_text=name).count() for name in names):
            return
    raise AssertionError(f"the search did not find {names}")


def edit(page, name: str, password: str, *, double_click: bool = False) -> None:
    row = page.locator("#cms-batch-results tbody tr", has_text=name)
    if double_click:
        row.locator("td").nth(1).dblclick()
    else:
        row.get_by_role("button", name=f"Edit {name}").click()
    page.wait_for_selector("#cms-batch-edit[open]")
    page.fill("#cms-edit-password", password)


def test_batch_add_two_failover_servers_with_prefix_no(page, start_node, lan, team):
    from cms.inventory.models import FailoverServer

    FailoverServer.objects.create(team=team, name="Standby-1", host="192.0.2.1",
                                  admin_password="x")  # fmt: skip
    first = start_node(mode="failover", name="fs-east", model="FS-7", discovery_port=lan)
    second = start_node(mode="failover", name="fs-west", model="FS-7", discovery_port=lan,
                        password="pw2")  # fmt: skip
    page.goto("/admin/inventory/failoverserver/")
    page.click("#cms-add-batch")
    page.select_option("#cms-batch-team", str(team.pk))
    search_until(page, "fs-east", "fs-west")

    # Keyboard: Space ticks a row and the focus stays on it while the table is redrawn.
    east_box = page.locator("#cms-batch-results tbody tr", has_text="fs-east").locator(
        ".cms-batch-select"
    )
    east_box.focus()
    page.keyboard.press("Space")
    expect(east_box).to_be_checked()
    expect(page.get_by_label("Select fs-east")).to_be_focused()  # kept across the redraw
    page.keyboard.press("Space")
    expect(east_box).not_to_be_checked()

    # First row by double-click: the naming rule Prefix-No. with a custom prefix.
    edit(page, "fs-east", first.password, double_click=True)
    page.select_option("#cms-edit-rule", "prefix_no")
    assert page.is_visible("#cms-edit-prefix")
    page.click("#cms-edit-ok")
    expect(page.locator("#cms-edit-error")).to_have_text("Enter the custom prefix.")
    assert page.is_visible("#cms-batch-edit")  # no prefix yet: the window stays open
    page.fill("#cms-edit-prefix", "Standby")
    page.click("#cms-edit-ok")
    # Second row by its Edit button, with a wrong password first: nothing is added.
    edit(page, "fs-west", "wrong")
    page.click("#cms-edit-ok")
    # The closed window hands the focus back to the row's Edit button (on its close event).
    expect(page.get_by_role("button", name="Edit fs-west")).to_be_focused()

    planned = page.locator("#cms-batch-results tbody tr", has_text="fs-east")
    # Standby-1 is taken: the preview says what the CMS will give, numbers skip it.
    expect(planned.locator(".cms-batch-name")).to_have_text("Standby-2")
    page.click("#cms-batch-ok")
    west = page.locator("#cms-batch-results tbody tr", has_text="fs-west")
    west.locator(".cms-batch-result", has_text="wrong username or password").wait_for()
    assert "nothing was added" in planned.locator(".cms-batch-result").inner_text()
    assert not FailoverServer.objects.filter(name__startswith="Standby-").exclude(
        name="Standby-1").exists()  # fmt: skip

    edit(page, "fs-west", second.password)
    page.click("#cms-edit-ok")
    page.click("#cms-batch-ok")
    page.wait_for_url("**/admin/inventory/failoverserver/")
    added = {s.name: s for s in FailoverServer.objects.filter(host="127.0.0.1")}
    # Standby-1 is taken, so numbering skips it.
    assert set(added) == {"Standby-2", "Standby-3"}
    assert {s.port for s in added.values()} == {first.port, second.port}
    assert all(s.team_id == team.pk and s.name_source == "naming_rule" for s in added.values())
    assert page.locator("#result_list", has_text="Standby-3").count() == 1


def node_state(node) -> dict:
    """What Enable changes on a node, as its agent says."""
    info = node.get_info()
    return {key: info[key] for key in ("cms_enabled", "cms_mode", "paired", "locked")}


def test_batch_enable_turns_the_cms_service_on_only_when_the_batch_is_added(
    page, start_node, lan, team
):
    from cms.inventory.models import FailoverServer

    fresh = start_node(mode="standalone", name="FreshBox", model="FS-9", discovery_port=lan,
                       password="Fresh-Secret-71")  # fmt: skip
    standby = start_node(mode="failover", name="EastBox", model="FS-7", discovery_port=lan)
    before = node_state(fresh)
    assert before == {"cms_enabled": False, "cms_mode": "standalone", "paired": False,
                      "locked": False}  # fmt: skip
    page.goto("/admin/inventory/failoverserver/batch/")
    search_until(page, "FreshBox", "EastBox")
    row = page.locator("#cms-batch-results tbody tr", has_text="FreshBox")
    assert row.locator(".cms-batch-select").is_disabled()

    # Enable asks for the password and the lock in the window; no password: it says so.
    row.get_by_role("button", name="Enable the CMS service of FreshBox").click()
    page.wait_for_selector("#cms-enable-dialog[open]")
    page.click("#cms-enable-ok")
    expect(page.locator("#cms-enable-error")).to_have_text(
        "Enter the admin password of the server."
    )
    assert page.is_visible("#cms-enable-dialog")
    page.fill("#cms-enable-password", fresh.password)
    page.check("#cms-enable-other-hosts")
    page.click("#cms-enable-ok")
    expect(row.locator(".cms-batch-result")).to_have_text(
        "CMS service will be turned on when added (security lock: refuses other CMS hosts)."
    )
    expect(page.locator("#cms-enable-dialog")).not_to_be_visible()
    expect(row.get_by_role("button", name="Edit FreshBox")).to_be_focused()
    expect(row.locator(".cms-batch-select")).to_be_checked()
    expect(row.locator(".cms-batch-name")).to_have_text("FreshBox")
    expect(row.locator(".cms-batch-mode")).to_have_text("failover when added")
    assert node_state(fresh) == before  # Enable alone changed nothing on the node
    assert fresh.password not in page.content()  # kept in a password field, never rendered

    # Another row that will be refused (a wrong password): nothing added, node untouched.
    edit(page, "EastBox", "wrong")
    page.click("#cms-edit-ok")
    page.click("#cms-batch-ok")
    east = page.locator("#cms-batch-results tbody tr", has_text="EastBox")
    east.locator(".cms-batch-result", has_text="wrong username or password").wait_for()
    expect(page.locator("#cms-batch-status")).to_contain_text("nothing was added")
    expect(row.locator(".cms-batch-result")).to_contain_text("nothing was added")
    assert not FailoverServer.objects.exists()
    assert node_state(fresh) == before
    assert fresh.password not in page.content()

    # The bad row fixed: both are added, and only now is the node enabled, paired, locked.
    expect(row.locator(".cms-batch-mode")).to_have_text("failover when added")
    edit(page, "EastBox", standby.password)
    page.click("#cms-edit-ok")
    page.click("#cms-batch-ok")
    page.wait_for_url("**/admin/inventory/failoverserver/")
    added = {s.name: s for s in FailoverServer.objects.all()}
    assert set(added) == {"FreshBox", "EastBox"}
    assert (added["FreshBox"].port, added["FreshBox"].model) == (fresh.port, "FS-9")
    assert added["FreshBox"].locked
    assert node_state(fresh) == {"cms_enabled": True, "cms_mode": "failover", "paired": True,
                                 "locked": True}  # fmt: skip


def test_batch_enabled_row_can_be_named_before_it_is_added(page, start_node, lan, team):
    from cms.inventory.models import FailoverServer

    node = start_node(mode="standalone", name="fresh-box", model="FS-9", discovery_port=lan)
    page.goto("/admin/inventory/failoverserver/batch/")
    search_until(page, "fresh-box")
    row = page.locator("#cms-batch-results tbody tr", has_text="fresh-box")
    row.get_by_role("button", name="Enable the CMS service of fresh-box").click()
    page.fill("#cms-enable-password", node.password)
    page.click("#cms-enable-ok")
    expect(row.locator(".cms-batch-result")).to_have_text(
        "CMS service will be turned on when added."
    )
    # Ticked and ready; a custom name wins over the rule.
    expect(row.locator(".cms-batch-select")).to_be_checked()
    edit(page, "fresh-box", node.password)
    page.check("#cms-naming-custom")
    page.fill("#cms-edit-name", "Spare North")
    page.click("#cms-edit-ok")
    expect(row.locator(".cms-batch-name")).to_have_text("Spare North")
    assert not node.get_info()["cms_enabled"]
    page.click("#cms-batch-ok")
    page.wait_for_url("**/admin/inventory/failoverserver/")
    server = FailoverServer.objects.get(name="Spare North")
    assert (server.port, server.name_source, server.model) == (node.port, "custom", "FS-9")
    info = node.get_info()
    assert (info["cms_enabled"], info["cms_mode"], info["locked"]) == (True, "failover", False)
