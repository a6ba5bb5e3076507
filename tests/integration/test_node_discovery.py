"""LAN discovery by UDP broadcast, on loopback, with two agents sharing the port."""

from __future__ import annotations

import socket

import pytest

from cms.nodes.discovery import search

pytestmark = pytest.mark.integration


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_it_finds_two_agents_with_their_mode_and_cms_state(start_node):
    port = free_udp_port()
    rec = start_node(mode="recording", name="rec-a", model="RS-1", discovery_port=port)
    fo = start_node(mode="standalone", name="spare-b", model="FS-2", discovery_port=port)
    found = {}
    # UDP may drop a datagram: a search is cheap, so search again rather than flake.
    for _ in range(5):
        found.update(
            {a["name"]: a for a in search(timeout=1.0, port=port, address="127.255.255.255")}
        )
        if {"rec-a", "spare-b"} <= found.keys():
            break
    assert found["rec-a"]["port"] == rec.port and found["spare-b"]["port"] == fo.port
    assert found["rec-a"]["address"] == "127.0.0.1"
    assert found["rec-a"]["cms_mode"] == "recording" and found["rec-a"]["cms_enabled"] is True
    assert found["spare-b"]["cms_mode"] == "standalone"
    assert found["spare-b"]["cms_enabled"] is False
    assert found["spare-b"]["model"] == "FS-2" and found["spare-b"]["https"] is False
    assert found["rec-a"]["serial"] != found["spare-b"]["serial"]


def test_it_ignores_garbage_and_returns_nothing_when_nobody_answers(start_node):
    port = free_udp_port()
    start_node(discovery_port=port)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        s.sendto(b"\xff not json", ("127.255.255.255", port))
    assert search(timeout=0.3, port=free_udp_port(), address="127.255.255.255") == []
    assert len(search(timeout=1.0, port=port, address="127.255.255.255")) == 1


def test_the_search_command_lists_what_answers(start_node):
    from io import StringIO

    from django.core.management import call_command

    port = free_udp_port()
    start_node(mode="failover", name="standby-c", model="FS-3", discovery_port=port)
    out = ""
    for _ in range(5):  # UDP may drop a datagram
        buffer = StringIO()
        call_command("search_servers", address="127.255.255.255", port=port, timeout=1.0,
                     stdout=buffer)  # fmt: skip
        out = buffer.getvalue()
        if "standby-c" in out:
            break
    assert "standby-c\tFS-3\t127.0.0.1:" in out
    assert "\tfailover\tCMS enabled" in out
    assert out.rstrip().endswith("1 server(s) found.")
