"""Each team has its own failover settings: the probe loop applies each server its team's,
a team's Administrator sees and changes only their team's, a superuser the defaults."""

from __future__ import annotations

import html
import time

import pytest
from django.contrib.auth.models import Group
from rest_framework.test import APIClient

from cms.inventory.models import TeamMembership
from failover.models import FailoverEvent, FailoverSettings

URL = "/api/v1/failover-settings/"
ADMIN_URL = "/admin/failover/failoversettings/"


def member(django_user_model, team, role: str, name: str):
    user = django_user_model.objects.create_user(name, password="pw-member-123", is_staff=True)
    user.groups.add(Group.objects.get(name=role))
    TeamMembership.objects.create(team=team, user=user)
    return user


def api_as(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def own_row(team, **values) -> FailoverSettings:
    row = FailoverSettings.own_or_copy(team)
    for name, value in values.items():
        setattr(row, name, value)
    row.full_clean()
    row.save()
    return row


def rows() -> list[dict]:
    return list(FailoverSettings.objects.order_by("pk").values())


@pytest.mark.django_db(transaction=True)
def test_each_team_fails_over_by_its_own_settings(
    make_fleet, start_node, other_team, team, failover_settings
):
    """Team A fails over after 2 failed probes, team B after 4, the defaults say 3."""
    from failover import engine, probing
    from failover.engine import refresh_snapshot
    from failover.models import Protection
    from tests.fixtures.fleet import register

    failover_settings.failures_before_failover = 3
    failover_settings.save()
    fleet_a = make_fleet(failovers=1, name="Lobby")
    gate_node = start_node(mode="recording", name="gate")
    gate = register(gate_node, other_team, "recording", "Gate")
    standby_b = register(start_node(mode="failover", name="standby-b"), other_team, "failover",
                         "Standby B")  # fmt: skip
    Protection.objects.create(recording_server=gate, failover_server=standby_b)
    refresh_snapshot(gate)
    own_row(team, failures_before_failover=2)
    own_row(other_team, failures_before_failover=4)

    fleet_a.recording_node.kill()
    gate_node.kill()
    for _ in range(2):
        probing.run_cycle(force=True)
    a_event = FailoverEvent.objects.get(recording_server=fleet_a.recording)
    assert not FailoverEvent.objects.filter(recording_server=gate).exists()
    gate.refresh_from_db()
    assert gate.consecutive_failures == 2  # counted towards B's 4, not cut at A's 2
    engine.advance(a_event.pk)
    a_event.refresh_from_db()
    assert a_event.state == "active" and a_event.failover_server == fleet_a.failovers[0]

    probing.run_cycle(force=True)
    assert not FailoverEvent.objects.filter(recording_server=gate).exists()  # 3: defaults'
    probing.run_cycle(force=True)
    assert FailoverEvent.objects.filter(recording_server=gate).exists()  # B's 4


@pytest.mark.django_db(transaction=True)
def test_each_team_is_probed_at_its_own_interval(make_server, team, other_team):
    from failover import probing

    fast = [make_server(name=f"A{i}", port=9) for i in range(2)]
    slow = make_server(name="B1", team=other_team, port=9)
    own_row(team, probe_interval=1, probe_timeout=0.5)
    own_row(other_team, probe_interval=3600, probe_timeout=0.5)
    first = probing.run_cycle()
    assert first.ran and first.probed == 3
    time.sleep(1.1)  # the next 1-second slot: team A's is due, team B's is not
    second = probing.run_cycle()
    assert second.ran and second.probed == len(fast)
    slow.refresh_from_db()
    assert slow.consecutive_failures == 1


def test_a_new_team_follows_the_defaults_a_superuser_edits(admin_user, team, admin_client):
    root = api_as(admin_user)
    edited = root.patch(URL, {"probe_interval": 7, "probe_timeout": 2}, format="json")
    assert edited.status_code == 200, edited.content
    assert edited.json()["team"] is None
    theirs = root.get(URL, {"team": team.pk}).json()
    assert theirs["team"] == team.pk and theirs["follows_defaults"] is True
    assert (theirs["probe_interval"], theirs["probe_timeout"]) == (7, 2)
    assert FailoverSettings.for_team(team.pk).probe_interval == 7
    # ... and in the admin: the defaults are a row of the list, edited there.
    page = admin_client.get(f"{ADMIN_URL}{FailoverSettings.load().pk}/change/")
    assert page.status_code == 200
    form = page.context["adminform"].form
    data = {k: v for k, v in form.initial.items() if v is not None and v is not False}
    data.update({"probe_interval": "8", "probe_timeout": "2", "failback_window_start": "02:00",
                 "failback_window_end": "05:00"})  # fmt: skip
    data = {k: ("on" if v is True else v) for k, v in data.items()}
    saved = admin_client.post(f"{ADMIN_URL}{FailoverSettings.load().pk}/change/", data)
    assert saved.status_code == 302, html.unescape(saved.content.decode())[:2000]
    assert FailoverSettings.for_team(team.pk).probe_interval == 8


def test_a_team_administrator_changes_only_their_own_teams_settings(
    django_user_model, team, other_team
):
    admin_a = api_as(member(django_user_model, team, "Administrator", "admin-a"))
    admin_b = api_as(member(django_user_model, other_team, "Administrator", "admin-b"))
    operator_b = api_as(member(django_user_model, other_team, "Operator", "op-b"))
    assert admin_a.patch(URL, {"failures_before_failover": 5}, format="json").status_code == 200
    before = rows()

    assert admin_b.get(URL, {"team": team.pk}).status_code == 404
    for method in ("patch", "put"):
        refused = getattr(admin_b, method)(f"{URL}?team={team.pk}", {"probe_interval": 9},
                                           format="json")  # fmt: skip
        assert refused.status_code == 404
    assert operator_b.patch(URL, {"probe_interval": 9}, format="json").status_code == 403
    assert rows() == before

    mine = admin_b.get(URL).json()
    assert mine["team"] == other_team.pk and mine["follows_defaults"] is True
    assert mine["failures_before_failover"] == FailoverSettings.load().failures_before_failover
    changed = admin_b.patch(URL, {"probe_interval": 9}, format="json")
    assert changed.status_code == 200 and changed.json()["follows_defaults"] is False
    assert FailoverSettings.for_team(other_team.pk).probe_interval == 9
    assert FailoverSettings.for_team(team.pk).failures_before_failover == 5
    assert (
        FailoverSettings.for_team(team.pk).probe_interval == FailoverSettings.load().probe_interval
    )


def test_the_admin_shows_a_team_administrator_only_their_teams_settings(
    client, django_user_model, team, other_team
):
    theirs = own_row(team, failures_before_failover=5)
    client.force_login(member(django_user_model, other_team, "Administrator", "admin-b"))
    before = rows()
    assert client.get(f"{ADMIN_URL}{theirs.pk}/change/").status_code == 404
    assert client.post(f"{ADMIN_URL}{theirs.pk}/change/",
                       {"failures_before_failover": "9"}).status_code == 404  # fmt: skip
    defaults = FailoverSettings.load()
    assert client.get(f"{ADMIN_URL}{defaults.pk}/change/").status_code == 404
    # Adding "their own" settings for team A is refused by the form.
    add = client.get(f"{ADMIN_URL}add/", {"team": team.pk})
    form = add.context["adminform"].form
    assert list(form.fields["team"].queryset) == [other_team]
    data = {name: value for name, value in defaults.values().items() if value is not False}
    data = {k: ("on" if v is True else str(v)) for k, v in data.items()}
    refused = client.post(f"{ADMIN_URL}add/", {**data, "team": team.pk})
    assert refused.status_code == 200 and "Select a valid choice" in refused.content.decode()
    assert rows() == before

    # Their own team's page is where the list leads them, starting from the defaults.
    landing = client.get(ADMIN_URL)
    assert landing.status_code == 302 and landing["Location"].endswith(f"?team={other_team.pk}")
    page = client.get(landing["Location"])
    assert page.context["adminform"].form.initial["probe_interval"] == defaults.probe_interval
    saved = client.post(f"{ADMIN_URL}add/", {**data, "team": other_team.pk,
                                             "probe_interval": "11"})  # fmt: skip
    assert saved.status_code == 302
    assert FailoverSettings.for_team(other_team.pk).probe_interval == 11
    assert FailoverSettings.for_team(team.pk).failures_before_failover == 5
    assert FailoverSettings.load().probe_interval == defaults.probe_interval
    landing = client.get(ADMIN_URL)
    own = FailoverSettings.objects.get(team=other_team)
    assert landing["Location"] == f"{ADMIN_URL}{own.pk}/change/"


@pytest.mark.django_db(transaction=True)
def test_each_server_waits_its_own_teams_probe_timeout_in_one_batch(make_server, team, other_team):
    """Two teams' silent nodes: each probe gives up after its own team's timeout, and
    both teams are probed together (one batch), not one team after the other."""
    import socket
    import threading

    from failover import probing

    happened: list[str] = []  # what the silent node saw, in order

    def hold(conn: socket.socket) -> None:
        with conn:
            while conn.recv(4096):  # read the request, never answer
                pass
        happened.append("closed")

    def serve(listener: socket.socket) -> None:
        for _ in range(2):
            conn, _ = listener.accept()
            happened.append("connected")
            threading.Thread(target=hold, args=(conn,), daemon=True).start()

    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        threading.Thread(target=serve, args=(silent,), daemon=True).start()
        port = silent.getsockname()[1]
        a = make_server(name="A1", host="127.0.0.1", port=port)
        b = make_server(name="B1", team=other_team, host="127.0.0.1", port=port)
        own_row(team, probe_timeout=1)
        own_row(other_team, probe_timeout=2)
        report = probing.run_cycle(force=True)
    assert report.probed == 2
    a.refresh_from_db()
    b.refresh_from_db()
    assert "within 1 s" in a.last_error and "within 2 s" in b.last_error
    # One batch: the second team's probe was under way before the first one gave up.
    assert happened[:2] == ["connected", "connected"], happened
