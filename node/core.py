"""What the node does, independent of HTTP: the rules behind every endpoint.

The HTTP layer (``node/app.py``) parses requests and calls these methods, which
raise :class:`~node.errors.ApiError` to refuse. Every state change goes through
:meth:`StateStore.update`, so it is persisted before the node acts on it.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scramp import ScramException, ScramMechanism

from node import API_VERSION, __version__
from node.auth import LoginThrottle, ReplayGuard, ScramSessions, TokenStore, retry_after_header
from node.config import MAX_CAMERAS, validate_config, validate_id
from node.errors import ApiError, bad_request, conflict, not_found
from node.peers import LanAddresses, PeerProber
from node.recorder import Recorder
from node.standby import StandbyStore, parse_version
from node.state import FaultWatcher, StateStore, write_fault
from node.storage import Storage
from node.timeutil import iso
from node.transfer import GrantDesk, Pulls
from protocol import scram
from protocol.messages import (
    Capacity,
    Faults,
    FaultsAnswer,
    Health,
    Info,
    Licenses,
    OnBehalfOf,
    PurgeAnswer,
    RecordingStatus,
    ScramFinishAnswer,
    ScramStartAnswer,
    Service,
    TakeoverAnswer,
    Volume,
)

LICENSE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]{3,63}$")
CMS_HOST_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]{0,63}$")
DEGRADED_FREE_BYTES = 100 * 1024**2
MAX_USERNAME = 64
_MECHANISM = ScramMechanism(scram.MECHANISM)
# scramp raises its own exception for protocol errors, but bad base64 or a missing
# attribute in a hostile message can surface as the underlying Python error.
_SCRAM_ERRORS = (ScramException, ValueError, KeyError, IndexError, TypeError)


@dataclass
class Options:
    host: str = "127.0.0.1"
    port: int = 0
    https: bool = False
    segment_seconds: float = 5.0
    snapshot_every: int = 5
    token_ttl: float = 3600.0
    quickconnect_id: str | None = None
    directory: str | None = None
    discovery_port: int = 0
    # Simulated faults (POST /fault, `cms-node fault`) are for demos and tests only.
    allow_fault_injection: bool = False
    # The most cameras the node records at once (its own and a takeover's together).
    max_cameras: int = MAX_CAMERAS
    extra: dict[str, Any] = field(default_factory=dict)


class NodeRuntime:
    def __init__(self, data_dir: Path, store: StateStore, options: Options) -> None:
        self.data_dir = data_dir
        self.store = store
        self.options = options
        self.storage = Storage(data_dir)
        self.faults = FaultWatcher(data_dir, enabled=options.allow_fault_injection)
        self.recorder = Recorder(
            self.storage, self.faults, options.segment_seconds, options.snapshot_every
        )
        self.tokens = TokenStore(options.token_ttl)
        self.lan = LanAddresses(options.host, options.port)
        self.peers = PeerProber()
        self.throttle = LoginThrottle()
        self.scram_sessions = ScramSessions()
        self.replays = ReplayGuard(scram.SIGNATURE_WINDOW)
        self.grants = GrantDesk()
        self.standby = StandbyStore(data_dir)
        self.pulls = Pulls(self.storage, lambda: self.faults.current()["volume"])
        self.port = options.port
        self.quickconnect_status: dict[str, Any] = {"registered": False, "error": None}

    # -- lifecycle -----------------------------------------------------------

    def start(self) -> None:
        self._apply_recording(self.store.read())

    def stop(self) -> None:
        self.recorder.stop()
        self.storage.close()

    def _apply_recording(self, state: dict[str, Any]) -> None:
        """Own cameras always record; a takeover only ever adds cameras."""
        specs: list[tuple[dict[str, Any], str, dict[str, str] | None]] = [
            (cam, "own", None) for cam in state["config"]["cameras"]
        ]
        takeover = state.get("takeover")
        if takeover:
            specs += [(cam, "failover", takeover["on_behalf_of"]) for cam in takeover["cameras"]]
        self.recorder.apply(specs)

    # -- access rules --------------------------------------------------------

    def locked(self) -> bool:
        cms = self.store.read()["cms"]
        return bool(cms["host"] and (cms["refuse_other_hosts"] or cms["refuse_local_changes"]))

    def check_lock(self, signed: bool) -> None:
        """A locked node accepts a change only when it is signed with the pairing key of
        the CMS it is paired with (``signed``: see :meth:`verify_signature`). A node
        locked before pairing keys existed has none to check: the CMS pairs it again."""
        cms = self.store.read()["cms"]
        if self.locked() and cms.get("pairing_key") and not signed:
            raise ApiError(
                403,
                "locked",
                "this node is locked: only a change signed by the CMS it is paired with "
                "is accepted",
            )

    def verify_signature(
        self, method: str, raw_path: str, body_sha256: str, headers: Any, token: str
    ) -> bool:
        """True when the ``X-CMS-*`` headers sign this request with the pairing key, the
        time is within the window and the nonce is new (a captured request sent again is
        refused)."""
        key = self.store.read()["cms"].get("pairing_key")
        stamp = headers.get(scram.HEADER_TIME, "")
        nonce = headers.get(scram.HEADER_NONCE, "")
        signature = headers.get(scram.HEADER_SIGNATURE, "")
        if not key or not stamp or not signature or not 16 <= len(nonce) <= 64:
            return False
        try:
            sent = float(stamp)
        except ValueError:
            return False
        if not abs(time.time() - sent) <= scram.SIGNATURE_WINDOW:
            return False
        expected = scram.request_signature(
            bytes.fromhex(key), method, raw_path, body_sha256, stamp, nonce, token
        )
        return scram.same(expected, signature) and self.replays.first_use(nonce)

    def redeem_grant(self, body: dict[str, Any]) -> dict[str, Any]:
        """A restoration grant from the paired CMS, for a transfer token (see
        ``node.transfer``): signed with this agent's pairing key, for this agent."""
        st = self.store.read()
        return self.grants.redeem(
            st["cms"].get("pairing_key"), st["serial"], self.storage, body.get("grant")
        )

    def login(self, *_: object) -> dict:
        raise ApiError(
            410,
            "login_removed",
            "password logins are gone: the password never travels; log in with "
            "SCRAM-SHA-256 (POST /auth/scram/start, then /auth/scram/finish)",
        )

    def _throttled(self, client: str) -> None:
        wait = self.throttle.wait_needed(client)
        if wait > 0:
            raise ApiError(
                429,
                "too_many_attempts",
                "too many failed logins; wait before trying again",
                headers={"Retry-After": retry_after_header(wait)},
                extra={"retry_after": round(wait, 1)},
            )

    def scram_start(self, username: object, client_first: object, client: str) -> dict:
        if not isinstance(username, str) or not isinstance(client_first, str):
            raise bad_request("username and client_first must be strings")
        if len(username) > MAX_USERNAME or len(client_first) > scram.MAX_MESSAGE:
            raise bad_request(
                f"username and client_first must be at most {MAX_USERNAME} and "
                f"{scram.MAX_MESSAGE} characters"
            )
        self._throttled(client)
        st = self.store.read()
        admin = st["admin"]

        named: list[str] = []

        def verifier(user: str) -> tuple[bytes, bytes, bytes, int]:
            named.append(user)
            if user == admin["username"] == username:
                return (
                    bytes.fromhex(admin["salt"]),
                    bytes.fromhex(admin["stored_key"]),
                    bytes.fromhex(admin["server_key"]),
                    int(admin["iterations"]),
                )
            # An unknown user gets a stable salt and keys nobody knows: the answer looks
            # like a real account's and the finish fails like a wrong password.
            salt = scram.verifier_keys(bytes.fromhex(admin["server_key"]) + user.encode())[0]
            return (
                salt[:16],
                scram.new_pairing_key(),
                scram.new_pairing_key(),
                int(admin["iterations"]),
            )

        exchange = _MECHANISM.make_server(verifier)
        try:
            exchange.set_client_first(client_first)
            server_first = exchange.get_server_first()
        except _SCRAM_ERRORS as exc:
            raise bad_request(f"client_first is not a SCRAM-SHA-256 message: {exc}") from None
        if named != [username]:
            raise bad_request("client_first names another user than username")
        session = self.scram_sessions.open((exchange, username), client)
        return ScramStartAnswer(
            session=session, server_first=server_first, serial=st["serial"]
        ).to_json()

    def scram_finish(self, session: object, client_final: object, client: str) -> dict:
        if not isinstance(session, str) or not isinstance(client_final, str):
            raise bad_request("session and client_final must be strings")
        if len(session) > 128 or len(client_final) > scram.MAX_MESSAGE:
            raise bad_request("session or client_final is too long")
        self._throttled(client)
        entry = self.scram_sessions.take(session, client)
        if entry is None:
            raise ApiError(
                401, "session_unknown", "no such SCRAM session (expired, used or never started)"
            )
        exchange, username = entry
        try:
            exchange.set_client_final(client_final)
            server_final = exchange.get_server_final()
        except _SCRAM_ERRORS:
            self.throttle.failed(client)
            raise ApiError(401, "auth_failed", "wrong username or password") from None
        self.throttle.succeeded(client)
        return ScramFinishAnswer(
            server_final=server_final,
            token=self.tokens.issue(username),
            expires_in=self.tokens.ttl,
        ).to_json()

    # -- read-only views -----------------------------------------------------

    def info(self) -> dict[str, Any]:
        st = self.store.read()
        cms = st["cms"]
        return Info(
            name=st["name"],
            model=st["model"],
            serial=st["serial"],
            version=__version__,
            api_version=API_VERSION,
            cms_mode=cms["mode"],
            cms_enabled=cms["enabled"],
            paired=cms["host"] is not None,
            locked=bool(cms["refuse_other_hosts"] or cms["refuse_local_changes"]),
            https=self.options.https,
            quickconnect_id=st["quickconnect"]["id"],
            lan=self.lan(),
        ).to_json()

    def health(self) -> dict[str, Any]:
        st = self.store.read()
        faults = self.faults.current()
        try:
            free, total = self.storage.disk_usage()
        except OSError:
            free, total = 0, 0
        if faults["volume"] or total == 0:
            volume = "crashed"
        elif free < DEGRADED_FREE_BYTES:
            volume = "degraded"
        else:
            volume = "normal"
        if faults["service"]:
            service = "stopped"
        elif self.recorder.crashed():
            service = "error"
        else:
            service = "running"
        cameras = self.recorder.status()
        if volume == "crashed" or service != "running":
            overall = "abnormal"
        elif volume == "degraded" or any(c["state"] == "error" for c in cameras):
            overall = "degraded"
        else:
            overall = "normal"
        takeover = st.get("takeover")
        # Built from the protocol's model: what the CMS validates is what is sent.
        return Health(
            state=overall,
            volume=Volume(state=volume, free_bytes=free, total_bytes=total),
            service=Service(state=service),
            faults=Faults(**faults),
            recording=RecordingStatus.model_validate(
                {
                    "cameras": cameras,
                    "on_behalf_of": takeover["on_behalf_of"] if takeover else None,
                    "takeover_epoch": takeover["epoch"] if takeover else None,
                }
            ),
            epoch=st["epoch"],
            cms_mode=st["cms"]["mode"],
            # lets the CMS refresh its configuration snapshot only when it changed
            config_version=st["config"]["version"],
            time=iso(time.time()),
            peer_probes=self.peers.done,
            capacity=Capacity(
                cameras=self.options.max_cameras,
                licensed_cameras=sum(x["cameras"] for x in st["licenses"]),
            ),
            # lets the CMS see in its probe whether what this node holds is current
            standby=self.standby.versions(),
        ).to_json()

    def get_config(self) -> dict[str, Any]:
        return self.store.read()["config"]

    # -- changes -------------------------------------------------------------

    def put_config(self, body: object, if_match: str | None) -> dict[str, Any]:
        cameras = validate_config(body)
        if if_match is None:
            raise ApiError(
                428,
                "precondition_required",
                "send If-Match with the ETag from GET /config (or * to overwrite)",
            )

        def mutate(st: dict[str, Any]) -> dict[str, Any]:
            current = config_etag(st["config"]["version"])
            if if_match.strip() != "*" and current not in [t.strip() for t in if_match.split(",")]:
                raise ApiError(
                    412,
                    "precondition_failed",
                    f"the config changed meanwhile (now {current}); read it again",
                )
            st["config"] = {"version": st["config"]["version"] + 1, "cameras": cameras}
            return st

        new = self.store.update(mutate)
        self._apply_recording(new)
        return new["config"]

    def takeover(self, body: dict[str, Any]) -> dict[str, Any]:
        epoch = _epoch(body)
        obo = body.get("on_behalf_of")
        if not isinstance(obo, dict):
            raise bad_request("on_behalf_of must be an object {id, name}")
        obo_id = validate_id(obo.get("id"), "on_behalf_of.id")
        obo_name = obo.get("name", obo_id)
        if not isinstance(obo_name, str) or not 1 <= len(obo_name) <= 64:
            raise bad_request("on_behalf_of.name must be 1-64 characters")
        # One step: a version of the standby configuration this node holds for the
        # owner; or the whole configuration, as before.
        version: str | None = None
        sent: list[dict[str, Any]] = []
        if "config" in body and "config_version" in body:
            raise bad_request("send config or config_version, not both")
        if "config_version" in body:
            version = parse_version(body.get("config_version"), "config_version")
        else:
            sent = validate_config(body.get("config"))

        def mutate(st: dict[str, Any]) -> dict[str, Any]:
            _check_proof(st, body, epoch, "takeover")
            if st["cms"]["mode"] != "failover":
                raise conflict(
                    "wrong_mode",
                    f"this node is in {st['cms']['mode']} mode, only a failover node takes over",
                )
            # Checked after the proof: only the paired CMS learns what this node holds.
            cameras = sent if version is None else self.standby.cameras(obo_id, version)
            room = self.options.max_cameras - len(st["config"]["cameras"])
            if len(cameras) > room:
                raise conflict(
                    "over_capacity",
                    f"{len(cameras)} cameras to take over, room for {max(room, 0)} "
                    f"(capacity {self.options.max_cameras})",
                )
            newest, last = st["epoch"], st.get("last_command") or {}
            if epoch < newest:
                raise _stale(epoch, newest)
            # The same command delivered again is harmless; anything else reusing an
            # epoch (a takeover after its release) is a stale message.
            if epoch == newest and (
                last.get("action") != "takeover" or last.get("on_behalf_of") != obo_id
            ):
                raise _stale(
                    epoch,
                    newest,
                    f"epoch {epoch} was already used for {last.get('action', 'another command')}",
                )
            st["epoch"] = epoch
            st["last_command"] = {"epoch": epoch, "action": "takeover", "on_behalf_of": obo_id}
            st["takeover"] = {
                "epoch": epoch,
                "on_behalf_of": {"id": obo_id, "name": obo_name},
                "cameras": cameras,
                "since": (st.get("takeover") or {}).get("since") or time.time(),
            }
            return st

        new = self.store.update(mutate)
        self._apply_recording(new)
        return _takeover_view(new)

    def release(self, body: dict[str, Any]) -> dict[str, Any]:
        epoch = _epoch(body)

        def mutate(st: dict[str, Any]) -> dict[str, Any]:
            _check_proof(st, body, epoch, "release")
            newest = st["epoch"]
            if epoch < newest:
                raise _stale(epoch, newest)
            # Equal epoch: release of that takeover, or a retry of the release. A newer
            # epoch fences everything older, so it stops any takeover in progress.
            st["epoch"] = epoch
            st["last_command"] = {
                "epoch": epoch,
                "action": "release",
                "on_behalf_of": (st.get("takeover") or {}).get("on_behalf_of", {}).get("id"),
            }
            st["takeover"] = None
            return st

        new = self.store.update(mutate)
        self._apply_recording(new)
        return _takeover_view(new)

    def purge(self, body: dict[str, Any]) -> dict[str, Any]:
        obo_id = validate_id(body.get("on_behalf_of"), "on_behalf_of")
        takeover = self.store.read().get("takeover")
        if takeover and takeover["on_behalf_of"]["id"] == obo_id:
            raise conflict("busy", "still recording on behalf of this server; release first")
        result = self.storage.purge_failover(obo_id)
        return PurgeAnswer(
            deleted=result.deleted, failed=result.failed, error=result.error[:2000]
        ).to_json()

    # -- licenses ------------------------------------------------------------

    def licenses(self) -> dict[str, Any]:
        lic = self.store.read()["licenses"]
        return Licenses.model_validate(
            {"licenses": lic, "total_cameras": sum(x["cameras"] for x in lic)}
        ).to_json()

    def install_license(self, body: dict[str, Any]) -> dict[str, Any]:
        lic = _license(body)

        def mutate(st: dict[str, Any]) -> None:
            if any(x["key"] == lic["key"] for x in st["licenses"]):
                raise conflict("license_exists", f"license {lic['key']} is already installed")
            st["licenses"].append(lic)

        self.store.update(mutate)
        return lic

    def remove_license(self, key: str) -> None:
        def mutate(st: dict[str, Any]) -> None:
            kept = [x for x in st["licenses"] if x["key"] != key]
            if len(kept) == len(st["licenses"]):
                raise not_found(f"license {key[:64]} is not installed")
            st["licenses"] = kept

        self.store.update(mutate)

    def replace_licenses(self, body: dict[str, Any]) -> dict[str, Any]:
        items = body.get("licenses")
        if not isinstance(items, list) or len(items) > 1000:
            raise bad_request("licenses must be a list (at most 1000)")
        new = [_license(x if isinstance(x, dict) else {}) for x in items]
        keys = [x["key"] for x in new]
        if len(set(keys)) != len(keys):
            raise conflict("license_exists", "the same license key appears twice")

        def mutate(st: dict[str, Any]) -> None:
            st["licenses"] = new

        self.store.update(mutate)
        return self.licenses()

    # -- CMS service ---------------------------------------------------------

    def enable_cms(self, body: dict[str, Any], cms_host: str | None, signed: bool) -> dict:
        """Pair with a CMS: after a SCRAM login (the caller checked the token), with the
        pairing key wrapped under this node's ServerKey. Re-pairing a locked node needs a
        request signed with the current pairing key: knowing the password is not enough."""
        if not cms_host or not CMS_HOST_RE.match(cms_host):
            raise bad_request("X-CMS-Host must name the CMS host (its id)")
        mode = body.get("mode")
        if mode not in ("recording", "failover"):
            raise bad_request("mode must be recording or failover")
        lock = body.get("lock") or {}
        if not isinstance(lock, dict):
            raise bad_request("lock must be an object")
        self.check_lock(signed)
        st = self.store.read()
        try:
            key = scram.unwrap_pairing_key(
                body.get("pairing"), bytes.fromhex(st["admin"]["server_key"]), st["serial"]
            )
        except ValueError as exc:
            raise bad_request(f"pairing: {exc}") from None

        def mutate(st: dict[str, Any]) -> None:
            if st.get("takeover") and mode != "failover":
                raise conflict("busy", "this node is taking over for a server; release first")
            st["cms"] = {
                "enabled": True,
                "mode": mode,
                "host": cms_host,
                "pairing_key": key.hex(),
                "refuse_other_hosts": bool(lock.get("refuse_other_hosts")),
                "refuse_local_changes": bool(lock.get("refuse_local_changes")),
            }

        self.store.update(mutate)
        return self.info()

    def disable_cms(self) -> dict[str, Any]:
        def mutate(st: dict[str, Any]) -> None:
            if st.get("takeover"):
                raise conflict("busy", "this node is taking over for a server; release first")
            st["cms"] = {
                "enabled": False,
                "mode": "standalone",
                "host": None,
                "pairing_key": None,
                "refuse_other_hosts": False,
                "refuse_local_changes": False,
            }

        self.store.update(mutate)
        return self.info()

    def set_fault(self, body: dict[str, Any]) -> dict[str, Any]:
        if not self.options.allow_fault_injection:  # the route is not even mounted then
            raise not_found("fault injection is not enabled on this node")
        kind = body.get("kind")
        try:
            faults = write_fault(self.data_dir, kind if isinstance(kind, str) else "")
        except ValueError as exc:
            raise bad_request(str(exc)) from None
        return FaultsAnswer(faults=Faults(**faults)).to_json()


def config_etag(version: int) -> str:
    return f'"config-{version}"'


def _epoch(body: dict[str, Any]) -> int:
    epoch = body.get("epoch")
    if isinstance(epoch, bool) or not isinstance(epoch, int) or not 1 <= epoch < 2**62:
        raise bad_request("epoch must be a positive integer")
    return epoch


def _check_proof(st: dict[str, Any], body: dict[str, Any], epoch: int, action: str) -> None:
    """Only the paired CMS issues epochs: ``proof`` is its HMAC of (epoch, serial, action)
    under the pairing key. Without it anyone who can log in could send an epoch far in
    the future and fence this node for good."""
    key = st["cms"].get("pairing_key")
    proof = body.get("proof")
    if not key:
        raise ApiError(
            403, "epoch_unproven", "this node is not paired with a CMS: it accepts no epoch"
        )
    expected = scram.epoch_proof(bytes.fromhex(key), epoch, st["serial"], action)
    if not isinstance(proof, str) or not scram.same(expected, proof):
        raise ApiError(
            403,
            "epoch_unproven",
            f"epoch {epoch} comes without the proof of the CMS this node is paired with",
        )


def _stale(epoch: int, newest: int, message: str | None = None) -> ApiError:
    return conflict(
        "stale_epoch",
        message or f"epoch {epoch} is older than the newest seen ({newest})",
        newest_epoch=newest,
    )


def _takeover_view(st: dict[str, Any]) -> dict[str, Any]:
    t = st.get("takeover")
    return TakeoverAnswer(
        epoch=st["epoch"],
        active=t is not None,
        on_behalf_of=OnBehalfOf(**t["on_behalf_of"]) if t else None,
        cameras=[c["id"] for c in t["cameras"]] if t else [],
    ).to_json()


def _license(body: dict[str, Any]) -> dict[str, Any]:
    key, cameras = body.get("key"), body.get("cameras", 1)
    if not isinstance(key, str) or not LICENSE_RE.match(key):
        raise bad_request("license key must be 4-64 letters, digits or '-'")
    if isinstance(cameras, bool) or not isinstance(cameras, int) or not 1 <= cameras <= 256:
        raise bad_request("cameras must be an integer between 1 and 256")
    return {"key": key, "cameras": cameras, "installed_at": iso(time.time())}
