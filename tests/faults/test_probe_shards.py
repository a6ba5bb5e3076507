"""Probing in shards over two real Celery workers on the real broker, ticked by a real
beat, against 40 emulated nodes (bench/emulator.py, which logs every /health request).

Invariants: every server is probed once per slot, not twice and not zero, whichever
worker takes which shard; a worker killed in the middle of a shard leaves that shard
to the other worker in the next slot, and the shard's cycle completes there.
"""

from __future__ import annotations

import json
import math
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from cms.inventory.models import Server
from failover.models import FailoverSettings
from tests.fixtures.celery import SESSION_QUEUE, child_env, purge, start_beat, start_worker
from tests.fixtures.nodes import wait_until

pytestmark = pytest.mark.django_db(transaction=True)

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))
from emulator import PASSWORD, address  # noqa: E402

SERVERS, SHARDS, INTERVAL = 40, 4, 2


class Emulator:
    def __init__(self, servers: int) -> None:
        self.process = subprocess.Popen(
            [sys.executable, str(ROOT / "bench" / "emulator.py"), "--servers", str(servers)],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        assert self.process.stdout is not None
        self.port = int(json.loads(self.process.stdout.readline())["port"])

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}{path}",
            data=json.dumps(body).encode() if body is not None else None,
            method=method,
        )
        with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310 (loopback)
            return json.loads(answer.read())

    def probes(self) -> dict[int, list[tuple[float, int]]]:
        """Per emulated server: when each /health request arrived, from which port."""
        log = self.call("GET", "/_emulator/health-log")
        return {int(k): [tuple(e) for e in v] for k, v in log.items()}

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)


@pytest.fixture
def emulator():
    running = Emulator(SERVERS)
    yield running
    running.stop()


@pytest.fixture
def fleet(emulator, team) -> dict[int, int]:
    """40 servers on the emulator; {server pk: emulator index}."""
    settings = FailoverSettings.load()
    settings.auto_failover = False
    settings.probe_interval = INTERVAL
    settings.probe_timeout = 2.0
    settings.save()
    Server.objects.bulk_create(
        Server(team=team, role="recording", name=f"EMU-{i}", host=address(i), port=emulator.port,
               admin_password=PASSWORD)
        for i in range(SERVERS)
    )  # fmt: skip
    return {pk: int(name.split("-")[1]) for pk, name in Server.objects.values_list("pk", "name")}


@pytest.fixture
def host(tmp_path):
    """Two workers and a beat on the session queue, CMS_PROBE_SHARDS=4."""
    purge(SESSION_QUEUE)
    env = {"CMS_PROBE_SHARDS": str(SHARDS)}
    started = []
    for name in ("a", "b"):
        folder = tmp_path / name
        folder.mkdir()
        started.append(start_worker(folder, queue=SESSION_QUEUE, **env))
    started.append(start_beat(tmp_path, **env))
    yield started
    for process in started:
        process.stop(signal.SIGKILL)
    purge(SESSION_QUEUE)


def slot_of(at: float) -> int:
    return math.floor(at / INTERVAL)


def per_slot(probes: dict[int, list[tuple[float, int]]], slots: range) -> dict[int, list[int]]:
    """For each slot, how many /health requests each emulated server got in it."""
    counts = {slot: [0] * SERVERS for slot in slots}
    for index, entries in probes.items():
        for at, _ in entries:
            if slot_of(at) in counts:
                counts[slot_of(at)][index] += 1
    return counts


def all_probed(emulator: Emulator) -> bool:
    return len(emulator.probes()) == SERVERS


def test_every_server_is_probed_once_per_slot_by_two_workers(emulator, fleet, host):
    assert wait_until(lambda: all_probed(emulator), timeout=60)
    first = slot_of(time.time()) + 1  # a whole slot after every node was logged in to
    slots = range(first, first + 5)
    time.sleep((slots.stop + 0.2) * INTERVAL - time.time())

    counts = per_slot(emulator.probes(), slots)
    wrong = {slot: [i for i, n in enumerate(c) if n != 1] for slot, c in counts.items()}
    assert all(not servers for servers in wrong.values()), wrong
    assert set(Server.objects.values_list("status", flat=True)) == {"normal"}


def running_shards(worker) -> set[str]:
    """The probe_shard tasks the worker has started and not finished."""
    log = worker.log()
    received = set(re.findall(r"probe_shard\[([0-9a-f-]+)\] received", log))
    done = set(re.findall(r"probe_shard\[([0-9a-f-]+)\] (?:succeeded|raised)", log))
    return received - done


def holder(workers: list) -> Any:
    """The worker still running the same shard task 0.3 s later: the others' shards end
    in milliseconds, the slow node's takes 1.5 s."""
    busy = {id(w): running_shards(w) for w in workers}
    time.sleep(0.3)
    still = [w for w in workers if busy[id(w)] & running_shards(w)]
    return still[0] if len(still) == 1 else None


def test_a_worker_killed_mid_shard_leaves_the_shard_to_the_other(emulator, fleet, host):
    assert wait_until(lambda: all_probed(emulator), timeout=60)
    slow_pk = next(pk for pk, index in fleet.items() if pk % SHARDS == 1)
    slow = fleet[slow_pk]
    shard_servers = sorted(index for pk, index in fleet.items() if pk % SHARDS == 1)
    before = len(emulator.probes()[slow])
    emulator.call("POST", "/_emulator/mode", {"servers": [slow], "mode": "slow"})
    # The slow node holds its shard's task for 1.5 s: the worker running a shard task
    # then is the one probing that shard.
    assert wait_until(lambda: len(emulator.probes()[slow]) > before, timeout=30)
    killed_at = time.time()
    busy = holder(host[:2])
    assert busy is not None, [w.log()[-2000:] for w in host[:2]]
    busy.stop(signal.SIGKILL)
    emulator.call("POST", "/_emulator/mode", {"servers": [slow], "mode": "ok"})
    killed_slot = slot_of(emulator.probes()[slow][-1][0])

    after = range(killed_slot + 1, killed_slot + 4)
    time.sleep((after.stop + 0.2) * INTERVAL - time.time())
    counts = per_slot(emulator.probes(), after)
    wrong = {slot: [i for i, n in enumerate(c) if n != 1] for slot, c in counts.items()}
    assert all(not servers for servers in wrong.values()), wrong
    assert all(counts[killed_slot + 1][i] == 1 for i in shard_servers)
    # The shard's cycle completed (probed and written) after the kill, by the survivor.
    shard_file = json.loads(
        (Path(child_env()["CMS_VAR_DIR"]) / "run" / "probe-cycle" / "shard-1.json").read_text()
    )
    assert shard_file["at"] > killed_at and shard_file["shards"] == SHARDS
    # ...and counted its own servers (shard 0's file is shared with other test processes
    # that probe in one shard, so only this shard's file is read).
    assert shard_file["probed"] == len(shard_servers)
