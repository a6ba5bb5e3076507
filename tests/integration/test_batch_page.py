"""The Add Batch page's server side: the rows, the planned names, the name check, and who
may use them (no browser: the pages' requests as htmx sends them)."""

from __future__ import annotations

import json

import pytest

from cms.nodes.versions import cms_version

pytestmark = pytest.mark.django_db
ROWS = "/admin/inventory/failoverserver/batch/rows/"
CHECK = "/admin/inventory/failoverserver/batch/check-name/"


def found(serial: str, name: str, model: str = "FS-7") -> str:
    return json.dumps({"serial": serial, "name": name, "model": model, "address": "192.0.2.9",
                       "port": 5000, "https": False, "cms_mode": "failover",
                       "cms_enabled": True, "version": cms_version(),
                       "paired_elsewhere": False, "locked": False})  # fmt: skip


def test_the_rows_plan_the_names_batch_add_gives(admin_client, team):
    from cms.inventory.models import FailoverServer

    FailoverServer.objects.create(team=team, name="FS-7-1", host="192.0.2.1", admin_password="x")
    html = admin_client.post(ROWS, {
        "found": [found("A", "a"), found("B", "b"), found("C", "c")],
        "pick": ["A", "C"], "naming_rule": "model_no",
    }, HTTP_HX_REQUEST="true").content.decode()  # fmt: skip
    planned = [line.split(">")[1].split("<")[0] for line in html.split("\n")
               if 'class="cms-batch-name"' in line]  # fmt: skip
    assert planned == ["FS-7-2", "", "FS-7-3"]


def test_the_name_check_says_what_ok_says(admin_client, team):
    from cms.inventory.models import FailoverServer

    FailoverServer.objects.create(team=team, name="Spare East", host="192.0.2.1",
                                  admin_password="x")  # fmt: skip
    base = {"found": [found("A", "a")], "serial": "A"}
    taken = admin_client.post(CHECK, base | {"edit_name": "Spare East"}).content.decode()
    assert "The name &#x27;Spare East&#x27; is already used by another server." in taken
    bad = admin_client.post(CHECK, base | {"edit_name": "a|b"}).content.decode()
    assert "errornote" in bad
    assert admin_client.post(CHECK, base | {"edit_name": "Spare West"}).content.strip() == b""

    ok = {"op": "edit_ok", "edit_password": "pw", "edit_naming": "custom", "edit_name": "a|b"}
    at_ok = admin_client.post(ROWS, base | ok)
    assert at_ok["HX-Retarget"] == "#cms-edit-errors"
    assert bad.strip().split(">", 1)[1].split("<")[0] in at_ok.content.decode()


def test_who_may_not_add_may_not_use_the_page(client, django_user_model, team):
    from django.contrib.auth.models import Group

    from cms.inventory.models import TeamMembership

    viewer = django_user_model.objects.create_user("v", password="pw-v-12345", is_staff=True)
    viewer.groups.add(Group.objects.get(name="Viewer"))
    TeamMembership.objects.create(team=team, user=viewer)
    client.force_login(viewer)
    for url in (ROWS, CHECK):
        assert client.post(url, {"found": [found("A", "a")], "op": "search"}).status_code == 403


def test_the_enable_window_wants_a_password_and_a_server_without_the_service(admin_client):
    off = json.loads(found("A", "a")) | {"cms_enabled": False, "cms_mode": "standalone"}
    base = {"found": [json.dumps(off), found("B", "b")], "op": "enable_ok"}
    empty = admin_client.post(ROWS, base | {"serial": "A", "enable_password": ""})
    assert empty["HX-Retarget"] == "#cms-enable-errors"
    assert "Enter the admin password of the server." in empty.content.decode()
    # A server whose CMS service is on offers no Enable: its window cannot be posted.
    on = admin_client.post(ROWS, base | {"serial": "B", "enable_password": "pw"})
    assert on.status_code == 403
    asked = admin_client.post(ROWS, base | {"serial": "A", "enable_password": "pw"}).content
    assert b'name="enable-A" value="on"' in asked
    assert b'aria-label="Select a" checked' in asked  # ticked, ready to add
