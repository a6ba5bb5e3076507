"""Every admin page, walked in Chromium as an operator would: nothing cut off at 1366 px,
the event's timeline in full words, no serious or critical axe-core violation, never a
window.prompt, and the main actions from the keyboard alone.

One story for the walk (tests/browser/screenshots.py's, as in the README's pictures):
real agents, a failover that failed back and restored (a full timeline), a failover in
progress (the replace dialog) and a server not probed yet.
"""

from __future__ import annotations

import json
import re

import pytest
from playwright.sync_api import expect

from tests.browser.screenshots import LARGE, SMALL, story

pytestmark = pytest.mark.django_db(transaction=True)

RS_URL = "/admin/inventory/recordingserver/"
FO_URL = "/admin/inventory/failoverserver/"
EVENTS_URL = "/admin/failover/failoverevent/"

# What sticks out of the viewport, and what is cut off inside a box that hides or
# scrolls its overflow (a table column pushed out of sight, a label cut short).
OVERFLOW = """() => {
  const out = [], width = document.documentElement.clientWidth;
  const skip = '.visually-hidden, dialog:not([open]), [hidden], ' +
               'details:not([open]) > :not(summary)';
  const name = (el) => el.tagName.toLowerCase() + (el.id ? '#' + el.id : '') +
    (typeof el.className === 'string' && el.className ? '.' + el.className.trim() : '');
  if (document.documentElement.scrollWidth > width + 1)
    out.push(`page ${document.documentElement.scrollWidth} > ${width}`);
  for (const el of document.body.querySelectorAll('*')) {
    const style = getComputedStyle(el);
    if (style.display === 'none' || style.visibility === 'hidden' || el.closest(skip)) continue;
    const rect = el.getBoundingClientRect();
    if (rect.width === 0 || rect.height === 0) continue;
    if (rect.right > width + 1) out.push(`${name(el)} ends at ${rect.right} > ${width}`);
    if (['INPUT', 'SELECT', 'TEXTAREA', 'OPTION'].includes(el.tagName)) continue;
    if (style.overflowX !== 'visible' && el.scrollWidth > el.clientWidth + 1)
      out.push(`${name(el)} hides ${el.scrollWidth - el.clientWidth} px`);
  }
  return out;
}"""


def pages(done, active, lobby, standby, garage=None, drill=None) -> dict[str, str]:
    return {
        "dashboard": "/admin/",
        "recording servers": RS_URL,
        "failover servers": FO_URL,
        "add recording server": f"{RS_URL}add/",
        "add failover server": f"{FO_URL}add/",
        "recording server": f"{RS_URL}{lobby}/change/",
        "failover server": f"{FO_URL}{standby}/change/",
        "events": EVENTS_URL,
        "event with a timeline": f"{EVENTS_URL}{done}/change/",
        "event in progress": f"{EVENTS_URL}{active}/change/",
        "replace dialog": f"{EVENTS_URL}{active}/replace/",
        "settings": "/admin/failover/failoversettings/",
        "licenses": "/admin/inventory/license/",
        "teams": "/admin/inventory/team/",
        "add alert channel": "/admin/alerts/channel/add/",
        "add batch": f"{RS_URL}batch/",
        "coverage during a failover": f"{RS_URL}{lobby}/coverage/?event={active}",
        **({"coverage after restoration": f"{RS_URL}{garage}/coverage/?event={done}"}
           if garage else {}),
        **({"drills": "/admin/failover/drill/",
            "drill report": f"/admin/failover/drill/{drill}/change/"} if drill else {}),
        "capacity planner": f"{FO_URL}capacity/",
    }  # fmt: skip


@pytest.fixture
def walk(page, make_fleet, start_node, team, admin_user):
    """The story's pages; a window.prompt anywhere fails the test that walks them."""
    prompts: list[str] = []

    def on_dialog(dialog) -> None:
        if dialog.type == "prompt":
            prompts.append(f"{page.url}: {dialog.message}")
        dialog.dismiss()

    page.on("dialog", on_dialog)
    done, active = story(make_fleet, start_node, team, admin_user)
    from failover.models import Drill

    urls = pages(done.pk, active.pk, active.recording_server_id, active.failover_server_id,
                 done.recording_server_id, Drill.objects.get().pk)  # fmt: skip
    yield page, urls, done
    assert prompts == [], f"window.prompt was used: {prompts}"


def tab_to(page, label: str, limit: int = 60) -> None:
    """Press Tab until the focused element says `label` (its text or its value)."""
    for _ in range(limit):
        page.keyboard.press("Tab")
        focused = page.evaluate(
            "(document.activeElement.textContent || document.activeElement.value || '').trim()"
        )
        if focused == label:
            return
    raise AssertionError(f"{label!r} was not reached with the Tab key")


def visit(page, url: str) -> None:
    page.goto(url)
    page.wait_for_load_state("networkidle")


def test_every_page_fits_1366_px_and_passes_axe(walk):
    from axe_playwright_python.sync_playwright import Axe

    page, urls, _ = walk
    axe = Axe()
    problems = {}
    for name, url in urls.items():
        page.set_viewport_size(LARGE)
        visit(page, url)
        assert "Failover CMS" in page.title(), name
        overflow = [f"at 1920 px: {line}" for line in page.evaluate(OVERFLOW)]
        page.set_viewport_size(SMALL)
        overflow += page.evaluate(OVERFLOW)
        violations = [
            f"{v['id']} ({v['impact']}): {[n['target'] for n in v['nodes']][:3]}"
            for v in axe.run(page).response["violations"]
            if v["impact"] in ("serious", "critical")
        ]
        if overflow or violations:
            problems[name] = {"overflow": overflow[:5], "axe": violations}
    assert problems == {}, json.dumps(problems, indent=1)


def test_the_event_page_shows_every_phase_and_change_in_full_words(walk):
    page, urls, done = walk
    page.set_viewport_size(SMALL)
    visit(page, urls["event with a timeline"])
    expect(page.locator("#content h1")).to_have_text(f"Failover event #{done.pk}: Garage")
    expect(page.locator("#content h2", has_text="Garage")).to_have_count(0)  # no repeat
    crumbs = page.locator(".breadcrumbs a")
    expect(crumbs.filter(has_text="Failover events")).to_have_attribute("href", EVENTS_URL)

    labels = page.locator("ol.cms-phases .cms-phase-label")
    expect(labels).to_have_text(
        ["Taking over", "Failover server records", "Recovered, waiting for failback",
         "Restoring recordings"]
    )  # fmt: skip
    for i in range(labels.count()):
        full = labels.nth(i).evaluate("el => [el.scrollWidth, el.clientWidth]")
        assert full[0] <= full[1], f"{labels.nth(i).inner_text()} is cut: {full}"

    history = page.locator("#cms-history tbody tr")
    expect(history).to_have_count(8)  # seven changes and the restoration path's note
    expect(history.filter(has_text="Restoration path")).to_have_count(1)
    expect(history.first).to_contain_text("Detected")
    expect(history.nth(2)).to_contain_text("Failover active after Taking over")
    text = page.locator("#content").inner_text()
    assert "->" not in text and " by system" not in text
    time = history.first.locator("time")
    expect(time).to_have_text(re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$"))
    expect(time).to_have_attribute("title", re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}"))
    expect(page.locator("fieldset", has_text="Detected").locator("time").first).to_have_attribute(
        "title", re.compile(r"T\d\d:\d\d:\d\d\.\d{3}")
    )

    visit(page, urls["event in progress"])  # nothing restored: no empty header
    expect(page.get_by_role("heading", name="Restoration jobs")).to_have_count(0)

    # From the keyboard alone: open Replace protected server and preview its consequences.
    tab_to(page, "Replace protected server")
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(r"/replace/$"))
    tab_to(page, "Show what will happen")
    page.keyboard.press("Enter")
    expect(page.locator("#cms-replace-plan li").first).to_be_visible()
    expect(page.get_by_role("button", name="OK, replace")).to_be_visible()


def test_the_dashboard_counts_failover_servers_by_duty_and_says_how_long_ago(walk):
    page, urls, _ = walk
    visit(page, urls["dashboard"])
    fleet = page.locator("#cms-dashboard section", has_text="Fleet")
    rows = fleet.locator("tbody tr")
    expect(rows).to_have_text([
        re.compile(r"Recording servers\s*Not probed yet\s*1"),
        re.compile(r"Normal\s*2"),  # Garage is back, Warehouse never left
        re.compile(r"Disconnected\s*1"),
        re.compile(r"Failover servers\s*Standby\s*1"),
        re.compile(r"Acting for a recording server\s*1"),
    ])  # fmt: skip
    count = fleet.locator("thead th", has_text="Count")
    box = count.bounding_box()
    assert box["width"] > box["height"], "the Count header is printed vertically"
    opened = page.locator("#cms-dashboard section", has_text="Open failover events")
    expect(opened.locator("tbody td").last).to_have_text(re.compile(r"^(just now|\d+ s ago)$"))
    latest = page.locator("#cms-dashboard section", has_text="Latest failovers")
    bar, rows = latest.locator("h2").bounding_box(), latest.locator("table").bounding_box()
    assert rows["x"] + rows["width"] <= bar["x"] + bar["width"] + 1, "rows wider than their bar"
    # a server not probed yet reads the same in the list as in the status panel
    page.get_by_role("link", name="Not probed yet").click()
    expect(page.locator("#result_list tbody .cms-status")).to_have_text(["Not probed yet"])
    expect(page.locator("#changelist-filter li.selected").first).to_have_text("Not probed yet")


def test_the_index_groups_the_product_first_and_the_system_for_superusers(
    page, client, django_user_model
):
    from django.contrib.auth.models import Permission

    page.goto("/admin/")
    expect(page).to_have_title(re.compile(r"Failover CMS$"))
    expect(page.locator("#site-name")).to_have_text("Failover CMS")
    sections = page.locator("#content-main .module caption")
    expect(sections).to_have_text(["Failover CMS", "Accounts and audit trail", "System"])
    expect(page.locator("#content-main .module").first.locator("th a")).to_have_text(
        ["Recording servers", "Failover servers", "Failover events", "Failover settings",
         "Licenses", "Teams", "Alert channels", "Alerts"]
    )  # fmt: skip
    expect(page.locator(".module", has_text="System")).to_contain_text("Auth tokens")
    # The admin's dark theme still applies (its "auto" setting follows the system).
    background = "getComputedStyle(document.body).backgroundColor"
    light = page.evaluate(background)
    page.emulate_media(color_scheme="dark")
    page.reload()
    assert page.evaluate(background) != light
    assert page.locator("#cms-nav").is_visible()
    page.emulate_media(color_scheme="light")

    assert page.request.get("/favicon.ico").status == 200
    icon = page.locator('link[rel="icon"]').get_attribute("href")
    assert page.request.get(icon).headers["content-type"].startswith("image/svg")

    operator = django_user_model.objects.create_user("op", password="pw-op-12345", is_staff=True)
    operator.user_permissions.add(*Permission.objects.filter(
        codename__in=["view_recordingserver", "view_failoverevent", "view_authtoken"]))  # fmt: skip
    client.force_login(operator)
    text = client.get("/admin/").content.decode()
    assert "Recording servers" in text and "Failover events" in text
    assert "System" not in text and "Auth tokens" not in text


def test_add_server_defaults_to_the_users_team_with_the_checks_by_the_address(
    page, team, admin_user
):
    from cms.inventory.models import TeamMembership

    TeamMembership.objects.create(team=team, user=admin_user)
    page.goto(f"{RS_URL}add/")
    expect(page.locator("#id_team")).to_have_value(str(team.pk))
    connection = page.locator("fieldset", has=page.locator("#id_host"))
    tools = page.locator("#cms-connect")
    # right after the Connection fields, before anything else of the form
    assert connection.evaluate("(el) => el.nextElementSibling.id") == "cms-connect"
    expect(page.get_by_role("heading", name="Health")).to_have_count(0)
    search = tools.get_by_role("button", name="Search the LAN for servers")
    expect(search.locator("svg")).to_have_count(1)
    assert re.fullmatch(r"\s*Search", search.inner_text())  # no emoji, only the word


def test_the_main_actions_work_from_the_keyboard(page, make_server):
    """Tab to the header's links, a list's row checkbox, the action menu and Go."""
    from cms.inventory.models import Server

    north = make_server(role="recording", name="North", status="normal")
    page.goto("/admin/")
    tab_to(page, "Recording servers", limit=10)  # the header's link, before the content
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(f"{RS_URL}$"))

    box = page.locator(f'input[name="_selected_action"][value="{north.pk}"]')
    box.focus()
    page.keyboard.press("Space")
    expect(box).to_be_checked()
    menu = page.locator('select[name="action"]')
    menu.focus()
    page.keyboard.type("Disable selected")  # the menu's type-ahead
    expect(menu).to_have_value("disable_servers")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent.trim()") == "Go"
    page.keyboard.press("Enter")
    expect(page.locator(".messagelist li")).to_contain_text("Disabled 1 server")
    north.refresh_from_db()
    assert not north.enabled
    assert Server.objects.filter(enabled=True).count() == 0


def test_installed_licenses_come_before_save_and_their_buttons_still_post(walk):
    """The panel sits inside the server's form (before Save and Delete); its buttons
    belong to forms of their own, so they post to the license views, not to Save."""
    from cms.inventory.models import License, Server

    page, _, done = walk
    garage = Server.objects.get(pk=done.recording_server_id)
    (installed,) = License.objects.filter(server=garage)
    page.goto(f"{RS_URL}{garage.pk}/change/")
    before_save = page.evaluate(
        """() => !!(document.getElementById('cms-licenses').compareDocumentPosition(
                 document.querySelector('input[name="_save"]'))
                 & Node.DOCUMENT_POSITION_FOLLOWING)"""
    )
    assert before_save, "the licenses come after the Save button"

    page.get_by_role("button", name=f"Remove license {installed.key}").click()
    expect(page.locator(".messagelist li")).to_have_text(
        f"License {installed.key} removed from Garage; it can be installed again."
    )
    expect(page.locator("#cms-licenses tbody")).to_contain_text("No license is installed")
    page.select_option("#cms-license-existing", str(installed.pk))
    page.keyboard.press("Tab")  # then Add license, from the keyboard
    page.locator("#cms-license-key").press("Enter")
    expect(page.locator(".messagelist li")).to_have_text(
        f"License {installed.key} installed on Garage."
    )
    installed.refresh_from_db()
    assert installed.server_id == garage.pk


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_add_batch_results_are_readable_in_both_themes(page, team, scheme):
    """A row's result ("Added as ...") passes axe's colour-contrast rule (it was light
    green on white). The row is drawn as Add Batch draws one, without a LAN search."""
    from axe_playwright_python.sync_playwright import Axe

    page.emulate_media(color_scheme=scheme)
    page.goto(f"{FO_URL}batch/")
    page.evaluate(
        """() => {
          const table = document.getElementById('cms-batch-results');
          table.hidden = false;
          const row = table.tBodies[0].insertRow();
          for (const text of ['', 'fs-east', 'FS-7', '127.0.0.1:5000', 'failover', 'set',
                              'Standby-1']) row.insertCell().textContent = text;
          const result = row.insertCell();
          result.className = 'cms-batch-result cms-row-ok';
          result.textContent = 'Added as Standby-1';
          row.insertCell();
        }"""
    )
    report = Axe().run(page, context="#cms-batch-results",
                       options={"runOnly": ["color-contrast"]})  # fmt: skip
    assert report.response["violations"] == []
