"""The node's answers as pydantic models: the schema both sides agree on.

The agent builds its answers from these models where it can; the CMS validates every
answer it reads against them before looking inside (docs/node-api.md). Models are
strict: a number sent as a string is a wrong answer, not something to guess about.
Unknown fields are ignored, so a newer agent may add some without breaking an older
CMS; a missing or mistyped field the CMS relies on is refused.

Lists are bounded (``max_length``): with the size cap on the body that keeps one
answer's cost small whatever a node sends.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_serializer

from .limits import (
    MAX_ADDRESS_CHARS,
    MAX_CAMERAS,
    MAX_LAN_ADDRESSES,
    MAX_LICENSES,
    MAX_PAGE_ITEMS,
    MAX_RECORDING_CAMERAS,
    MAX_STANDBY,
    MAX_TOKEN_TTL,
)

CmsMode = Literal["recording", "failover", "standalone"]
Name = Annotated[str, Field(max_length=256)]
Count = Annotated[int, Field(ge=0)]
Version = Annotated[int, Field(ge=0, lt=2**63)]  # stored as text of at most 64 characters
Address = Annotated[str, Field(min_length=3, max_length=MAX_ADDRESS_CHARS)]  # host:port


class Answer(BaseModel):
    """Base of every message: strict types, unknown fields ignored, frozen once read."""

    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)

    def to_json(self) -> dict:
        """The JSON object to send (the agent) or to hand on as a plain dict (the CMS)."""
        return self.model_dump(mode="json")


# -- errors ---------------------------------------------------------------------------


class ErrorDetail(Answer):
    # Refusals may add fields (newest_epoch, offset, retry_after): kept, not required.
    model_config = ConfigDict(strict=True, extra="allow", frozen=True)

    code: Annotated[str, Field(min_length=1, max_length=64)]
    message: Annotated[str, Field(max_length=2000)] = ""


class ErrorAnswer(Answer):
    """Every refusal: ``{"error": {"code", "message", ...}}`` with a 4xx/5xx status."""

    error: ErrorDetail


# -- identity ---------------------------------------------------------------------------


class Info(Answer):
    """``GET /info`` (no login): who the node is."""

    name: Name
    model: Name
    serial: Annotated[str, Field(min_length=1, max_length=64)]
    version: Name = ""
    api_version: Name = ""
    cms_mode: CmsMode
    cms_enabled: bool | None = None
    paired: bool | None = None
    locked: bool | None = None
    https: bool | None = None
    quickconnect_id: Name | None = None
    # Where the agent listens on its site's network ("host:port"): what a failover
    # server on the same network probes (POST /peers/probe). Absent from older agents.
    lan: Annotated[list[Address], Field(max_length=MAX_LAN_ADDRESSES)] | None = None


class DiscoverySearch(Answer):
    """The LAN search datagram the CMS broadcasts."""

    type: Literal["cms-node-search"]
    v: int = 1
    nonce: Annotated[str, Field(max_length=64)]
    # The searching CMS host's id (X-CMS-Host): the node answers whether it is paired
    # with another host than this one. A label, not a credential.
    host: Annotated[str, Field(max_length=64)] | None = None


class DiscoveryAnswer(Answer):
    """A node's unicast answer to a LAN search (at most 1 KiB)."""

    type: Literal["cms-node-here"]
    v: int = 1
    nonce: Annotated[str, Field(max_length=64)]
    name: Name
    model: Name
    serial: Annotated[str, Field(min_length=1, max_length=64)]
    version: Name
    address: Name | None = None  # None: the searcher uses the datagram's source address
    port: Annotated[int, Field(ge=1, le=65535)]
    https: bool
    cms_mode: CmsMode
    cms_enabled: bool
    # Booleans only: who the node is paired with and its pairing key stay on the node.
    # None: an older node that does not say.
    paired_elsewhere: bool | None = None  # paired with (managed by) another CMS host
    locked: bool | None = None  # security lock on (refuses other hosts or local changes)


class LoginAnswer(Answer):
    """A session token (the end of a login)."""

    token: Annotated[str, Field(min_length=1, max_length=4096)]
    expires_in: Annotated[float, Field(gt=0, le=MAX_TOKEN_TTL)] = 3600.0

    @field_serializer("expires_in")
    def _whole_seconds(self, value: float) -> int | float:
        return int(value) if value.is_integer() else value


class ScramStartAnswer(Answer):
    """``POST /auth/scram/start``: the node's SCRAM server-first message."""

    session: Annotated[str, Field(min_length=1, max_length=128)]
    server_first: Annotated[str, Field(min_length=1, max_length=1024)]
    serial: Annotated[str, Field(min_length=1, max_length=64)] | None = None


class ScramFinishAnswer(LoginAnswer):
    """``POST /auth/scram/finish``: the node's proof (server-final) and the token."""

    server_final: Annotated[str, Field(min_length=1, max_length=1024)]


# -- health -----------------------------------------------------------------------------


class Volume(Answer):
    state: Literal["normal", "degraded", "crashed"]
    free_bytes: Count = 0
    total_bytes: Count = 0


class Service(Answer):
    state: Literal["running", "stopped", "error"]


class Faults(Answer):
    volume: bool = False
    service: bool = False


class Capacity(Answer):
    """What a node can carry: the most cameras it records at once (its own and a
    takeover's together), and the cameras its installed licenses cover."""

    cameras: Count
    licensed_cameras: Count = 0


class OnBehalfOf(Answer):
    """The recording server a failover node records for: the CMS's tag and its name."""

    id: Annotated[str, Field(min_length=1, max_length=64)]
    name: Name = ""


OwnerId = Annotated[str, Field(min_length=1, max_length=64)]
StandbyVersion = Annotated[str, Field(min_length=1, max_length=64)]


class CameraStatus(Answer):
    id: Annotated[str, Field(min_length=1, max_length=64)]
    name: Name = ""
    origin: Literal["own", "failover"]
    on_behalf_of: Annotated[str, Field(max_length=64)] | None = None
    state: Literal["starting", "recording", "paused", "idle", "error"]
    error: Annotated[str, Field(max_length=2000)] | None = None
    last_segment_at: Name | None = None
    segments: Count = 0
    # Whether the camera's source is open for this recording, and since when; None: an
    # older agent, which the CMS confirms by its first segment instead.
    open: bool | None = None
    opened_at: Name | None = None


class RecordingStatus(Answer):
    cameras: Annotated[list[CameraStatus], Field(max_length=MAX_RECORDING_CAMERAS)] = []
    on_behalf_of: OnBehalfOf | None = None
    takeover_epoch: int | None = None


class Health(Answer):
    """``GET /health``: what the probe reads every interval."""

    state: Literal["normal", "degraded", "abnormal"]
    volume: Volume
    service: Service
    faults: Faults = Faults()
    recording: RecordingStatus = RecordingStatus()
    epoch: Count = 0
    cms_mode: CmsMode | None = None
    # None: an older agent; the CMS then reads /config every cycle
    config_version: Version | None = None
    time: Name | None = None
    # None: an older agent, whose capacity is unknown
    capacity: Capacity | None = None
    # The standby configurations held, owner id -> version; None: an older agent, which
    # holds none (every takeover carries the whole configuration)
    standby: Annotated[dict[OwnerId, StandbyVersion], Field(max_length=MAX_STANDBY)] | None = None
    # Peer probes made on the CMS's behalf since the agent started (POST /peers/probe)
    peer_probes: Count | None = None


class Heartbeat(Answer):
    """``GET /watch``'s ``heartbeat`` event: the node is alive, at its time, the n-th beat."""

    time: Name
    seq: Count


# -- configuration ------------------------------------------------------------------------


class ScheduleWindow(Answer):
    days: Annotated[list[Annotated[int, Field(ge=0, le=6)]], Field(max_length=7)] = [
        0, 1, 2, 3, 4, 5, 6,
    ]  # fmt: skip
    start: Annotated[str, Field(max_length=5)]
    end: Annotated[str, Field(max_length=5)]


Schedule = Literal["always", "never"] | Annotated[list[ScheduleWindow], Field(max_length=64)]


class Camera(Answer):
    """A camera of the surveillance configuration (the node checks the values in full)."""

    # Kept whole: a field a newer agent adds must survive the failover snapshot.
    model_config = ConfigDict(strict=True, extra="allow", frozen=True)

    id: Annotated[str, Field(min_length=1, max_length=64)]
    name: Name = ""
    source: Annotated[str, Field(max_length=512)] = "synthetic"
    schedule: Schedule = "always"
    retention_days: Annotated[int, Field(ge=1, le=3650)] = 30


class Config(Answer):
    """``GET /config`` and ``PUT /config``: the configuration the CMS snapshots."""

    version: Version
    cameras: Annotated[list[Camera], Field(max_length=MAX_CAMERAS)]

    def to_json(self) -> dict:
        # Only what the node sent: a default filled in here (an empty name) would be
        # refused by the failover node this configuration is pushed to.
        return self.model_dump(mode="json", exclude_unset=True)


# -- failover -------------------------------------------------------------------------------


class TakeoverAnswer(Answer):
    """``POST /takeover`` and ``POST /release``."""

    epoch: Count
    active: bool
    on_behalf_of: OnBehalfOf | None = None
    cameras: Annotated[list[Annotated[str, Field(max_length=64)]], Field(max_length=MAX_CAMERAS)]


class StandbyEntry(Answer):
    """``PUT /standby/<owner>``, and one item of ``GET /standby``: a configuration the
    failover node holds for a recording server (the configuration itself stays there)."""

    id: OwnerId
    name: Name = ""
    version: StandbyVersion


class StandbyList(Answer):
    """``GET /standby``."""

    items: Annotated[list[StandbyEntry], Field(max_length=MAX_STANDBY)]


class PurgeAnswer(Answer):
    """``POST /recordings/purge``: how many files it removed, how many it could not, and
    why (the first reason). An older agent sends ``deleted`` alone."""

    deleted: Count
    failed: Count = 0
    error: Annotated[str, Field(max_length=2000)] = ""


# -- recordings and uploads -------------------------------------------------------------------


class RecordingItem(Answer):
    path: Annotated[str, Field(min_length=1, max_length=1024)]
    kind: Literal["recording", "snapshot"]
    camera: Annotated[str, Field(max_length=64)]
    origin: Literal["own", "failover"]
    on_behalf_of: Annotated[str, Field(max_length=64)] | None = None
    start: Name
    end: Name
    size: Count
    sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]


class RecordingsPage(Answer):
    """``GET /recordings``: one page of a keyset-paginated listing."""

    items: Annotated[list[RecordingItem], Field(max_length=MAX_PAGE_ITEMS)]
    next: Annotated[str, Field(max_length=1024)] | None = None


class UploadStatus(Answer):
    """``POST /uploads``, ``PATCH``/``GET /uploads/<id>``: where an upload stands."""

    id: Annotated[str, Field(max_length=128)] | None
    offset: Count = 0
    complete: bool
    path: Annotated[str, Field(max_length=1024)] | None = None
    size: Count | None = None


class PulledFile(Answer):
    path: Annotated[str, Field(max_length=1024)]
    state: Literal["pending", "copying", "done", "failed", "cancelled"]
    bytes: Count = 0
    stored_as: Annotated[str, Field(max_length=1024)] = ""
    error: Annotated[str, Field(max_length=2000)] = ""


class PullStatus(Answer):
    """``POST /pulls``, ``GET /pulls/<id>``: a recording agent's download of restored files
    straight from a failover agent, file by file."""

    id: Annotated[str, Field(max_length=64)]
    state: Literal["running", "done", "failed", "cancelled"]
    files: Annotated[list[PulledFile], Field(max_length=10_000)]
    bytes: Count = 0
    version: Count = 0  # moves on when a file or the pull ends


# -- licenses and the CMS service -------------------------------------------------------------


class License(Answer):
    key: Annotated[str, Field(min_length=1, max_length=64)]
    cameras: Annotated[int, Field(ge=1)]
    installed_at: Name | None = None


class Licenses(Answer):
    """``GET /licenses`` and ``PUT /licenses``."""

    licenses: Annotated[list[License], Field(max_length=MAX_LICENSES)]
    total_cameras: Count = 0


class FaultsAnswer(Answer):
    """``POST /fault`` (demos and tests)."""

    faults: Faults


class PeerProbeAnswer(Answer):
    """``POST /peers/probe``: whether this node reached another node's ``/info``."""

    reachable: bool
    serial: Annotated[str, Field(max_length=64)] | None = None
    latency_ms: Annotated[float, Field(ge=0)] | None = None
    error: Annotated[str, Field(max_length=300)] = ""
