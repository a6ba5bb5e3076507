"""The LAN search and Add Batch show what each server found is to this CMS, the batch's
preview names are the names it adds, and the Edit window checks a custom name as it is
typed. No page asks for anything with window.prompt."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.browser.test_add_batch import edit, no_prompt, search_until  # noqa: F401 (autouse)
from tests.browser.test_add_server import free_udp_port
from tests.browser.test_add_server import search_until as search_add_server

pytestmark = pytest.mark.django_db(transaction=True)
ROWS = "#cms-batch-results tbody tr"


@pytest.fixture
def lan(settings):
    settings.CMS_DISCOVERY_PORT = free_udp_port()
    settings.CMS_DISCOVERY_ADDRESS = "127.255.255.255"
    return settings.CMS_DISCOVERY_PORT


def test_only_available_servers_can_be_ticked(page, start_node, lan, team):
    from cms.inventory.models import FailoverServer

    free = start_node(mode="failover", name="free-box", discovery_port=lan)
    managed = start_node(mode="failover", name="managed-box", discovery_port=lan)
    paired = start_node(mode="failover", name="paired-box", discovery_port=lan)
    locked = start_node(mode="failover", name="locked-box", discovery_port=lan)
    serial = managed.client().info()["serial"]
    FailoverServer.objects.create(team=team, name="Spare East", host="127.0.0.1",
                                  port=managed.port, serial=serial, admin_password="x")  # fmt: skip
    paired.client(cms_host_id="other-cms").enable_cms("failover")
    locked.client(cms_host_id="other-cms").enable_cms("failover", refuse_other_hosts=True)
    assert free.client().info()["paired"] is False

    page.goto("/admin/inventory/failoverserver/batch/")
    search_until(page, "free-box", "managed-box", "paired-box", "locked-box")
    expected = {
        "free-box": ("Available", True),
        "managed-box": ("Added (Spare East)", False),
        "paired-box": ("Paired with another host", False),
        "locked-box": ("Locked", False),
    }
    for name, (status, can_tick) in expected.items():
        row = page.locator(ROWS, has_text=name)
        expect(row.locator(".cms-batch-status")).to_have_text(status)
        assert row.locator(".cms-batch-select").is_enabled() == can_tick, name
    # "Select all" ticks the Available one only.
    page.check("#cms-batch-all")
    expect(page.locator(ROWS, has_text="free-box").locator(".cms-batch-select")).to_be_checked()
    assert page.locator(".cms-batch-select:checked").count() == 1

    # The Add Server page's search says the same and offers nothing for the others.
    page.goto("/admin/inventory/failoverserver/add/")
    search_add_server(page, "locked-box")
    for name, (status, can_use) in expected.items():
        row = page.locator("#cms-search-results tr", has_text=name)
        expect(row.locator("td").nth(4)).to_have_text(status)
        assert row.get_by_role("button", name="Use").is_enabled() == can_use, name


def test_the_preview_names_are_the_names_added(page, start_node, lan, team):
    from cms.inventory.models import FailoverServer

    for name in ("Standby-1", "Standby-3"):  # taken, with a gap
        FailoverServer.objects.create(team=team, name=name, host="192.0.2.1", admin_password="x")
    nodes = [start_node(mode="failover", name=n, model="FS-7", discovery_port=lan)
             for n in ("fs-a", "fs-b")]  # fmt: skip
    page.goto("/admin/inventory/failoverserver/batch/")
    page.select_option("#cms-batch-team", str(team.pk))
    search_until(page, "fs-a", "fs-b")
    edit(page, "fs-a", nodes[0].password)
    page.select_option("#cms-edit-rule", "prefix_no")
    page.fill("#cms-edit-prefix", "Standby")
    page.click("#cms-edit-ok")
    expect(page.locator("#cms-batch-edit")).not_to_be_visible()
    edit(page, "fs-b", nodes[1].password)
    page.click("#cms-edit-ok")
    names = page.locator(f"{ROWS} .cms-batch-name")
    expect(names).to_have_text(["Standby-2", "Standby-4"])
    preview = names.all_inner_texts()

    page.click("#cms-batch-ok")
    page.wait_for_url("**/admin/inventory/failoverserver/")
    added = FailoverServer.objects.filter(host="127.0.0.1").order_by("port")
    by_port = {s.port: s.name for s in added}
    assert [by_port[n.port] for n in nodes] == preview


def test_a_custom_name_is_checked_as_it_is_typed(page, start_node, lan, team):
    from cms.inventory.models import FailoverServer

    FailoverServer.objects.create(team=team, name="Spare East", host="192.0.2.1",
                                  admin_password="x")  # fmt: skip
    node = start_node(mode="failover", name="fs-typed", discovery_port=lan)
    page.goto("/admin/inventory/failoverserver/batch/")
    search_until(page, "fs-typed")
    edit(page, "fs-typed", node.password)
    # No error, no error box: nothing red in an empty window.
    assert page.locator("#cms-batch-edit .errornote").count() == 0

    page.locator("#cms-edit-name").press_sequentially("-Lobby", delay=20)
    problem = page.locator("#cms-edit-name-problem")
    expect(problem).to_contain_text("must not be a minus sign")  # while typing, before OK
    while_typing = problem.inner_text()
    assert page.locator("#cms-naming-custom").is_checked()
    assert page.locator("#cms-edit-error").count() == 0
    page.click("#cms-edit-ok")
    expect(page.locator("#cms-edit-error")).to_have_text(while_typing)  # OK says the same
    assert page.is_visible("#cms-batch-edit")

    page.fill("#cms-edit-name", "")
    page.locator("#cms-edit-name").press_sequentially("Spare East", delay=20)
    expect(problem).to_have_text("The name 'Spare East' is already used by another server.")

    page.fill("#cms-edit-name", "")
    page.locator("#cms-edit-name").press_sequentially("Spare West", delay=20)
    expect(problem).to_have_count(0)
    page.click("#cms-edit-ok")
    expect(page.locator("#cms-batch-edit")).not_to_be_visible()
    expect(page.locator(ROWS, has_text="fs-typed").locator(".cms-batch-name")).to_have_text(
        "Spare West"
    )
