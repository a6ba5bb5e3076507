"""An operator runs the failover operations of the admin in a real browser, against real agents.

The engine's steps that a Celery worker would run are either run by a real worker
process (manual failover) or called from the test, as tests/integration does, to get
an event into the state the page needs; every click is on the real admin pages.
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.fixtures.celery import SESSION_QUEUE, purge, start_worker
from tests.fixtures.fleet import register
from tests.fixtures.nodes import wait_until

pytestmark = pytest.mark.django_db(transaction=True)

FO_URL = "/admin/inventory/failoverserver/"
RS_URL = "/admin/inventory/recordingserver/"
EVENTS_URL = "/admin/failover/failoverevent/"
WAIT = 20_000  # ms: a worker, a probe or an agent is involved


# -- helpers ------------------------------------------------------------------------


def run_action(page, pks: list[int], action: str) -> None:
    """Tick the rows of `pks` on a change list, choose `action` and click Go."""
    for pk in pks:
        page.locator(f'input[name="_selected_action"][value="{pk}"]').check()
    page.locator('select[name="action"]').select_option(label=action)
    page.get_by_role("button", name="Go").click()


def listed_names(page):
    """The name column of the change list (the first column, a link)."""
    return page.locator("#result_list tbody th")


def status_panel(page):
    return page.locator('#changelist-filter details[data-filter-title="status"] li a')


def failover_files(node, tag: str) -> list[dict]:
    return list(node.client().list_recordings(origin="failover", on_behalf_of=tag))


def recording_for(node) -> str | None:
    return (node.client().health()["recording"]["on_behalf_of"] or {}).get("id")


def cycles(n: int) -> None:
    from failover import probing

    for _ in range(n):
        probing.run_cycle(force=True)


def install_license(server, key: str, cameras: int = 4):
    """A license of the team, installed on `server`'s node through the service."""
    from cms.inventory.licenses import install
    from cms.inventory.models import License

    lic = License(key=key, team=server.team, cameras=cameras)
    lic.full_clean()
    lic.save()
    install(lic, server, actor="root")
    return lic


@pytest.fixture
def run_worker(tmp_path):
    """Start a real Celery worker on the session queue; stopped at teardown."""
    started = []

    def start():
        worker = start_worker(tmp_path, queue=SESSION_QUEUE)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()


# -- 1. the status panel of the Failover Servers tab --------------------------------


def test_the_status_panel_counts_the_failover_servers_and_filters_the_list(
    page, make_fleet, make_server
):
    from failover.choices import EventState

    fleet = make_fleet(failovers=3)
    fleet.failover_nodes[2].kill()  # Standby 3 is found disconnected by the next probes
    event = fleet.fail_over()  # Standby 1 takes over for Lobby
    assert event.state == EventState.ACTIVE
    assert event.failover_server == fleet.failovers[0]
    make_server(role="failover", name="Spare", enabled=False)

    page.goto(FO_URL)
    expect(listed_names(page)).to_have_text(
        ["Spare", "Standby 1", "Standby 2", "Standby 3"], timeout=WAIT
    )
    expect(status_panel(page)).to_have_text(
        [
            "All",
            "Standby (1)",
            "Taking over (0)",
            "Acting for a recording server (1)",
            "Restoring recordings (0)",
            "Abnormal (disconnected, volume, service, login, bad answer) (1)",
            "Not probed yet (0)",
            "Disabled (1)",
        ]
    )

    expected = [
        ("Acting for a recording server (1)", "acting", "Standby 1", "Failover active"),
        ("Standby (1)", "standby", "Standby 2", "Standby"),
        ("Abnormal (disconnected, volume, service, login, bad answer) (1)", "abnormal", "Standby 3",
         "Disconnected"),
        ("Disabled (1)", "disabled", "Spare", "Disabled"),
    ]  # fmt: skip
    for link, key, name, status in expected:
        status_panel(page).filter(has_text=link).click()
        expect(page).to_have_url(re.compile(rf"\?duty={key}$"))
        expect(listed_names(page)).to_have_text([name])
        expect(page.locator("#result_list tbody .cms-status")).to_have_text([status])
        selected = page.locator(
            '#changelist-filter details[data-filter-title="status"] li.selected'
        )
        expect(selected).to_have_text(link)
        # the counts are of the whole tab, not of the filtered list
        expect(status_panel(page).filter(has_text="Disabled")).to_have_text("Disabled (1)")

    expect(page.locator("#result_list tbody td.field-acting_for")).to_have_text(["-"])
    status_panel(page).filter(has_text="Acting for").click()
    expect(page.locator("#result_list tbody td.field-acting_for")).to_have_text(["Lobby"])

    status_panel(page).filter(has_text="Taking over (0)").click()
    expect(page).to_have_url(re.compile(r"\?duty=taking_over$"))
    expect(listed_names(page)).to_have_count(0)
    expect(page.locator("#changelist-form")).to_contain_text("0 failover servers")


# -- 2. two servers disabled with one action ----------------------------------------


@pytest.mark.parametrize(
    ("url", "role", "message"),
    [
        (FO_URL, "failover", "Disabled 2 server(s)."),
        (RS_URL, "recording", "Disabled 2 server(s): they are no longer probed."),
    ],
    ids=["failover", "recording"],
)
def test_two_ticked_servers_are_disabled_and_the_third_stays_enabled(
    page, make_server, url, role, message
):
    from cms.inventory.models import Server

    north, south, east = (
        make_server(role=role, name=name, status="normal") for name in ("North", "South", "East")
    )
    page.goto(url)
    expect(listed_names(page)).to_have_text(["East", "North", "South"])

    run_action(page, [north.pk, south.pk], "Disable selected servers")

    expect(page.locator(".messagelist li")).to_have_text(message)
    assert set(Server.objects.filter(enabled=False).values_list("name", flat=True)) == {
        "North",
        "South",
    }
    east.refresh_from_db()
    assert east.enabled
    for server in (north, south):
        expect(page.locator(f'.cms-status[data-server="{server.pk}"]')).to_have_text("Disabled")
    expect(page.locator(f'.cms-status[data-server="{east.pk}"]')).to_have_text(
        "Standby" if role == "failover" else "Normal"
    )


# -- 3. manual failover, watched live ----------------------------------------------


def test_a_manual_failover_shows_on_the_recording_list_without_a_reload(
    page, make_fleet, run_worker
):
    from failover.choices import EventState
    from failover.models import FailoverEvent

    fleet = make_fleet(failovers=1)
    lobby, standby = fleet.recording, fleet.failovers[0]
    purge(SESSION_QUEUE)  # nothing left over from another test for the worker to run

    page.goto(RS_URL)
    cell = page.locator(f'.cms-status[data-server="{lobby.pk}"]')
    expect(cell).to_have_text("Normal")
    run_action(page, [lobby.pk], "Manual failover (maintenance)")
    expect(page.locator(".messagelist li")).to_contain_text("failover event #")
    event = FailoverEvent.objects.get()
    expect(page.locator(".messagelist li")).to_have_text(
        f"Lobby: failover event #{event.pk} started."
    )
    assert (event.trigger, event.state) == ("manual", EventState.DETECTED)
    assert event.transitions.get().actor == "root"
    # No worker yet: the step that takes over waits on the broker; the list says so.
    expect(cell).to_have_text("Normal (failing over)")
    page.evaluate("window.cmsMarker = 1")  # gone if the page reloads

    worker = run_worker()  # a real worker takes the queued step and runs the takeover
    expect(cell).to_have_text(f"Normal (failed over to {standby.name})", timeout=WAIT)
    wait_until(
        lambda: FailoverEvent.objects.get(pk=event.pk).state == EventState.ACTIVE,
        timeout=WAIT / 1000,
        message=f"the takeover\n{worker.log()[-3000:]}",
    )
    assert page.evaluate("window.cmsMarker") == 1
    expect(cell).to_have_class("cms-status cms-changed")
    event.refresh_from_db()
    assert event.failover_server == standby
    assert recording_for(fleet.failover_nodes[0]) == event.node_tag
    assert recording_for(fleet.recording_node) is None  # maintenance: Lobby is not recording


# -- 4. stop a restoration ----------------------------------------------------------


def test_stopping_a_restoration_says_what_is_lost_then_removes_the_recordings(page, make_fleet):
    from failover import engine
    from failover.choices import EventState
    from failover.models import FailoverEvent, RestorationJob

    fleet = make_fleet(failovers=1)
    event = fleet.fail_over("service")
    fo_node = fleet.failover_nodes[0]
    wait_until(lambda: len(failover_files(fo_node, event.node_tag)) >= 4, timeout=WAIT / 1000,
               message="recordings made during the failover")  # fmt: skip
    fleet.recording_node.client().set_fault("clear")
    cycles(2)  # Lobby is back: failback is due at once (hold-down 0)
    assert engine.step(event.pk) == EventState.FAILING_BACK
    assert engine.step(event.pk) == EventState.RESTORING
    # The restoration starts, then Lobby goes away before the first file is copied:
    # the job is running, nothing copied yet, waiting to resume. Nothing resumes it
    # here (no worker, no beat), so it is still restoring when the operator acts.
    fleet.recording_node.kill()
    assert engine.advance(event.pk) == EventState.RESTORING
    job = RestorationJob.objects.get(event=event)
    assert (job.state, job.files_done, job.errors) == ("running", 0, 1)
    left = len(failover_files(fo_node, event.node_tag))
    assert left == job.files_total >= 4

    page.goto(f"{EVENTS_URL}{event.pk}/change/")
    expect(page.locator(f'.cms-job[data-job="{job.pk}"] .cms-job-text')).to_contain_text(
        f"Running: 0% — 0/{left} files"
    )
    page.goto(EVENTS_URL)
    row = page.locator("#result_list tbody tr", has_text="Lobby")
    expect(row.locator("td.field-state")).to_have_text("Restoring recordings")
    run_action(page, [event.pk], "Stop restoration")

    expect(page.get_by_role("heading", name="Stop restoration", level=2)).to_be_visible()
    expect(page.locator("#content-main li.warning")).to_have_text(
        [
            f"Event #{event.pk} (Lobby): the recordings and snapshots taken during the "
            "failover that are still on Standby 1 are removed and will not be restored."
        ]
    )
    event.refresh_from_db()
    assert event.state == EventState.RESTORING  # nothing happens before the confirmation
    assert len(failover_files(fo_node, event.node_tag)) == left

    page.get_by_role("button", name="Yes, I'm sure").click()
    expect(page.locator(".messagelist li")).to_have_text(
        f"Event #{event.pk}: stopped; {left} file(s) removed."
    )
    expect(row.locator("td.field-state")).to_have_text("Restoration stopped")
    event = FailoverEvent.objects.get(pk=event.pk)
    assert event.state == EventState.RESTORATION_STOPPED
    assert event.restoration.state == "stopped"
    assert failover_files(fo_node, event.node_tag) == []
    stop = event.transitions.get(
        from_state=EventState.RESTORING, to_state=EventState.RESTORATION_STOPPED
    )
    assert stop.actor == "root"


# -- 5. replace protected server ----------------------------------------------------


@pytest.fixture
def replaceable(make_fleet, start_node, team):
    """Lobby (licensed) has failed over to Standby 1; Spare, a licensed recording server
    of the same team, records on its own in normal status."""
    from failover.choices import EventState

    fleet = make_fleet(failovers=1)
    install_license(fleet.recording, "AAAA-1111-BBBB-2222")
    spare_node = start_node(mode="recording", name="spare", cameras=1)
    spare = register(spare_node, team, "recording", "Spare")
    install_license(spare, "CCCC-3333-DDDD-4444")
    event = fleet.fail_over()  # its probe cycles find Spare normal
    assert event.state == EventState.ACTIVE
    spare.refresh_from_db()
    assert spare.status == "normal"
    return fleet, event, spare, spare_node


def open_replace_dialog(page, event) -> None:
    page.goto(f"{EVENTS_URL}{event.pk}/change/")
    page.get_by_role("link", name="Replace protected server").click()
    expect(page).to_have_url(re.compile(rf"{EVENTS_URL}{event.pk}/replace/$"))


def consequences(page):
    return page.locator("#content-main li.warning")


def test_the_replace_dialog_shows_each_choice_then_replaces_with_the_chosen_one(page, replaceable):
    from cms.inventory.models import License, Server
    from failover.choices import EventState

    fleet, event, spare, spare_node = replaceable
    lobby, standby = fleet.recording, fleet.failovers[0]

    open_replace_dialog(page, event)
    choice = page.locator("#id_replacement")
    expect(choice.locator("option")).to_have_text(
        ["Standby 1 (the acting failover server)", "Spare (recording server, Normal)"]
    )

    choice.select_option(str(standby.pk))
    page.get_by_role("button", name="Show what will happen").click()
    expect(consequences(page)).to_have_text(
        [
            "Lobby is removed from the recording server list.",
            "Failover server Standby 1 becomes a recording server with Lobby's configuration.",
            "Licenses moving: AAAA-1111-BBBB-2222.",
        ]
    )
    expect(page.get_by_role("button", name="OK, replace")).to_be_visible()

    # Another choice needs its own preview: back to the event, open the dialog again.
    page.get_by_role("link", name="Cancel").click()
    page.get_by_role("link", name="Replace protected server").click()
    choice.select_option(str(spare.pk))
    page.get_by_role("button", name="Show what will happen").click()
    expect(consequences(page)).to_have_text(
        [
            "Lobby is removed from the recording server list.",
            "The failover stops; the failover server goes back to standby.",
            "Spare takes Lobby's configuration and is renamed 'Lobby'.",
            "Recordings made during the failover are restored to it.",
            "Licenses moving: AAAA-1111-BBBB-2222.",
            "Licenses overwritten (uninstalled from the replacement): CCCC-3333-DDDD-4444.",
        ]
    )
    expect(choice).to_have_value(str(spare.pk))
    # two previews changed nothing
    event.refresh_from_db()
    assert event.state == EventState.ACTIVE
    assert Server.objects.filter(pk=lobby.pk).exists()
    assert Server.objects.get(pk=spare.pk).name == "Spare"

    page.get_by_role("button", name="OK, replace").click()
    expect(page.locator(".messagelist li")).to_have_text("Spare replaces Lobby.", timeout=WAIT)
    expect(page).to_have_url(re.compile(rf"{EVENTS_URL}{event.pk}/change/$"))

    assert not Server.objects.filter(pk=lobby.pk).exists()
    spare.refresh_from_db()
    assert (spare.name, spare.role) == ("Lobby", "recording")
    standby.refresh_from_db()
    assert standby.role == "failover"
    assert License.objects.get(key="AAAA-1111-BBBB-2222").server == spare
    assert License.objects.get(key="CCCC-3333-DDDD-4444").server is None
    assert {x["key"] for x in spare_node.client().licenses()} == {"AAAA-1111-BBBB-2222"}
    assert recording_for(fleet.failover_nodes[0]) is None  # the failover stopped
    event.refresh_from_db()
    assert event.replacement == spare
    assert event.state == EventState.RESTORING  # what Standby 1 recorded comes to Spare


def test_changing_the_choice_after_a_preview_does_not_replace_unseen(page, replaceable):
    from cms.inventory.models import Server
    from failover.choices import EventState

    fleet, event, spare, _ = replaceable
    open_replace_dialog(page, event)
    page.locator("#id_replacement").select_option(str(fleet.failovers[0].pk))
    page.get_by_role("button", name="Show what will happen").click()
    expect(consequences(page).first).to_be_visible()

    page.locator("#id_replacement").select_option(str(spare.pk))
    expect(consequences(page)).to_have_count(0)  # the preview of the other choice is gone
    page.get_by_role("button", name="Show what will happen").click()
    replaced_message = page.get_by_text("Spare replaces Lobby.")
    spare_preview = consequences(page).filter(has_text="is renamed 'Lobby'")
    expect(replaced_message.or_(spare_preview)).to_be_visible(timeout=WAIT)
    event.refresh_from_db()
    replaced = event.state != EventState.ACTIVE
    assert not replaced, "the server chosen after the preview replaced Lobby without a preview"
    assert Server.objects.get(pk=spare.pk).name == "Spare"
