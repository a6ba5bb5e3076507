"""The coverage page of a recording server: a timeline per camera, drawn on the server
as SVG (no script), of who recorded it when and where nothing was recorded."""

from __future__ import annotations

import datetime as dt
from typing import Any
from urllib.parse import urlencode

from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from . import coverage
from .models import FailoverEvent
from .timeline import _duration, moment

# (label, colour) per kind of stretch; the same colours in the legend and the bars.
KINDS = {
    coverage.OWN: ("Recorded by the recording server", "#2b7bb9"),
    coverage.FAILOVER: ("Recorded by a failover server", "#d9822b"),
    coverage.RESTORED: ("Restored to the recording server", "#8a5cb8"),
    "gap": ("Recorded nowhere (gap)", "#c62828"),
}
WIDTH, HEIGHT = 1000, 22


def coverage_view(model_admin: Any, request: HttpRequest, server_id: int) -> HttpResponse:
    server = get_object_or_404(model_admin.get_queryset(request), pk=server_id)
    event = _event(request, server)
    error, found = "", None
    try:
        if event is not None and not request.GET.get("since"):
            since, until = coverage.event_period(event)
        else:
            since, until = coverage.period(request.GET.get("since"), request.GET.get("until"))
        found = coverage.coverage(server, since, until, camera=request.GET.get("camera") or None)
    except coverage.BadPeriod as exc:
        error = str(exc)
    context = {
        **model_admin.admin_site.each_context(request),
        "title": f"Coverage of {server.name}'s cameras",
        "server": server,
        "event": event,
        "error": error,
        "found": found,
        "since": request.GET.get("since", ""),
        "until": request.GET.get("until", ""),
        "camera": request.GET.get("camera", ""),
        "legend": [(label, colour) for label, colour in KINDS.values()],
    }
    if found is not None:
        query = {"since": coverage.iso(found.since), "until": coverage.iso(found.until)}
        if request.GET.get("camera"):
            query["camera"] = request.GET["camera"]
        context.update(
            since=coverage.iso(found.since),
            until=coverage.iso(found.until),
            rows=[_row(cam, found) for cam in found.cameras],
            period_text=format_html("{} to {}", moment(found.since), moment(found.until)),
            csv_url=reverse("recording-server-coverage-csv", args=[server.pk])
            + "?"
            + urlencode(query),
            next_url=(
                "?" + urlencode({**query, "since": coverage.iso(found.next), "until": ""})
                if found.next
                else ""
            ),
        )
    return TemplateResponse(request, "admin/failover/coverage.html", context)


def _event(request: HttpRequest, server: Any) -> FailoverEvent | None:
    pk = request.GET.get("event", "")
    if not pk.isdigit():
        return None
    return FailoverEvent.objects.filter(pk=int(pk), recording_server=server).first()


def _row(cam: coverage.CameraCoverage, found: coverage.Coverage) -> dict[str, Any]:
    stretches = [{**s, "kind": s["source"]} for s in cam.spans] + [
        {**g, "kind": "gap", "server": ""} for g in cam.gaps
    ]
    stretches.sort(key=lambda s: s["start"])
    for s in stretches:
        s["label"] = KINDS[s["kind"]][0]
        s["from"] = moment(_time(s["start"]))
        s["to"] = moment(_time(s["end"]))
        s["length"] = _duration(s["seconds"]) + (" (so far)" if s.get("ongoing") else "")
    # A gap that runs until now is the file being recorded, not (yet) footage lost.
    lost = [g for g in cam.gaps if not g.get("ongoing")]
    summary = (
        f"{cam.camera}: {len(lost)} gap{'s' if len(lost) != 1 else ''}, "
        f"{_duration(sum(g['seconds'] for g in lost))} recorded nowhere"
        if lost
        else f"{cam.camera}: recorded throughout"
    )
    if not found.complete:
        summary += " (as far as the servers that answered show)"
    return {
        "camera": cam.camera,
        "summary": summary,
        "picture": _picture(cam, found, summary),
        "stretches": stretches,
    }


def _picture(cam: coverage.CameraCoverage, found: coverage.Coverage, summary: str) -> SafeString:
    """One bar to scale across the period: spans in their source's colour (the
    recording server's above, failover servers' below when both recorded at once), gaps
    in red; each with its tooltip."""
    total = (found.until - found.since).total_seconds() or 1.0

    def rect(item: dict[str, Any], kind: str, y: int, height: int) -> tuple:
        start = (_time(item["start"]) - found.since).total_seconds()
        x = WIDTH * start / total
        width = max(WIDTH * item["seconds"] / total, 1.5)
        tip = f"{KINDS[kind][0]}{' (' + item['server'] + ')' if item.get('server') else ''}: " + (
            f"{item['start']} to {item['end']}, {_duration(item['seconds'])}"
        )
        return (round(x, 2), y, round(width, 2), height, KINDS[kind][1], tip)

    half = HEIGHT // 2
    rects = [
        rect(s, s["source"], 0 if s["source"] != coverage.FAILOVER else half, half)
        for s in cam.spans
    ] + [rect(g, "gap", 0, HEIGHT) for g in cam.gaps]
    body = format_html_join(
        "",
        '<rect x="{}" y="{}" width="{}" height="{}" fill="{}"><title>{}</title></rect>',
        rects,
    )
    return format_html(
        '<svg class="cms-coverage-bar" viewBox="0 0 {} {}" preserveAspectRatio="none" '
        'role="img" aria-label="{}"><rect x="0" y="0" width="{}" height="{}" fill="#eeeeee">'
        "</rect>{}</svg>",
        WIDTH, HEIGHT, summary, WIDTH, HEIGHT, body,
    )  # fmt: skip


def _time(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
