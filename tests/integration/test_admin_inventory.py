"""Bad input through the admin is rejected with its message and saves nothing."""

import html

import pytest

from cms.inventory.choices import NameSource
from cms.inventory.models import FailoverServer, License, RecordingServer, Server

ADD_URL = "/admin/inventory/failoverserver/add/"


def form_data(team, **overrides):
    data = {
        "team": team.pk,
        "name": "Standby North",
        "connection_type": "address",
        "host": "192.0.2.10",
        "port": "5001",
        "quickconnect_id": "",
        "admin_username": "admin",
        "admin_password_input": "pw-node",
        "enabled": "on",
    }
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not None}


def node_data(node, **overrides):
    """The form's connection fields for a real node agent."""
    return {"host": node.host, "port": str(node.port), "admin_password_input": node.password,
            **overrides}  # fmt: skip


def test_it_adds_a_failover_server_with_an_encrypted_password(admin_client, team, start_node):
    node = start_node(mode="failover", name="north", model="FS-9", password="pw-node")
    response = admin_client.post(ADD_URL, form_data(team, **node_data(node)))
    assert response.status_code == 302, response.content.decode()[:3000]
    server = FailoverServer.objects.get()
    assert server.role == "failover"
    assert server.admin_password.reveal() == "pw-node"
    # what the node says about itself is read before the save
    assert (server.serial, server.model) == (node.get_info()["serial"], "FS-9")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"name": "Bad/Name"}, "must not contain these symbols: /"),
        ({"name": " lead"}, "first character must not be a space"),
        ({"name": "x" * 33}, "at most 32 characters"),
        ({"name": ""}, "This field is required"),
        ({"host": "http://192.0.2.1/x"}, "without http://"),
        ({"host": "999.1.1.1"}, "not a valid IPv4 address"),
        ({"host": "bad_host!.example"}, "neither an IP address nor a valid host name"),
        ({"host": ""}, "Enter the IP address or FQDN"),
        ({"port": "70000"}, "less than or equal to 65535"),
        ({"port": "0"}, "greater than or equal to 1"),
        ({"admin_password_input": ""}, "This field is required"),
        (
            {"connection_type": "quickconnect", "host": "", "quickconnect_id": "-bad"},
            "A QuickConnect ID has 1 to 63",
        ),
        (
            {"connection_type": "quickconnect", "quickconnect_id": "site-a", "use_https": "on"},
            "HTTPS is available only for the IP address/FQDN",
        ),
    ],
)
def test_it_rejects_bad_input_and_saves_nothing(admin_client, team, overrides, message):
    response = admin_client.post(ADD_URL, form_data(team, **overrides))
    assert response.status_code == 200
    assert message in html.unescape(response.content.decode())
    assert not Server.objects.exists()


def test_it_refuses_a_duplicate_name_in_the_same_role_only(
    admin_client, team, make_server, start_node
):
    make_server(role="failover", name="Standby North")
    response = admin_client.post(ADD_URL, form_data(team))
    assert response.status_code == 200
    assert "already exists" in html.unescape(response.content.decode())
    assert FailoverServer.objects.count() == 1

    make_server(role="recording", name="Same Name")
    node = start_node(mode="failover")
    response = admin_client.post(ADD_URL, form_data(team, name="Same Name", **node_data(node)))
    assert response.status_code == 302, response.content.decode()[:3000]
    assert FailoverServer.objects.filter(name="Same Name").exists()


def test_editing_another_field_of_a_generated_name_keeps_working(admin_client, team, start_node):
    node = start_node(mode="failover")
    server = Server.objects.create(
        team=team, role="failover", name="DS923+-1", name_source=NameSource.NAMING_RULE,
        host="192.0.2.20", admin_password=node.password,
    )  # fmt: skip
    url = f"/admin/inventory/failoverserver/{server.pk}/change/"
    response = admin_client.post(url, form_data(
        team, name="DS923+-1", host=node.host, port=str(node.port), admin_password_input=""
    ))  # fmt: skip
    assert response.status_code == 302, response.content.decode()[:2000]
    server.refresh_from_db()
    assert server.host == node.host
    assert server.admin_password.reveal() == "pw"  # empty keeps the current one
    assert server.name_source == NameSource.NAMING_RULE

    # but a name typed by a person follows the rule
    response = admin_client.post(
        url, form_data(team, name="DS923+-2", host=node.host, port=str(node.port))
    )
    assert response.status_code == 200
    assert "must not contain these symbols: + -" in html.unescape(response.content.decode())
    server.refresh_from_db()
    assert server.name == "DS923+-1"


def test_lists_search_and_filter(admin_client, make_server):
    make_server(role="recording", name="Lobby")
    make_server(role="recording", name="Garage")
    make_server(role="failover", name="Standby")
    page = admin_client.get("/admin/inventory/recordingserver/?q=Gar").content.decode()
    assert "Garage" in page and "Lobby" not in page and "Standby" not in page
    page = admin_client.get(
        "/admin/inventory/failoverserver/?status__exact=unknown"
    ).content.decode()
    assert "Standby" in page and "Garage" not in page
    assert RecordingServer.objects.count() == 2


def test_a_license_key_must_be_well_formed_and_unique(admin_client, team):
    url = "/admin/inventory/license/add/"
    inline = {"moves-TOTAL_FORMS": "0", "moves-INITIAL_FORMS": "0"}

    def post(key):
        return admin_client.post(url, {"key": key, "team": team.pk, "cameras": 4, **inline})

    ok = post("abcd-1234-efgh-5678")
    assert ok.status_code == 302, ok.content.decode()[:3000]
    assert License.objects.get().key == "ABCD-1234-EFGH-5678"
    dup = post("ABCD-1234-EFGH-5678")
    assert "already exists" in html.unescape(dup.content.decode())
    bad = post("no key")
    assert "groups of 4 to 8 letters" in html.unescape(bad.content.decode())
    assert License.objects.count() == 1


def test_a_user_sees_only_their_teams_servers(
    client, django_user_model, team, other_team, make_server
):
    from django.contrib.auth.models import Permission

    from cms.inventory.models import TeamMembership

    user = django_user_model.objects.create_user("op", password="pw-op-123", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_recordingserver"))
    TeamMembership.objects.create(team=team, user=user)
    make_server(name="Mine")
    make_server(name="Theirs", team=other_team)
    client.force_login(user)
    page = client.get("/admin/inventory/recordingserver/").content.decode()
    assert "Mine" in page and "Theirs" not in page
