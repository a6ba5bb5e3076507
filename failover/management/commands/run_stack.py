"""`make run`: every process of the CMS under supervisord, each restarted when it dies.

The processes are three groups, started in this order and stopped in the reverse:

- `fleet`: the demo's node agents, one program each, and a one-shot that registers
  them. They stand for the servers the CMS protects, so the supervisor does not
  restart one that dies (that is a server failing, for the CMS to handle; bring
  it back with `supervisorctl start fleet:lobby`), and nothing the CMS's own
  processes do stops them.
- `broker`: the embedded redis-server, when no CELERY_BROKER_URL is set.
- `cms`: web, worker and beat. Any of them that dies is started again (after a
  quick crash with a growing back-off) and the supervisor logs each exit and
  start; one dying never takes another down.

Ctrl-C (SIGINT to supervisord) stops `cms`, then the broker, then the fleet, each
process with SIGTERM and a grace period well under 10 s in all.
"""

from __future__ import annotations

import os
import secrets
import shlex
import shutil
import sys
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand

from cms import broker

from .demo_fleet import FLEET, data_dir

Section = dict[str, object]


def _command(args: list[str]) -> str:
    # supervisord expands %(name)s in commands: a literal % must be doubled.
    return " ".join(shlex.quote(a) for a in args).replace("%", "%%")


def _render(sections: dict[str, Section]) -> str:
    return "\n".join(
        f"[{name}]\n" + "".join(f"{key}={value}\n" for key, value in options.items())
        for name, options in sections.items()
    )


def build_config(
    var_dir: Path, *, fleet: bool, embedded_broker: bool, bind: str, control_password: str
) -> str:
    """The supervisord configuration of `make run` (written to var/supervisord.conf, 0600)."""
    python = sys.executable
    bin_dir = Path(python).parent
    run, logs = var_dir / "run", var_dir / "log"
    manage = str(settings.BASE_DIR / "manage.py")
    rotate: Section = {"stdout_logfile_maxbytes": "10MB", "stdout_logfile_backups": 3}

    def program(name: str, args: list[str], **options: object) -> Section:
        return {"command": _command(args), "redirect_stderr": "true",
                "stdout_logfile": logs / f"{name}.log", **rotate, **options}  # fmt: skip

    # Quick crashes are retried with a back-off that grows by a second each time; a
    # process that ran for `startsecs` and then died is started again at once.
    supervised: Section = {"autorestart": "true", "startsecs": 3, "startretries": 1000,
                           "stopsignal": "TERM", "stopwaitsecs": 8,
                           "stopasgroup": "true", "killasgroup": "true"}  # fmt: skip
    # The control socket is private to this user and needs the password of this file.
    control = {"username": "cms", "password": control_password}
    sections: dict[str, Section] = {
        "supervisord": {"nodaemon": "true", "logfile": logs / "supervisord.log",
                        "logfile_maxbytes": "10MB", "logfile_backups": 3,
                        "pidfile": run / "supervisord.pid", "childlogdir": logs,
                        "loglevel": "info"},
        "unix_http_server": {"file": run / "supervisor.sock", "chmod": "0700", **control},
        "rpcinterface:supervisor": {
            "supervisor.rpcinterface_factory": "supervisor.rpcinterface:make_main_rpcinterface"
        },
        "supervisorctl": {"serverurl": f"unix://{run / 'supervisor.sock'}", **control},
    }  # fmt: skip
    groups: dict[str, tuple[int, list[str]]] = {}
    if fleet:
        names = []
        for node in FLEET:
            slug = data_dir(Path(), node).name
            names.append(slug)
            sections[f"program:{slug}"] = program(
                f"node-{slug}", [python, manage, "demo_fleet", "--serve", slug],
                autorestart="false", startsecs=1, stopsignal="TERM", stopwaitsecs=5,
            )  # fmt: skip
        sections["program:register"] = program(
            "register", [python, manage, "demo_fleet"],
            autorestart="unexpected", exitcodes=0, startsecs=0, startretries=5,
        )  # fmt: skip
        groups["fleet"] = (10, [*names, "register"])
    if embedded_broker:
        # The binary itself, not a Python wrapper: a broker killed is back in milliseconds.
        config = broker.write_config(var_dir)
        sections["program:redis"] = program(
            "broker", [str(broker.server_binary()), str(config)], **supervised
        )
        groups["broker"] = (20, ["redis"])
    sections["program:web"] = program(
        "web", [str(bin_dir / "gunicorn"), "cms.wsgi:application", "--bind", bind,
                "--workers", "2", "--threads", "4", "--graceful-timeout", "5",
                # A web killed with SIGKILL leaves its workers holding the port for a
                # moment: the new one binds beside them instead of failing to start.
                "--reuse-port", "--access-logfile", "-"], **supervised,
    )  # fmt: skip
    # SIGTERM becomes Celery's soft shutdown: running tasks get a few seconds, then the
    # worker stops and their messages go back to the queue (every task is idempotent
    # and leased, so another worker finishes them).
    sections["program:worker"] = program(
        "worker", [str(bin_dir / "celery"), "-A", "cms", "worker", "--loglevel", "INFO",
                   "--concurrency", "2", "--hostname", "worker@%h"],
        environment="REMAP_SIGTERM=SIGQUIT,PYTHONUNBUFFERED=1", **supervised,
    )  # fmt: skip
    sections["program:beat"] = program(
        "beat", [str(bin_dir / "celery"), "-A", "cms", "beat", "--loglevel", "INFO",
                 "--schedule", str(var_dir / "celerybeat-schedule")], **supervised,
    )  # fmt: skip
    groups["cms"] = (30, ["web", "worker", "beat"])
    for group, (priority, programs) in groups.items():
        sections[f"group:{group}"] = {"programs": ",".join(programs), "priority": priority}
    return _render(sections)


class Command(BaseCommand):
    help = "Run web, worker, beat, the embedded broker and the demo fleet under supervisord."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--no-fleet", action="store_true", help="without the demo fleet")
        parser.add_argument("--bind", default="127.0.0.1:8000", help="where the web answers")
        parser.add_argument(
            "--config-only", action="store_true", help="write var/supervisord.conf and stop"
        )

    def handle(self, *args: Any, no_fleet: bool, bind: str, config_only: bool, **_: Any) -> None:
        var_dir = settings.VAR_DIR
        for folder in (var_dir / "run", var_dir / "log"):
            folder.mkdir(parents=True, exist_ok=True)
            folder.chmod(0o700)
        path = var_dir / "supervisord.conf"
        path.touch(mode=0o600)
        path.write_text(
            build_config(
                var_dir,
                fleet=not no_fleet,
                embedded_broker=settings.CMS_EMBEDDED_BROKER,
                bind=bind,
                control_password=secrets.token_urlsafe(24),
            )
        )
        path.chmod(0o600)
        if config_only:
            self.stdout.write(str(path))
            return
        ctl = shutil.which("supervisorctl") or "supervisorctl"
        self.stdout.write(
            f"Logs in {var_dir / 'log'}; processes: {ctl} -c {path} status\n"
            f"Open http://{bind}/admin/  (Ctrl-C stops everything)"
        )
        self.stdout.flush()
        supervisord = str(Path(sys.executable).parent / "supervisord")
        os.execv(supervisord, [supervisord, "-c", str(path)])  # noqa: S606 (fixed arguments)
