"""The JSON that list and event pages poll to show status changes without a reload."""

from failover.models import FailoverEvent, RestorationJob

URL = "/admin/failover/failoverevent/live-status/"
UPDATES = "/admin/failover/failoverevent/live-updates/"


def test_it_reports_labels_and_progress_for_the_ids_asked(admin_client, sites):
    site = sites[0]
    FailoverEvent.objects.filter(pk=site.event.pk).update(
        state="active", failover_server=site.failover, failover_server_name=site.failover.name
    )
    RestorationJob.objects.filter(pk=site.restoration.pk).update(
        state="running", files_total=4, files_done=1, bytes_total=4_000_000,
        bytes_done=1_000_000, rate_bps=500_000,
    )  # fmt: skip
    ids = f"{site.recording.pk},{site.failover.pk}"
    data = admin_client.get(f"{URL}?servers={ids}&jobs={site.restoration.pk}").json()
    assert data["servers"][str(site.recording.pk)] == "Not probed yet (failed over to Standby N)"
    assert data["servers"][str(site.failover.pk)] == "Failover active"
    job = data["jobs"][str(site.restoration.pk)]
    assert (job["percent"], job["seconds_left"], job["rate_mbps"]) == (25.0, 6, 0.5)


def test_another_teams_ids_are_not_answered(client, django_user_model, sites):
    from django.contrib.auth.models import Group

    from cms.inventory.models import TeamMembership

    user = django_user_model.objects.create_user("v", password="pw-v-12345", is_staff=True)
    user.groups.add(Group.objects.get(name="Viewer"))
    TeamMembership.objects.create(team=sites[0].team, user=user)
    client.force_login(user)
    theirs = sites[1].recording.pk
    data = client.get(f"{URL}?servers={sites[0].recording.pk},{theirs}").json()
    assert list(data["servers"]) == [str(sites[0].recording.pk)]


def test_the_lists_and_the_event_page_load_the_poller(admin_client, sites):
    for url in ("/admin/inventory/recordingserver/", "/admin/inventory/failoverserver/",
                f"/admin/failover/failoverevent/{sites[0].event.pk}/change/"):  # fmt: skip
        page = admin_client.get(url).content.decode()
        assert "django_htmx/htmx-2.min.js" in page and UPDATES in page
        assert "failover/live.js" not in page  # no script rebuilds the rows any more
        assert 'class="cms-status"' in page or 'class="cms-job"' in page


def test_the_poll_answers_only_the_labels_that_changed(admin_client, sites):
    from failover.admin_status import label_token

    site = sites[0]
    shown = {f"server-{site.recording.pk}": label_token("Not probed yet"),
             f"server-{site.failover.pk}": label_token("Not probed yet")}  # fmt: skip
    assert admin_client.get(UPDATES, shown).content.decode().strip() == ""

    FailoverEvent.objects.filter(pk=site.event.pk).update(
        state="active", failover_server=site.failover, failover_server_name=site.failover.name
    )
    html = admin_client.get(UPDATES, shown).content.decode()
    assert f'id="cms-status-{site.recording.pk}"' in html and 'hx-swap-oob="true"' in html
    assert "Not probed yet (failed over to Standby N)" in html
    assert "Failover active" in html and "cms-changed" in html


def test_the_poll_answers_nothing_of_another_teams_servers(client, django_user_model, sites):
    from django.contrib.auth.models import Group

    from cms.inventory.models import TeamMembership

    user = django_user_model.objects.create_user("v2", password="pw-v-12345", is_staff=True)
    user.groups.add(Group.objects.get(name="Viewer"))
    TeamMembership.objects.create(team=sites[0].team, user=user)
    client.force_login(user)
    ours, theirs = sites[0].recording.pk, sites[1].recording.pk
    html = client.get(UPDATES, {f"server-{ours}": "stale", f"server-{theirs}": "stale",
                                "job": sites[1].restoration.pk}).content.decode()  # fmt: skip
    assert f"cms-status-{ours}" in html
    assert f"cms-status-{theirs}" not in html and "cms-job" not in html


def test_the_poll_renders_a_running_restoration(admin_client, sites):
    site = sites[0]
    RestorationJob.objects.filter(pk=site.restoration.pk).update(
        state="running", files_total=4, files_done=1, bytes_total=4_000_000,
        bytes_done=1_000_000, rate_bps=500_000,
    )  # fmt: skip
    html = admin_client.get(UPDATES, {"job": site.restoration.pk}).content.decode()
    assert f'id="cms-job-{site.restoration.pk}"' in html
    assert "Running: 25% — 1/4 files, 1.0 MB of 4.0 MB, 0.5 MB/s, about 6 s left" in html


def test_the_connect_helpers_check_input_and_permission(client, admin_client, django_user_model):
    url = "/admin/inventory/failoverserver/connect/test/"
    bad = admin_client.post(url, {"connection_type": "address", "host": "http://x/",
                                  "port": "5000", "admin_password_input": ""})  # fmt: skip
    assert bad.status_code == 400
    assert "without http://" in bad.json()["errors"]["host"][0]
    assert "admin_password_input" in bad.json()["errors"]
    search = admin_client.post("/admin/inventory/failoverserver/connect/search/",
                               {"address": "not-an-ip"})  # fmt: skip
    assert search.status_code == 400

    viewer = django_user_model.objects.create_user("vv", password="pw-vv-12345", is_staff=True)
    client.force_login(viewer)
    assert client.post(url, {"host": "192.0.2.1"}).status_code == 403


def test_the_recording_label_follows_the_event_from_takeover_to_restoration(admin_client, sites):
    site = sites[0]
    expected = {
        "taking_over": "Not probed yet (failing over to Standby N)",
        "active": "Not probed yet (failed over to Standby N)",
        "failing_back": "Not probed yet (failing back from Standby N)",
        "restoring": "Not probed yet (restoring recordings from Standby N)",
        "completed": "Not probed yet",
    }
    for state, label in expected.items():
        FailoverEvent.objects.filter(pk=site.event.pk).update(
            state=state, failover_server=site.failover, failover_server_name="Standby N"
        )
        data = admin_client.get(f"{URL}?servers={site.recording.pk}").json()
        assert data["servers"][str(site.recording.pk)] == label, state


def test_an_acting_failover_server_counts_once_and_shows_its_health(admin_client, sites):
    from cms.inventory.models import Server

    site = sites[0]
    FailoverEvent.objects.filter(pk=site.event.pk).update(
        state="active", failover_server=site.failover, failover_server_name=site.failover.name
    )
    Server.objects.filter(pk=site.failover.pk).update(status="disconnected")
    data = admin_client.get(f"{URL}?servers={site.failover.pk}").json()
    assert data["servers"][str(site.failover.pk)] == "Failover active (Disconnected)"
    page = admin_client.get("/admin/inventory/failoverserver/").content.decode()
    assert "Acting for a recording server (1)" in page
    assert "Abnormal (disconnected, volume, service, login, bad answer) (0)" in page
