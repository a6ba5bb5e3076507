"""The failover pages and actions of the admin, against real agents."""

from __future__ import annotations

import html

import pytest

from cms.inventory.models import Server
from failover import engine
from failover.choices import EventState
from failover.models import FailoverEvent, FailoverSettings, Protection

pytestmark = pytest.mark.django_db(transaction=True)

FO_URL = "/admin/inventory/failoverserver/"
RS_URL = "/admin/inventory/recordingserver/"


def text(response) -> str:
    return html.unescape(response.content.decode())


def login_as(client, django_user_model, team, role: str):
    """A staff member of `team` in the group `role`, logged in on `client`."""
    from django.contrib.auth.models import Group

    from cms.inventory.models import TeamMembership

    user = django_user_model.objects.create_user(f"u-{role}", password="pw-role-123", is_staff=True)
    user.groups.add(Group.objects.get(name=role))
    TeamMembership.objects.create(team=team, user=user)
    client.force_login(user)
    return user


def active_event(make_fleet):
    fleet = make_fleet(failovers=1)
    event = fleet.fail_over()
    assert event.state == EventState.ACTIVE
    return fleet, event


def test_the_settings_page_edits_the_defaults_and_rejects_bad_values(admin_client, db):
    response = admin_client.get("/admin/failover/failoversettings/")
    assert response.status_code == 200
    assert "CMS defaults" in text(response)
    url = f"/admin/failover/failoversettings/{FailoverSettings.load().pk}/change/"
    page = admin_client.get(url)
    assert "Failback" in text(page)
    data = {
        "auto_failover": "on", "on_disconnection": "on", "probe_interval": "2",
        "probe_timeout": "5", "failures_before_failover": "3",
        "successes_before_recovery": "3", "failback_mode": "automatic",
        "failback_hold_down": "60", "failback_window_start": "02:00",
        "failback_window_end": "05:00", "mass_failure_share": "30",
        "mass_failure_min_servers": "3", "mass_failure_window": "60",
        "flap_failovers": "3", "flap_window": "3600",
    }  # fmt: skip
    bad = admin_client.post(url, data)
    assert "shorter than the probe interval" in text(bad)
    assert FailoverSettings.load().probe_interval == 5
    data["probe_timeout"] = "1.5"
    assert admin_client.post(url, data).status_code == 302
    saved = FailoverSettings.load()
    assert (saved.probe_interval, saved.on_volume_abnormal) == (2, False)


def test_manual_failover_from_the_recording_server_list(admin_client, make_fleet):
    fleet = make_fleet(failovers=1)
    response = admin_client.post(
        RS_URL, {"action": "manual_failover", "_selected_action": [fleet.recording.pk]},
        follow=True,
    )  # fmt: skip
    event = FailoverEvent.objects.get()
    assert event.trigger == "manual"
    assert f"failover event #{event.pk} started" in text(response)
    assert event.transitions.get().actor == "root"
    assert engine.advance(event.pk) == EventState.ACTIVE


def test_disabling_an_acting_failover_server_asks_first(admin_client, make_fleet):
    fleet, event = active_event(make_fleet)
    fs = fleet.failovers[0]
    post = {"action": "disable_servers", "_selected_action": [fs.pk]}
    confirm_page = admin_client.post(FO_URL, post)
    assert "the recordings and snapshots it made during the failover are removed" in text(
        confirm_page
    )
    fs.refresh_from_db()
    event.refresh_from_db()
    assert fs.enabled and event.state == EventState.ACTIVE  # nothing changed yet

    admin_client.post(FO_URL, {**post, "confirm": "yes"})
    fs.refresh_from_db()
    event.refresh_from_db()
    assert not fs.enabled
    assert event.state == EventState.STOPPED


def test_editing_an_acting_failover_server_needs_the_confirmation(admin_client, make_fleet):
    fleet, event = active_event(make_fleet)
    fs = fleet.failovers[0]
    url = f"{FO_URL}{fs.pk}/change/"
    data = {
        "team": fs.team_id, "name": "Standby renamed", "connection_type": "address",
        "host": fs.host, "port": fs.port, "quickconnect_id": "", "admin_username": "admin",
        "admin_password_input": "", "enabled": "on",
    }  # fmt: skip
    refused = admin_client.post(url, data)
    assert "Stop the failover" in text(refused)
    fs.refresh_from_db()
    assert fs.name == "Standby 1"

    saved = admin_client.post(url, {**data, "confirm_stop_failover": "yes"})
    assert saved.status_code == 302
    fs.refresh_from_db()
    event.refresh_from_db()
    assert fs.name == "Standby renamed"
    assert event.state == EventState.STOPPED


def test_editing_an_acting_failover_servers_address_cleans_up_the_node_that_acted(
    admin_client, make_fleet, start_node
):
    """The node told to stop is the one that took over, not the one at the new address."""
    from tests.fixtures.nodes import wait_until
    from tests.integration.test_failover_engine import failover_files, recording_for

    fleet, event = active_event(make_fleet)
    fs, fo_node = fleet.failovers[0], fleet.failover_nodes[0]
    other = start_node(mode="failover", name="elsewhere")
    wait_until(lambda: failover_files(fo_node, event.node_tag), message="recordings")
    saved = admin_client.post(f"{FO_URL}{fs.pk}/change/", {
        "team": fs.team_id, "name": fs.name, "connection_type": "address",
        "host": other.host, "port": other.port, "quickconnect_id": "",
        "admin_username": "admin", "admin_password_input": "", "enabled": "on",
        "confirm_stop_failover": "yes", "confirm_node_replacement": "on",
    })  # fmt: skip
    assert saved.status_code == 302, saved.content.decode()[-3000:]
    event.refresh_from_db()
    fs.refresh_from_db()
    assert (event.state, fs.port) == (EventState.STOPPED, other.port)
    assert fs.serial == other.get_info()["serial"]
    assert recording_for(fo_node) is None
    assert failover_files(fo_node, event.node_tag) == []
    assert event.transitions.filter(reason__startswith="Removed").exists()


def test_deleting_a_failed_over_recording_server_releases_its_failover_server(
    admin_client, make_fleet
):
    from tests.integration.test_failover_engine import failover_files, recording_for

    fleet, event = active_event(make_fleet)
    rs = fleet.recording
    assert admin_client.post(f"{RS_URL}{rs.pk}/delete/", {"post": "yes"}).status_code == 302
    assert not Server.objects.filter(pk=rs.pk).exists()
    event.refresh_from_db()
    assert event.state == EventState.STOPPED
    assert recording_for(fleet.failover_nodes[0]) is None
    assert failover_files(fleet.failover_nodes[0], event.node_tag)  # recordings are kept


def test_deleting_an_acting_failover_server_warns_then_stops_it(admin_client, make_fleet):
    fleet, event = active_event(make_fleet)
    fs = fleet.failovers[0]
    page = admin_client.get(f"{FO_URL}{fs.pk}/delete/")
    assert "has taken over for Lobby" in text(page)
    admin_client.post(f"{FO_URL}{fs.pk}/delete/", {"post": "yes"})
    assert not Server.objects.filter(pk=fs.pk).exists()
    event.refresh_from_db()
    assert event.state == EventState.STOPPED
    assert event.failover_server_name == "Standby 1"  # the history keeps the name


def test_the_event_page_shows_the_timeline_and_the_replace_dialog(admin_client, make_fleet):
    fleet, event = active_event(make_fleet)
    page = text(admin_client.get(f"/admin/failover/failoverevent/{event.pk}/change/"))
    assert "Timeline" in page and "taking_over" in page.replace("Taking over", "taking_over")
    assert "Replace protected server" in page
    assert "Recording gap: measured at failback." in page

    url = f"/admin/failover/failoverevent/{event.pk}/replace/"
    dialog = text(admin_client.get(url))
    assert "Standby 1 (the acting failover server)" in dialog
    preview = text(admin_client.post(url, {"replacement": fleet.failovers[0].pk}))
    assert "Lobby is removed from the recording server list." in preview
    assert "becomes a recording server" in preview
    event.refresh_from_db()
    assert event.state == EventState.ACTIVE  # a preview changes nothing

    # OK with another choice than the previewed one shows that choice's preview instead.
    unseen = {"replacement": fleet.failovers[0].pk, "confirm": "yes", "previewed": "0"}
    assert "becomes a recording server" in text(admin_client.post(url, unseen))
    event.refresh_from_db()
    assert event.state == EventState.ACTIVE

    done = admin_client.post(url, {**unseen, "previewed": fleet.failovers[0].pk})
    assert done.status_code == 302
    event.refresh_from_db()
    assert event.state == EventState.REPLACED


def test_an_operator_without_the_permission_has_no_failover_action(
    client, make_fleet, django_user_model, team
):
    from django.contrib.auth.models import Permission

    from cms.inventory.models import TeamMembership

    fleet = make_fleet(failovers=1)
    user = django_user_model.objects.create_user("viewer", password="pw-viewer-1", is_staff=True)
    user.user_permissions.add(
        *Permission.objects.filter(codename__in=["view_recordingserver", "change_recordingserver"])
    )
    TeamMembership.objects.create(team=team, user=user)
    client.force_login(user)
    page = text(client.get(RS_URL))
    assert "Manual failover" not in page
    response = client.post(
        RS_URL, {"action": "manual_failover", "_selected_action": [fleet.recording.pk]}
    )
    assert not FailoverEvent.objects.exists()
    assert response.status_code in (200, 302)


def test_protection_is_edited_inline_on_the_recording_server(admin_client, make_fleet):
    fleet = make_fleet(failovers=1)
    rs = fleet.recording
    page = text(admin_client.get(f"{RS_URL}{rs.pk}/change/"))
    assert "Failover servers protecting it" in page
    assert Protection.objects.filter(recording_server=rs).count() == 1


@pytest.mark.parametrize(
    ("role", "sees", "hidden"),
    [
        ("Viewer", [], ["Manual failover", "Enable selected servers"]),
        ("Operator", ["Manual failover", "Enable selected servers"], []),
    ],
)
def test_the_admin_shows_each_role_its_actions(
    client, django_user_model, sites, role, sees, hidden
):
    login_as(client, django_user_model, sites[0].team, role)
    page = text(client.get(RS_URL))
    assert "Lobby N" in page and "Lobby S" not in page  # the team restriction
    for label in sees:
        assert label in page
    for label in hidden:
        assert label not in page
    other = client.get(f"{RS_URL}{sites[1].recording.pk}/change/", follow=True)
    assert other.redirect_chain  # back to the list: as if it did not exist
    assert "Lobby S" not in text(other)


def test_the_admin_index_is_a_dashboard(admin_client, make_fleet):
    fleet, event = active_event(make_fleet)
    page = text(admin_client.get("/admin/"))
    assert "Fleet" in page and "Recording servers" in page
    assert "Disconnected" in page  # Lobby
    assert f"#{event.pk} Lobby" in page and "Failover active" in page
    assert "Time to take over" in page and "Acting for a recording server" in page
    assert fleet.failovers[0].name in page


def test_the_failover_tab_has_a_status_panel_with_counts(admin_client, make_fleet):
    fleet, _ = active_event(make_fleet)  # Standby 1 acts for Lobby
    from tests.fixtures.fleet import register

    spare = register(fleet.failover_nodes[0], fleet.recording.team, "failover", "Spare")
    Server.objects.filter(pk=spare.pk).update(enabled=False)
    page = text(admin_client.get(FO_URL))
    assert "Acting for a recording server (1)" in page
    assert "Disabled (1)" in page and "Standby (0)" in page
    assert "Lobby" in page  # protects / acting for
    acting = text(admin_client.get(FO_URL + "?duty=acting"))
    assert "Standby 1" in acting and "Spare" not in acting
    assert "Failover active" in acting


def test_advanced_replace_on_the_failover_tab_opens_the_dialog(
    admin_client, make_fleet, make_server
):
    fleet, event = active_event(make_fleet)
    post = {"action": "replace_protected_server", "_selected_action": [fleet.failovers[0].pk]}
    response = admin_client.post(FO_URL, post)
    assert response.status_code == 302
    assert response.url == f"/admin/failover/failoverevent/{event.pk}/replace/"

    idle = make_server(name="Spare", role="failover")
    refused = admin_client.post(FO_URL, {**post, "_selected_action": [idle.pk]}, follow=True)
    assert "Select the one failover server that has taken over" in text(refused)


def test_advanced_stop_restoration_on_the_failover_tab_confirms_first(admin_client, make_fleet):
    from tests.integration.test_failover_engine import restoring_event

    fleet, event, _ = restoring_event(make_fleet)
    post = {"action": "stop_restoration", "_selected_action": [fleet.failovers[0].pk]}
    confirm_page = text(admin_client.post(FO_URL, post))
    assert "are removed and will not be restored" in confirm_page
    event.refresh_from_db()
    assert event.state == EventState.RESTORING  # nothing changed yet

    done = text(admin_client.post(FO_URL, {**post, "confirm": "yes"}, follow=True))
    assert f"Event #{event.pk}: stopped;" in done
    event.refresh_from_db()
    assert event.state == EventState.RESTORATION_STOPPED


def test_lock_and_unlock_from_the_recording_server_list(admin_client, make_fleet):
    fleet = make_fleet(failovers=0)
    post = {"action": "lock_servers", "_selected_action": [fleet.recording.pk]}
    done = text(admin_client.post(RS_URL, post, follow=True))
    assert "Locked: Lobby." in done
    assert fleet.recording_node.client().info()["locked"] is True
    admin_client.post(RS_URL, {**post, "action": "unlock_servers"})
    fleet.refresh()
    assert fleet.recording.locked is False
    assert fleet.recording_node.client().info()["locked"] is False


@pytest.mark.parametrize(
    ("role", "sees", "hidden"),
    [
        ("Operator", ["Disable selected servers"],
         ["Add Batch", "Lock selected servers", "Advanced: Replace protected server"]),
        ("Administrator",
         ["Add Batch", "Add Server", "Lock selected servers", "Advanced: Stop Restoration"], []),
    ],
)  # fmt: skip
def test_each_role_sees_only_the_server_tab_controls_it_may_use(
    client, django_user_model, sites, role, sees, hidden
):
    login_as(client, django_user_model, sites[0].team, role)
    page = text(client.get(RS_URL)) + text(client.get(FO_URL))
    for label in sees:
        assert label in page
    for label in hidden:
        assert label not in page
    batch = client.get(f"{FO_URL}batch/")
    assert batch.status_code == (200 if "Add Batch" in sees else 403)
    if "Lock selected servers" in hidden:  # a hidden action cannot be posted either
        post = {"action": "lock_servers", "_selected_action": [sites[0].recording.pk]}
        refused = text(client.post(RS_URL, post, follow=True))
        assert "No action selected." in refused
        sites[0].recording.refresh_from_db()
        assert sites[0].recording.locked is False


def test_deleting_several_failover_servers_warns_for_the_acting_one(admin_client, make_fleet):
    fleet, event = active_event(make_fleet)
    acting = fleet.failovers[0]
    post = {"action": "delete_selected", "_selected_action": [acting.pk]}
    confirm_page = text(admin_client.post(FO_URL, post))
    assert "has taken over for Lobby" in confirm_page
    assert Server.objects.filter(pk=acting.pk).exists()  # nothing yet

    admin_client.post(FO_URL, {**post, "post": "yes"})
    assert not Server.objects.filter(pk=acting.pk).exists()
    event.refresh_from_db()
    assert event.state == EventState.STOPPED


def test_replacing_with_the_acting_server_says_whom_it_stops_protecting(
    admin_client, make_fleet, make_server
):
    fleet, event = active_event(make_fleet)
    standby = fleet.failovers[0]
    garage = make_server(name="Garage")
    Protection.objects.create(recording_server=garage, failover_server=standby)
    url = f"/admin/failover/failoverevent/{event.pk}/replace/"
    preview = text(admin_client.post(url, {"replacement": standby.pk}))
    assert "Standby 1 stops protecting Garage; left without any failover server: Garage." in (
        preview
    )


def test_fail_back_now_from_the_recording_server_list(admin_client, make_fleet, failover_settings):
    from tests.integration.test_failover_engine import cycles

    failover_settings.failback_mode = "manual"
    failover_settings.save()
    fleet = make_fleet(failovers=1)
    event = fleet.fail_over("service")
    post = {"action": "fail_back_now", "_selected_action": [fleet.recording.pk]}
    early = text(admin_client.post(RS_URL, post, follow=True))
    assert "Lobby: The recording server is not back to normal yet" in early

    fleet.recording_node.client().set_fault("clear")
    cycles(3)
    assert engine.advance(event.pk) == EventState.WAITING_FAILBACK
    done = text(admin_client.post(RS_URL, post, follow=True))
    assert f"Lobby: failing back (event #{event.pk})." in done
    event.refresh_from_db()
    assert event.state == EventState.FAILING_BACK
    assert event.transitions.filter(to_state="failing_back").get().actor == "root"
