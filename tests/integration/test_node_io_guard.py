"""The guard against node I/O inside a transaction is exact: it counts the code's own
transactions, never the atomic blocks pytest-django wraps a test in."""

from __future__ import annotations

import socket

import pytest
from django.db import connection, transaction

from cms.nodes.client import NodeClient
from cms.nodes.errors import NodeUnreachable
from tests.fixtures.node_io import NodeIoInTransaction, open_transactions


@pytest.fixture
def closed_port() -> int:
    """A loopback port nobody listens on: a real call fails fast, after the guard."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def call_a_node(port: int) -> None:
    NodeClient("127.0.0.1", port, retries=0, timeout=(1.0, 1.0)).info()


def refused(guard, port: int) -> str:
    with pytest.raises(NodeIoInTransaction) as caught:
        call_a_node(port)
    assert guard.violations, "a refused call is remembered for the teardown check"
    guard.violations.clear()  # this test caused it on purpose
    return str(caught.value)


def test_it_lets_a_node_call_through_inside_the_tests_own_atomic_blocks(db, closed_port):
    assert connection.in_atomic_block  # pytest-django's wrapping
    assert open_transactions() == []
    with pytest.raises(NodeUnreachable):
        call_a_node(closed_port)


def test_it_refuses_a_node_call_inside_an_atomic_block(db, closed_port, node_io_guard):
    with transaction.atomic():
        message = refused(node_io_guard, closed_port)
    assert "GET http://127.0.0.1" in message and "transaction is open on default" in message


def test_it_refuses_a_node_call_inside_a_select_for_update_block(
    db, closed_port, node_io_guard, team
):
    from cms.inventory.models import Team

    with transaction.atomic():
        Team.objects.select_for_update().get(pk=team.pk)
        refused(node_io_guard, closed_port)


@pytest.mark.django_db(transaction=True)
def test_without_a_test_transaction_only_the_codes_own_count(closed_port, node_io_guard):
    assert not connection.in_atomic_block
    with pytest.raises(NodeUnreachable):
        call_a_node(closed_port)
    with transaction.atomic():
        refused(node_io_guard, closed_port)
    ran = []

    def after_commit() -> None:
        with pytest.raises(NodeUnreachable):
            call_a_node(closed_port)
        ran.append(True)

    with transaction.atomic():
        transaction.on_commit(after_commit)
        assert not ran
    assert ran == [True]


@pytest.mark.django_db(transaction=True)
def test_it_refuses_a_transaction_opened_by_hand(closed_port, node_io_guard):
    from cms.inventory.models import Team

    transaction.set_autocommit(False)
    try:
        Team.objects.count()
        refused(node_io_guard, closed_port)
    finally:
        transaction.rollback()
        transaction.set_autocommit(True)


def test_it_guards_the_prober_and_the_lan_search(db, closed_port, node_io_guard):
    from cms.inventory.api import views
    from cms.nodes.prober import Target, prober

    target = Target(key=1, host="127.0.0.1", port=closed_port, https=False,
                    username="admin", password="pw")  # fmt: skip
    with transaction.atomic():
        with pytest.raises(NodeIoInTransaction, match="health probe"):
            prober().probe_all([target], 1.0)
        with pytest.raises(NodeIoInTransaction, match="LAN search"):
            views.search(timeout=0.2, port=closed_port, address="127.0.0.1")
    assert len(node_io_guard.violations) == 2
    node_io_guard.violations.clear()
    [result] = prober().probe_all([target], 1.0)  # outside: the real probe runs
    assert result.error == "unreachable"
