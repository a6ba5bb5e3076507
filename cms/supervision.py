"""Talking to the supervisord that `make run` starts (see failover's `run_stack` command).

No Django here: the soak benchmark and the tests use it from outside the CMS.
"""

from __future__ import annotations

import configparser
import xmlrpc.client
from pathlib import Path
from typing import Any

from supervisor.xmlrpc import SupervisorTransport


def control(var_dir: Path) -> Any:
    """The `supervisor` XML-RPC namespace of the supervisord running for `var_dir`:
    ``getAllProcessInfo()``, ``startProcess(name)``, ``stopProcess(name)``..."""
    config = configparser.RawConfigParser()
    config.read(Path(var_dir) / "supervisord.conf")
    ctl = config["supervisorctl"]
    transport = SupervisorTransport(ctl["username"], ctl["password"], ctl["serverurl"])
    return xmlrpc.client.ServerProxy("http://127.0.0.1", transport).supervisor
