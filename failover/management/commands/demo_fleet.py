"""The demo fleet: five node agents on 127.0.0.1, registered and protected in the CMS.

`make run` runs each agent as a program of its own in the supervisor's `fleet`
group (`demo_fleet --serve lobby`), apart from the CMS's processes: a crash or a
restart of web, worker or beat never stops the "servers". A one-shot
`demo_fleet` then registers them: three recording servers with synthetic cameras
and two failover servers, on ports 5101-5105, their data under var/demo/.

It registers them once. On every later start it finds the fleet as the operator left
it (a replace, a delete, an edit) and adds nothing: a node that is already a server
(by its serial) is never added again, and a node is added only in the list its CMS
mode says.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from cms.inventory import identity
from cms.inventory.choices import Role
from cms.inventory.models import License, Server, Team
from cms.nodes.client import client_for
from cms.nodes.errors import NodeError
from cms.nodes.services import test_connection
from failover.models import FailoverSettings, Protection


@dataclass(frozen=True)
class DemoNode:
    name: str
    role: str
    port: int
    cameras: int
    model: str


# The first agent's port; the others follow. Another base lets a second fleet run beside
# `make run`'s (bench/soak.py does).
PORT_BASE = int(os.environ.get("CMS_DEMO_PORT_BASE", "5101"))
FLEET = [
    DemoNode("Lobby", "recording", PORT_BASE, 2, "NVR-1600"),
    DemoNode("Garage", "recording", PORT_BASE + 1, 2, "NVR-1600"),
    DemoNode("Warehouse", "recording", PORT_BASE + 2, 3, "NVR-3200"),
    DemoNode("Standby 1", "failover", PORT_BASE + 3, 0, "NVR-3200"),
    DemoNode("Standby 2", "failover", PORT_BASE + 4, 0, "NVR-3200"),
]


def data_dir(base: Path, node: DemoNode) -> Path:
    return base / node.name.lower().replace(" ", "")


def by_slug(slug: str) -> DemoNode:
    for node in FLEET:
        if data_dir(Path(), node).name == slug:
            return node
    raise CommandError(f"no demo node {slug!r}; one of {[data_dir(Path(), n).name for n in FLEET]}")


class Command(BaseCommand):
    help = (
        "The demo fleet of `make run`: `--serve NAME` runs one node agent (the supervisor "
        "runs one program per agent); without it, wait for the agents and register them."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--serve", metavar="NAME", help="run this agent in the foreground")

    def handle(self, *args: Any, serve: str | None, **options: Any) -> None:
        base = settings.VAR_DIR / "demo"
        base.mkdir(parents=True, exist_ok=True)
        password = _demo_password(base)
        if serve:
            self._exec_agent(by_slug(serve), base, password)
        self._wait_ready(FLEET)
        added = self._register(password)
        if added:
            self.stdout.write(
                "Demo fleet: "
                + ", ".join(f"{s.name} (:{s.port}, {s.role})" for s in added)
                + f". Data in {base}. Cause an outage with: "
                f"cms-node fault --data-dir {base / 'lobby'} volume"
            )

    def _exec_agent(self, node: DemoNode, base: Path, password: str) -> None:
        """Become the agent, so that the supervisor's signals reach it directly."""
        cmd = [sys.executable, "-m", "node", "serve", "--data-dir", str(data_dir(base, node)),
               "--port", str(node.port), "--mode", node.role, "--name", node.name,
               "--model", node.model, "--segment-seconds", "2",
               # the walk-through breaks Lobby's volume with `cms-node fault`
               "--allow-fault-injection", "--log-level", "warning"]  # fmt: skip
        if node.cameras:
            cmd += ["--cameras", str(node.cameras)]
        # The password goes by environment, never on the command line (`ps` shows that).
        os.environ["CMS_NODE_ADMIN_PASSWORD"] = password
        os.execv(sys.executable, cmd)  # noqa: S606 (our own agent, fixed arguments)

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

    def _register(self, password: str) -> list[Server]:
        """Add the fleet on the first start; the servers added (none on a later one)."""
        found = self._found(password)
        if not found:
            return []
        with transaction.atomic():
            installs = self._record(found)
        for server, lic in installs:  # node calls never inside a transaction
            with contextlib.suppress(NodeError):  # already installed on a second run
                client_for(server).install_license(lic.key, lic.cameras)
        return [server for server in found.values() if server.pk]

    def _found(self, password: str) -> dict[str, Server]:
        """The demo nodes to add, as unsaved servers in the role their CMS mode says, or
        nothing when the fleet was registered before: then the fleet is left as the
        operator made it (replaced, deleted, edited), and no node is added twice."""
        team = Team.objects.get_or_create(name="Default")[0]
        found: dict[str, Server] = {}
        managed: list[str] = []
        for node in FLEET:
            probe = Server(team=team, host="127.0.0.1", port=node.port, admin_password=password)
            report = test_connection(probe)
            if not report.ok:
                self.stderr.write(f"{node.name} (:{node.port}) is not added: {report.message}")
                continue
            other = (
                identity.managed_as(report.serial)
                or Server.objects.filter(host="127.0.0.1", port=node.port, serial="").first()
            )
            if other is not None:
                managed.append(f"{node.name} as {other.name!r} ({other.role})")
                if report.cms_mode != other.role:  # left by an older version of the demo
                    self.stderr.write(f"{other.name!r} is a {other.role} server here, but its "
                                      f"node is in {report.cms_mode} mode: delete it.")  # fmt: skip
                continue
            if report.cms_mode not in (Role.RECORDING, Role.FAILOVER):
                self.stderr.write(f"{node.name} is not added: its CMS mode is {report.cms_mode}.")
                continue
            probe.role, probe.name = report.cms_mode, node.name  # its role is its mode
            identity.adopt(probe, report)
            found[node.name] = probe
        if managed:
            self.stdout.write("The demo fleet is registered already and left as it is: "
                              + ", ".join(managed) + ".")  # fmt: skip
            return {}
        return found

    def _record(self, servers: dict[str, Server]) -> list[tuple[Server, License]]:
        """The fleet's rows (first start); returns the licenses to install on their nodes."""
        installs = []
        team = Team.objects.get(name="Default")
        for server in servers.values():
            if Server.objects.filter(role=server.role, name=server.name).exists():
                self.stderr.write(f"{server.name} is not added: a server has its name.")
                continue
            server.full_clean()
            server.save()
        standbys = [s for s in servers.values() if s.pk and s.role == Role.FAILOVER]
        for rec in (s for s in servers.values() if s.pk and s.role == Role.RECORDING):
            for priority, standby in enumerate(standbys):
                Protection.objects.get_or_create(
                    recording_server=rec, failover_server=standby,
                    defaults={"priority": priority},
                )  # fmt: skip
        if not License.objects.exists():
            recording = [s for s in servers.values() if s.pk and s.role == Role.RECORDING]
            for index, rec in enumerate(recording):
                lic = License.objects.create(key=f"DEMO-{index + 1:04d}-CAMS-0008", team=team,
                                             cameras=8, server=rec)  # fmt: skip
                installs.append((rec, lic))
        # Quick reactions for the demo; the operator's edits are kept afterwards.
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
