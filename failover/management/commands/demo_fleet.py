"""Start a small local fleet of node agents, register and protect it, and keep it running.

`make run` starts this beside web, worker and beat: three recording servers with
synthetic cameras and two failover servers, on 127.0.0.1 ports 5101-5105, their
data under var/demo/. Ctrl-C (SIGTERM from honcho) stops the agents.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
from django.conf import settings
from django.core.management.base import BaseCommand
from django.db import transaction

from cms.inventory.models import License, Server, Team
from cms.nodes.client import client_for
from cms.nodes.errors import NodeError
from failover.models import FailoverSettings, Protection


@dataclass(frozen=True)
class DemoNode:
    name: str
    role: str
    port: int
    cameras: int
    model: str


FLEET = [
    DemoNode("Lobby", "recording", 5101, 2, "NVR-1600"),
    DemoNode("Garage", "recording", 5102, 2, "NVR-1600"),
    DemoNode("Warehouse", "recording", 5103, 3, "NVR-3200"),
    DemoNode("Standby 1", "failover", 5104, 0, "NVR-3200"),
    DemoNode("Standby 2", "failover", 5105, 0, "NVR-3200"),
]


class Command(BaseCommand):
    help = "Run the demo fleet of node agents (used by `make run`)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--no-register", action="store_true")

    def handle(self, *args: Any, no_register: bool, **options: Any) -> None:
        base = settings.VAR_DIR / "demo"
        base.mkdir(parents=True, exist_ok=True)
        password = _demo_password(base)
        cms_node = shutil.which("cms-node") or f"{sys.executable} -m node"
        processes = [self._start(node, base, password, cms_node) for node in FLEET]
        stopping = False

        def stop(*_: Any) -> None:
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        try:
            self._wait_ready(FLEET)
            if not no_register:
                installs = self._register(password)
                # On the nodes after the commit: no transaction waits for a node.
                for server, lic in installs:
                    with contextlib.suppress(NodeError):  # already installed on a second run
                        client_for(server).install_license(lic.key, lic.cameras)
            self.stdout.write(
                "Demo fleet: "
                + ", ".join(f"{n.name} (:{n.port}, {n.role})" for n in FLEET)
                + f". Data in {base}. Cause an outage with: "
                f"cms-node fault --data-dir {base / 'lobby'} volume"
            )
            # An agent the operator kills stays down until `make run` restarts: that is
            # how the walk-through shows a failover.
            while not stopping:
                time.sleep(0.5)
        finally:
            for process in processes:
                if process.poll() is None:
                    process.terminate()
            for process in processes:
                try:
                    process.wait(10)
                except subprocess.TimeoutExpired:
                    process.kill()

    def _start(self, node: DemoNode, base: Path, password: str, cms_node: str) -> subprocess.Popen:
        data_dir = base / node.name.lower().replace(" ", "")
        cmd = [*cms_node.split(), "serve", "--data-dir", str(data_dir), "--port", str(node.port),
               "--mode", node.role, "--name", node.name, "--model", node.model,
               "--segment-seconds", "2", "--log-level", "warning"]  # fmt: skip
        if node.cameras:
            cmd += ["--cameras", str(node.cameras)]
        env = {**os.environ, "CMS_NODE_ADMIN_PASSWORD": password}
        return subprocess.Popen(cmd, env=env)  # noqa: S603 (our own agent, fixed arguments)

    def _wait_ready(self, nodes: list[DemoNode]) -> None:
        deadline = time.monotonic() + 60
        pending = list(nodes)
        while pending and time.monotonic() < deadline:
            for node in list(pending):
                try:
                    requests.get(f"http://127.0.0.1:{node.port}/api/v1/info", timeout=1)
                    pending.remove(node)
                except requests.RequestException:
                    pass
            time.sleep(0.3)

    @transaction.atomic
    def _register(self, password: str) -> list[tuple[Server, License]]:
        """The fleet in the database; returns the licenses to install on the nodes."""
        team = Team.objects.get_or_create(name="Default")[0]
        first_run = not Server.objects.filter(name__in=[n.name for n in FLEET]).exists()
        servers = {}
        for node in FLEET:
            server = Server.objects.filter(role=node.role, name=node.name).first()
            if server is None:
                server = Server(team=team, role=node.role, name=node.name, host="127.0.0.1",
                                port=node.port, admin_password=password)  # fmt: skip
                server.full_clean()
                server.save()
            servers[node.name] = server
        standbys = [servers["Standby 1"], servers["Standby 2"]]
        for node in FLEET:
            if node.role != "recording":
                continue
            for priority, standby in enumerate(standbys):
                Protection.objects.get_or_create(
                    recording_server=servers[node.name], failover_server=standby,
                    defaults={"priority": priority},
                )  # fmt: skip
        installs = []
        if not License.objects.exists():
            for index, node in enumerate(n for n in FLEET if n.role == "recording"):
                lic = License.objects.create(key=f"DEMO-{index + 1:04d}-CAMS-0008", team=team,
                                             cameras=8, server=servers[node.name])  # fmt: skip
                installs.append((servers[node.name], lic))
        if first_run:  # quick reactions for the demo; the operator's edits are kept afterwards
            settings_row = FailoverSettings.load()
            settings_row.probe_interval = 2
            settings_row.probe_timeout = 1.5
            settings_row.failback_hold_down = 10
            settings_row.save()
        return installs


def _demo_password(base: Path) -> str:
    path = base / "node-password"
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_urlsafe(12))
    return path.read_text().strip()
