"""Admin list pages cost a constant number of queries, whatever the fleet size."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from cms.inventory.models import License, Server
from failover.models import FailoverEvent, Protection, RestorationJob

LISTS = [
    "/admin/inventory/recordingserver/",
    "/admin/inventory/failoverserver/",
    "/admin/inventory/license/",
    "/admin/failover/failoverevent/",
]


def grow(team, n: int) -> None:
    start = Server.objects.count()
    for i in range(start, start + n):
        rs = Server.objects.create(team=team, role="recording", name=f"R{i}", host="192.0.2.1")
        fs = Server.objects.create(team=team, role="failover", name=f"F{i}", host="192.0.2.2")
        Protection.objects.create(recording_server=rs, failover_server=fs)
        License.objects.create(key=f"KEYS-{i:04d}-AAAA", team=team, server=rs)
        event = FailoverEvent.objects.create(
            team=team, recording_server=rs, recording_server_name=rs.name,
            node_tag=f"rs{rs.pk}", trigger="manual", state="completed",
        )  # fmt: skip
        event.transitions.create(to_state="completed", reason="test")
        RestorationJob.objects.create(event=event, target_server=rs)


@pytest.mark.parametrize("url", LISTS)
def test_a_list_page_costs_the_same_queries_for_5_and_50_rows(admin_client, team, url):
    grow(team, 5)
    with CaptureQueriesContext(connection) as small:
        assert admin_client.get(url).status_code == 200
    grow(team, 45)
    with CaptureQueriesContext(connection) as large:
        assert admin_client.get(url).status_code == 200
    assert len(large) == len(small), [q["sql"] for q in large.captured_queries]


API_LISTS = [
    "/api/v1/recording-servers/",
    "/api/v1/failover-servers/",
    "/api/v1/licenses/",
    "/api/v1/events/",
    "/api/v1/protections/",
    "/api/v1/restorations/",
]


@pytest.mark.parametrize("url", API_LISTS)
def test_an_api_list_costs_the_same_queries_for_5_and_50_rows(admin_user, team, url):
    from rest_framework.test import APIClient

    client = APIClient()
    client.force_authenticate(admin_user)
    grow(team, 5)
    with CaptureQueriesContext(connection) as small:
        assert client.get(url).status_code == 200
    grow(team, 45)
    with CaptureQueriesContext(connection) as large:
        assert client.get(url).status_code == 200
    assert len(large) == len(small), [q["sql"] for q in large.captured_queries]
