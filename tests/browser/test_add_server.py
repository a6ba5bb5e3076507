"""Add Server in a real browser: the LAN search fills the address, Test Connection reports."""

from __future__ import annotations

import socket

import pytest

pytestmark = pytest.mark.django_db(transaction=True)


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def search_until(page, name: str):
    """The search results' row of ``name``, searching again if a datagram was lost."""
    for _ in range(3):  # UDP may drop a datagram
        page.click("#cms-search")
        page.wait_for_selector("#cms-connect-result:has-text('found')")
        if page.locator("#cms-search-results td", has_text=name).count():
            break
    return page.locator("#cms-search-results tr", has_text=name)


def test_add_a_failover_server_through_search_and_test_connection(page, start_node, settings, team):
    from cms.inventory.models import FailoverServer

    settings.CMS_DISCOVERY_PORT = free_udp_port()
    settings.CMS_DISCOVERY_ADDRESS = "127.255.255.255"
    node = start_node(mode="failover", name="standby-b", model="FS-7",
                      discovery_port=settings.CMS_DISCOVERY_PORT)  # fmt: skip
    page.goto("/admin/inventory/failoverserver/add/")
    page.select_option("#id_team", str(team.pk))

    # the magnifier: results list, "Use" fills address and port
    row = search_until(page, "standby-b")
    row.get_by_role("button", name="Use").click()
    assert page.input_value("#id_host") == "127.0.0.1"
    assert page.input_value("#id_port") == str(node.port)

    page.fill("#id_admin_password_input", "wrong")
    page.click("#cms-test-connection")
    page.wait_for_selector("#cms-connect-result.cms-error")
    assert "auth_failed" in page.inner_text("#cms-connect-result")

    page.fill("#id_admin_password_input", node.password)
    page.click("#cms-test-connection")
    page.wait_for_selector("#cms-connect-result.cms-ok:has-text('Connected')")
    assert "standby-b (FS-7)" in page.inner_text("#cms-connect-result")
    assert "CMS mode failover" in page.inner_text("#cms-connect-result")

    page.fill("#id_name", "Standby B")
    page.click("input[name=_save]")
    page.wait_for_selector("text=was added successfully")
    server = FailoverServer.objects.get(name="Standby B")
    assert (server.host, server.port) == ("127.0.0.1", node.port)


def test_quickconnect_hides_the_address_fields_and_the_search(page):
    page.goto("/admin/inventory/failoverserver/add/")
    assert page.is_visible(".form-row.field-host")
    page.select_option("#id_connection_type", "quickconnect")
    assert not page.is_visible(".form-row.field-host")
    assert not page.is_visible(".form-row.field-use_https")
    assert page.is_visible(".form-row.field-quickconnect_id")
    assert not page.is_visible("#cms-search")


def test_enable_asks_for_the_password_in_a_dialog_never_in_a_prompt(
    page, start_node, settings, team
):
    """The password is typed into a password field of a modal dialog: a prompt would
    show it in clear text. Cancel changes nothing; Enable pairs the node and fills in
    the form."""
    settings.CMS_DISCOVERY_PORT = free_udp_port()
    settings.CMS_DISCOVERY_ADDRESS = "127.255.255.255"
    node = start_node(mode="standalone", name="fresh-box", model="FS-9",
                      discovery_port=settings.CMS_DISCOVERY_PORT)  # fmt: skip
    prompts: list[str] = []
    page.on("dialog", lambda d: (prompts.append(d.type), d.dismiss()))
    page.goto("/admin/inventory/failoverserver/add/")
    page.select_option("#id_team", str(team.pk))
    row = search_until(page, "fresh-box")

    row.get_by_role("button", name="Enable").click()
    password = page.locator("#cms-enable-dialog #cms-enable-password")
    assert password.is_visible() and password.get_attribute("type") == "password"
    assert "fresh-box (FS-9)" in page.inner_text("#cms-enable-server")
    page.locator("#cms-enable-dialog").get_by_role("button", name="Cancel").click()
    assert not password.is_visible()
    assert node.client().info()["cms_mode"] == "standalone"  # cancelled: nothing sent

    row.get_by_role("button", name="Enable").click()
    password.fill(node.password)
    page.click("#cms-enable-ok")
    page.wait_for_selector("#cms-connect-result.cms-ok:has-text('enabled')")
    assert node.client().info()["cms_mode"] == "failover"
    assert page.input_value("#id_port") == str(node.port)
    assert page.input_value("#id_admin_password_input") == node.password
    assert prompts == []  # no window.prompt, alert or confirm on the way
