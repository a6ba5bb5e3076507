"""``cms-node``: serve the agent, print its identity, inject faults.

    cms-node serve --data-dir DIR --port PORT [--host 127.0.0.1] [--mode MODE] ...
    cms-node info  --data-dir DIR
    cms-node fault --data-dir DIR volume|service|clear   (agent run with --allow-fault-injection)

Options that describe the node (name, model, mode, admin password, demo cameras)
initialise a *new* data folder; on later starts the persisted state wins, so a
restart never undoes what the CMS changed through the API.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import secrets
import socket
import sys
from pathlib import Path
from typing import Any

from node import __version__
from node.config import MAX_CAMERAS, synthetic_cameras, validate_id
from node.discovery import DEFAULT_PORT, DiscoveryResponder
from node.errors import ApiError
from node.fsutil import read_json, write_json_atomic
from node.state import (
    FAULT_KINDS,
    MODES,
    AlreadyRunning,
    DataDirLock,
    StateStore,
    new_state,
    read_state_file,
    write_fault,
)
from node.tls import cert_paths, ensure_certificate, fingerprint

log = logging.getLogger("node")

PASSWORD_ENV = "CMS_NODE_ADMIN_PASSWORD"  # noqa: S105 (a variable name) keeps the password out of `ps` output
ENROLLMENT_ENV = "CMS_NODE_QUICKCONNECT_ENROLLMENT"  # the same, for the enrollment secret


def _camera_count(raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if not 1 <= value <= MAX_CAMERAS:
        raise argparse.ArgumentTypeError(f"a number of cameras from 1 to {MAX_CAMERAS}")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="cms-node", description="Surveillance node agent")
    p.add_argument("--version", action="version", version=f"cms-node {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("serve", help="run the agent")
    s.add_argument("--data-dir", required=True, type=Path)
    s.add_argument("--port", type=int, default=5080, help="0 picks a free port (see run.json)")
    s.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0 for LAN)")
    s.add_argument("--mode", choices=MODES, default="standalone")
    s.add_argument("--name")
    s.add_argument("--model", default="CMS-NODE-4")
    s.add_argument("--admin-password", help=f"or set ${PASSWORD_ENV}")
    s.add_argument("--https", action="store_true")
    s.add_argument("--segment-seconds", type=float, default=5.0)
    s.add_argument("--snapshot-every", type=int, default=5, help="segments between snapshots")
    s.add_argument(
        "--cameras",
        type=int,
        default=0,
        help="synthetic demo cameras for a new node with an empty config",
    )
    s.add_argument(
        "--max-cameras",
        type=_camera_count,
        default=MAX_CAMERAS,
        metavar=f"1-{MAX_CAMERAS}",
        help="the most cameras this node records at once, its own and a takeover's "
        "(reported as its capacity; a bigger takeover is refused)",
    )
    s.add_argument("--quickconnect-id")
    s.add_argument("--directory", help="QuickConnect directory URL, e.g. http://cms:8000/qc")
    s.add_argument(
        "--quickconnect-enrollment",
        metavar="SECRET",
        help="the enrollment secret the CMS issued for the ID, needed until the node's first "
        f"registration binds it (or set ${ENROLLMENT_ENV})",
    )
    s.add_argument("--discovery-port", type=int, default=DEFAULT_PORT, help="0 disables")
    s.add_argument(
        "--allow-fault-injection",
        action="store_true",
        help="accept simulated volume/service faults (POST /fault, `cms-node fault`): demos "
        "and tests only, a fault makes the CMS fail this server over",
    )
    s.add_argument("--token-ttl", type=float, default=3600.0, help=argparse.SUPPRESS)
    s.add_argument("--log-level", default="info")

    i = sub.add_parser("info", help="print the node's identity")
    i.add_argument("--data-dir", required=True, type=Path)

    u = sub.add_parser(
        "unpair", help="forget the CMS pairing and the security lock (the agent stopped)"
    )
    u.add_argument("--data-dir", required=True, type=Path)

    f = sub.add_parser("fault", help="simulate a fault (or clear faults)")
    f.add_argument("--data-dir", required=True, type=Path)
    f.add_argument("kind", choices=FAULT_KINDS)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "serve":
        return serve(args)
    if args.command == "info":
        return info(args.data_dir)
    if args.command == "unpair":
        return unpair(args.data_dir)
    return fault(args.data_dir, args.kind)


def info(data_dir: Path) -> int:
    state = read_state_file(data_dir)
    if state is None:
        print(f"cms-node: no node in {data_dir} (never started?)", file=sys.stderr)
        return 1
    out: dict[str, Any] = {
        "name": state["name"],
        "model": state["model"],
        "serial": state["serial"],
        "version": __version__,
        "cms_mode": state["cms"]["mode"],
        "cms_enabled": state["cms"]["enabled"],
        "paired": state["cms"]["host"] is not None,
        "epoch": state["epoch"],
        "quickconnect_id": state["quickconnect"]["id"],
    }
    cert, _ = cert_paths(data_dir)
    if cert.exists():
        out["tls_fingerprint_sha256"] = fingerprint(cert)
    run = read_json(data_dir / "run.json")
    if isinstance(run, dict) and _pid_alive(run.get("pid")):
        out["running"] = run
    print(json.dumps(out, indent=2))
    return 0


def unpair(data_dir: Path) -> int:
    """Free a node whose CMS is gone: only someone with the node's data folder can, and
    only while its agent is stopped (the folder's lock says so)."""
    if read_state_file(data_dir) is None:
        print(f"cms-node: no node in {data_dir}", file=sys.stderr)
        return 1
    lock = DataDirLock(data_dir)
    try:
        lock.acquire()
    except AlreadyRunning as exc:
        print(f"cms-node: {exc}; stop it first", file=sys.stderr)
        return 1
    try:
        store = StateStore(data_dir)
        store.load()

        def forget(st: dict[str, Any]) -> None:
            st["cms"] |= {
                "host": None,
                "pairing_key": None,
                "refuse_other_hosts": False,
                "refuse_local_changes": False,
            }

        store.update(forget)
    finally:
        lock.release()
    print(json.dumps({"paired": False, "locked": False}))
    return 0


def fault(data_dir: Path, kind: str) -> int:
    if read_state_file(data_dir) is None:
        print(f"cms-node: no node in {data_dir}", file=sys.stderr)
        return 1
    # Only the running agent knows whether it accepts faults (it ignores faults.json
    # otherwise); its run.json says so.
    run = read_json(data_dir / "run.json")
    if not isinstance(run, dict) or not _pid_alive(run.get("pid")):
        print(f"cms-node: no agent is running on {data_dir}", file=sys.stderr)
        return 1
    if run.get("fault_injection") is not True:
        print(
            "cms-node: faults are not enabled on this node "
            "(start its agent with --allow-fault-injection)",
            file=sys.stderr,
        )
        return 1
    print(json.dumps({"faults": write_fault(data_dir, kind)}))
    return 0


def _pid_alive(pid: object) -> bool:
    if not isinstance(pid, int):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _initial_state(args: argparse.Namespace, data_dir: Path) -> dict[str, Any]:
    password = args.admin_password or os.environ.get(PASSWORD_ENV)
    generated = not password
    if generated:
        password = secrets.token_urlsafe(12)
    state = new_state(args.name or "", args.model, args.mode, password)
    if not args.name:
        state["name"] = f"NODE-{state['serial'][:6]}"
    if args.cameras:
        state["config"]["cameras"] = synthetic_cameras(args.cameras)
    if generated:
        # Written once for the admin to read, never logged or printed.
        secret_file = data_dir / "initial-admin-password"
        write_json_atomic(secret_file, {"username": "admin", "password": password})
        log.warning("no admin password given: one was generated in %s (mode 0600)", secret_file)
    return state


def _listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    # Lets a restarted agent rebind its port while old connections sit in TIME_WAIT.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def serve(args: argparse.Namespace) -> int:
    import uvicorn

    from node.app import build_app
    from node.core import NodeRuntime, Options
    from node.quickconnect import QuickConnectRegistrar

    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if args.quickconnect_enrollment and not args.quickconnect_id:
        print("cms-node: --quickconnect-enrollment needs --quickconnect-id", file=sys.stderr)
        return 2
    data_dir: Path = args.data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(data_dir, 0o700)
    lock = DataDirLock(data_dir)
    try:
        lock.acquire()
    except AlreadyRunning as exc:
        print(f"cms-node: {exc}", file=sys.stderr)
        return 2

    store = StateStore(data_dir)
    if store.exists():
        store.load()
    else:
        store.create(_initial_state(args, data_dir))

    if args.quickconnect_id:
        try:
            validate_id(args.quickconnect_id, "--quickconnect-id")
        except ApiError as exc:
            print(f"cms-node: {exc.message}", file=sys.stderr)
            return 2
        if not args.directory:
            print("cms-node: --quickconnect-id needs --directory URL", file=sys.stderr)
            return 2

        def set_qc(st: dict[str, Any]) -> None:
            qc = st["quickconnect"]
            if qc["id"] != args.quickconnect_id or not qc["token"]:
                st["quickconnect"] = {
                    "id": args.quickconnect_id,
                    "token": secrets.token_urlsafe(24),
                }

        store.update(set_qc)

    cert = key = None
    if args.https:
        cert, key = ensure_certificate(data_dir, store.read()["name"])
    try:
        sock = _listen(args.host, args.port)
    except OSError as exc:
        print(f"cms-node: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 2
    port = sock.getsockname()[1]

    options = Options(
        host=args.host,
        port=port,
        https=args.https,
        segment_seconds=args.segment_seconds,
        snapshot_every=args.snapshot_every,
        token_ttl=args.token_ttl,
        quickconnect_id=args.quickconnect_id,
        directory=args.directory,
        discovery_port=args.discovery_port,
        allow_fault_injection=args.allow_fault_injection,
        max_cameras=args.max_cameras,
    )
    runtime = NodeRuntime(data_dir, store, options)
    runtime.start()
    advertised = None if args.host in ("0.0.0.0", "::", "") else args.host  # noqa: S104

    def describe(searcher: str | None) -> dict[str, Any]:
        i = runtime.info()
        paired_with = runtime.store.read()["cms"]["host"]
        return {
            k: i[k]
            for k in ("name", "model", "serial", "version", "cms_mode", "cms_enabled", "https")
        } | {
            "address": advertised,
            "port": port,
            "paired_elsewhere": paired_with is not None and paired_with != searcher,
            "locked": bool(i["locked"]),
        }

    helpers: list[Any] = []
    if args.discovery_port:
        try:
            responder = DiscoveryResponder(args.discovery_port, describe)
            responder.start()
            helpers.append(responder)
        except OSError as exc:  # discovery is a convenience: never fatal
            log.warning("discovery disabled: cannot bind UDP %s: %s", args.discovery_port, exc)
    if args.quickconnect_id and args.directory:

        def qc_payload() -> dict[str, Any]:
            st = store.read()
            body = {
                "id": st["quickconnect"]["id"],
                "serial": st["serial"],
                "token": st["quickconnect"]["token"],
                "port": port,
            }
            return body | ({"host": advertised} if advertised else {})

        # Held in memory only (not inherited by ffmpeg), dropped once the ID is bound.
        enrollment = os.environ.pop(ENROLLMENT_ENV, None)
        enrollment = args.quickconnect_enrollment or enrollment or None
        registrar = QuickConnectRegistrar(
            args.directory, qc_payload, runtime.quickconnect_status, enrollment=enrollment
        )
        registrar.start()
        helpers.append(registrar)

    write_json_atomic(
        data_dir / "run.json",
        {
            "pid": os.getpid(),
            "host": args.host,
            "port": port,
            "https": args.https,
            "fault_injection": args.allow_fault_injection,
        },
        mode=0o644,
    )
    scheme = "https" if args.https else "http"
    log.info(
        "cms-node %s (%s) listening on %s://%s:%s",
        store.read()["name"],
        store.read()["cms"]["mode"],
        scheme,
        args.host,
        port,
    )
    if args.allow_fault_injection:
        log.warning("fault injection is enabled (POST /fault, cms-node fault): for demos and tests")
    if cert:
        log.info("TLS certificate SHA-256 fingerprint: %s", fingerprint(cert))
    config = uvicorn.Config(
        build_app(runtime),
        ssl_certfile=str(cert) if cert else None,
        ssl_keyfile=str(key) if key else None,
        log_level="warning",
        access_log=False,
        server_header=False,
        timeout_keep_alive=30,
        limit_concurrency=512,
        # Idle kept-alive TLS connections hold a graceful shutdown until this timeout
        # (asyncio waits for the peer's close_notify); transfers are resumable, so a
        # short grace period loses nothing.
        timeout_graceful_shutdown=2,
        lifespan="off",
    )
    try:
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        for helper in helpers:
            helper.stop()
        runtime.stop()
        (data_dir / "run.json").unlink(missing_ok=True)
        lock.release()
    return 0
