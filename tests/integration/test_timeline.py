"""An event's timeline picture: phases to scale with their durations."""

import datetime as dt

from django.utils import timezone

from failover.models import FailoverEvent
from failover.timeline import phases, picture


def event_at(team, **offsets):
    t0 = timezone.now() - dt.timedelta(hours=1)
    fields = {name: t0 + dt.timedelta(seconds=s) for name, s in offsets.items()}
    event = FailoverEvent.objects.create(team=team, recording_server_name="Lobby",
                                         node_tag="rs1", trigger="disconnected",
                                         state="completed")  # fmt: skip
    FailoverEvent.objects.filter(pk=event.pk).update(detected_at=t0, **fields)
    event.refresh_from_db()
    return event


def test_a_completed_event_shows_every_phase_to_scale(team):
    event = event_at(team, taken_over_at=3, recovered_at=603, failed_back_at=663, ended_at=723)
    assert [(p.label, p.seconds) for p in phases(event)] == [
        ("Taking over", 3.0),
        ("Failover server records", 600.0),
        ("Recovered, waiting for failback", 60.0),
        ("Restoring recordings", 60.0),
    ]
    html = picture(event)
    assert "Time to take over: 3.0 s" in html and "10.0 min" in html
    assert "Ending: Completed" in html


def test_an_event_that_never_took_over_has_one_open_phase(team):
    event = event_at(team)
    FailoverEvent.objects.filter(pk=event.pk).update(state="no_failover_server")
    event.refresh_from_db()
    (only,) = phases(event)
    assert only.label == "Taking over" and only.seconds >= 3599
    assert "in progress" in picture(event)


def test_the_event_page_shows_the_picture(admin_client, team):
    event = event_at(team, taken_over_at=3, recovered_at=603, failed_back_at=663, ended_at=723)
    page = admin_client.get(f"/admin/failover/failoverevent/{event.pk}/change/").content.decode()
    assert 'aria-label="Event timeline"' in page and "Failover server records" in page
