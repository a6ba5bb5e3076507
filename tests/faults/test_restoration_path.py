"""Which way restored footage travels, against real agents.

Invariants: on the direct path no recording crosses the CMS (a CMS download of a file
would meet a refusal, and none does); when the recording server cannot reach the
failover server, the CMS relays and the event says so; either way every file is
restored with its sha256 and removed from the failover server.
"""

from __future__ import annotations

import pytest

from cms.inventory.models import Server
from failover import engine
from failover.choices import EventState
from failover.restoration import target_path
from tests.faults.helpers import cycles, failover_files, own_files
from tests.faults.invariants import timeline
from tests.faults.test_restoration_faults import failed_over_with_recordings
from tests.fixtures.faulty_network import answer_error

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.parametrize("restoration_path", ["direct"], indirect=True),
]


def cut_off(*prefixes: str):
    """The link closes on requests whose line starts so: nothing answers them."""
    wanted = tuple(p.encode() for p in prefixes)
    return lambda first_bytes: b"" if first_bytes.startswith(wanted) else None


def behind_a_proxy(fleet, fo_node, faulty_proxy):
    proxy = faulty_proxy(fo_node)
    Server.objects.filter(pk=fleet.failovers[0].pk).update(host=proxy.host, port=proxy.port)
    return proxy


def restore(fleet, event, fo_node) -> dict[str, str]:
    made = {f["path"]: f["sha256"] for f in failover_files(fo_node, event.node_tag)}
    fleet.recording_node.client().set_fault("clear")
    cycles(2)
    state = engine.advance(event.pk)
    event.refresh_from_db()
    assert state == EventState.COMPLETED, timeline(event)
    assert failover_files(fo_node, event.node_tag) == []
    restored = own_files(fleet.recording_node)
    for path, sha in made.items():
        assert restored[target_path(path, event.node_tag)]["sha256"] == sha, path
    return made


def test_no_recording_crosses_the_cms_on_the_direct_path(
    restoration_path, make_fleet, faulty_proxy
):
    fleet, event, fo_node = failed_over_with_recordings(make_fleet)
    proxy = behind_a_proxy(fleet, fo_node, faulty_proxy)
    # Any file the CMS itself downloaded would meet this.
    proxy.refuse = answer_error(503, "unavailable", "GET /api/v1/files/")

    made = restore(fleet, event, fo_node)
    assert proxy.refused == 0
    job = event.restoration
    assert job.transfer == "direct" and job.files_done == job.files_total >= len(made) >= 4
    said = f"Restoration path: {fleet.recording.name} copies the files from Standby 1 directly."
    assert event.transitions.filter(reason=said).exists(), timeline(event)


def test_servers_that_cannot_reach_each_other_restore_through_the_cms(
    restoration_path, make_fleet, faulty_proxy
):
    fleet, event, fo_node = failed_over_with_recordings(make_fleet)
    proxy = behind_a_proxy(fleet, fo_node, faulty_proxy)
    # The recording server's link to the failover server is down; the CMS's is up.
    proxy.refuse = cut_off("POST /api/v1/transfer/", "GET /api/v1/transfer/")

    made = restore(fleet, event, fo_node)
    assert proxy.refused >= 1
    job = event.restoration
    assert job.transfer == "relayed" and job.files_done == job.files_total >= len(made)
    (said,) = event.transitions.filter(reason__startswith="Restoration path:")
    assert "cannot reach each other" in said.reason and "the CMS relays" in said.reason
