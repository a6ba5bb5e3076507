"""The CMS and a node compare versions: same major.minor works, an older patch needs an
update, another major.minor does not work; and what the LAN search shows for each."""

from __future__ import annotations

import pytest

from cms.inventory.found import FoundStatus, verdict
from cms.nodes.versions import Compatibility, cms_version, compatibility


@pytest.mark.parametrize(
    ("node", "cms", "expected"),
    [
        ("1.4.2", "1.4.2", Compatibility.COMPATIBLE),
        ("1.4.3", "1.4.2", Compatibility.COMPATIBLE),  # a newer patch is fine
        ("1.4.1", "1.4.2", Compatibility.UPDATE_REQUIRED),
        ("1.4", "1.4.2", Compatibility.UPDATE_REQUIRED),  # no patch: patch 0
        ("1.3.9", "1.4.2", Compatibility.INCOMPATIBLE),
        ("1.5.0", "1.4.2", Compatibility.INCOMPATIBLE),
        ("2.4.2", "1.4.2", Compatibility.INCOMPATIBLE),
        ("", "1.4.2", Compatibility.INCOMPATIBLE),
        ("banana", "1.4.2", Compatibility.INCOMPATIBLE),
    ],
)
def test_it_compares_major_minor_and_patch(node, cms, expected):
    assert compatibility(node, cms) == expected


def test_the_agent_shipped_with_this_cms_is_compatible():
    from node import __version__ as node_version

    assert compatibility(node_version) == Compatibility.COMPATIBLE
    assert cms_version() != "0.0.0"


def found(**fields):
    return {"serial": "S1", "version": cms_version(), "cms_enabled": True} | fields


@pytest.mark.parametrize(
    ("fields", "added", "status"),
    [
        ({}, {}, FoundStatus.AVAILABLE),
        ({}, {"S1": "Standby-2"}, FoundStatus.ADDED),
        ({"locked": True, "paired_elsewhere": True}, {}, FoundStatus.LOCKED),
        ({"paired_elsewhere": True}, {}, FoundStatus.PAIRED_ELSEWHERE),
        ({"locked": True}, {}, FoundStatus.AVAILABLE),  # locked by this host, unmanaged here
        ({"version": "0.0.1"}, {}, FoundStatus.INCOMPATIBLE),
        ({"paired_elsewhere": None, "locked": None}, {}, FoundStatus.AVAILABLE),  # older node
    ],
)
def test_each_search_result_has_one_status(fields, added, status):
    assert verdict(found(**fields), added).status == status


def test_an_added_server_says_its_name_only_to_who_may_see_it():
    assert verdict(found(), {"S1": "Standby-2"}).label == "Added (Standby-2)"
    assert verdict(found(), {"S1": None}).label == "Added (in another team)"


def test_an_older_patch_needs_an_update(monkeypatch):
    import cms.inventory.found
    import cms.nodes.versions

    for module in (cms.nodes.versions, cms.inventory.found):
        monkeypatch.setattr(module, "cms_version", lambda: "3.2.5")
    v = verdict(found(version="3.2.4"), {})
    assert v.status == FoundStatus.UPDATE_REQUIRED
    assert v.detail == "Update it to 3.2.5 or later (it runs 3.2.4)."


def test_an_older_nodes_search_answer_still_parses_and_says_nothing_of_pairing():
    from protocol.messages import DiscoveryAnswer

    older = {"type": "cms-node-here", "v": 1, "nonce": "n", "name": "a", "model": "m",
             "serial": "S1", "version": "0.1.0", "port": 5000, "https": False,
             "cms_mode": "failover", "cms_enabled": True}  # fmt: skip
    answer = DiscoveryAnswer.model_validate(older)
    assert (answer.paired_elsewhere, answer.locked) == (None, None)
    assert verdict(answer.to_json(), {}).status == FoundStatus.AVAILABLE
