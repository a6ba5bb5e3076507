"""A second opinion before failing over a recording server the CMS cannot reach.

The CMS may reach a site through NAT, a VPN or a relay; the site's failover servers
reach its recording servers over the site's own network. When the probes say a
recording server is disconnected, up to MAX_ASKED of its failover servers (enabled,
normal, in protection order) are asked to probe it at its LAN address (its /info
``lan``, or the address the CMS uses) with POST /peers/probe, all openings of a cycle
at once, within the team's probe timeout (SWIM's indirect probes):

- one of them reaches it with its serial: the fault lies between the CMS and the site.
  No failover; the server shows "Unreachable from the CMS" (one alert as it enters
  that status). It keeps the failure count of the probes, so the next cycles ask
  again while the CMS cannot reach it, and the cycle on which the failover servers
  stop reaching it too opens the failover (probing.apply_result);
- every failover server that answered says unreachable (or another serial answers):
  the failover opens;
- none could be asked or none answered: nothing opens. The CMS cannot reach the site
  at all, and failing over onto servers it cannot reach helps no one; the server's
  last error says so (the mass-failure guard alerts for the team).

A failover server's fault (it is slow, refuses, answers badly) counts as "did not
answer" and is confined to it. Volume and service faults are reported by the agent
itself: they need no second opinion.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from django.conf import settings as django_settings
from django.urls import reverse

from cms import alerts
from cms.alerts.kinds import Kind
from cms.inventory.choices import ConnectionType, HealthStatus
from cms.inventory.models import Server
from cms.nodes.client import client_for
from cms.nodes.directory import resolve
from cms.nodes.errors import NodeError
from protocol.limits import MAX_PEER_PROBE_SECONDS

from .choices import Trigger
from .models import Protection

if TYPE_CHECKING:
    from .gates import Opening
    from .models import TeamSettings

log = logging.getLogger(__name__)

MAX_ASKED = 3  # failover servers asked per recording server
MAX_THREADS = 32  # requests in flight at once, whatever the number of openings
# The whole second opinion ends this long after the longest team probe timeout: a
# request still running then counts as not answered.
MARGIN_SECONDS = 0.5


@dataclass
class Opinion:
    """What the failover servers asked about one recording server said."""

    asked: list[str] = field(default_factory=list)  # failover servers' names
    reached_by: list[str] = field(default_factory=list)
    not_reached_by: list[str] = field(default_factory=list)  # answered: unreachable
    silent: list[str] = field(default_factory=list)  # did not answer (any fault)

    @property
    def answered(self) -> bool:
        return bool(self.reached_by or self.not_reached_by)


def needs_opinion(opening: Opening) -> bool:
    return opening.trigger == Trigger.DISCONNECTED


def confirm(openings: Sequence[Opening], teams: TeamSettings) -> list[Opening]:
    """The openings whose failover should go ahead: those that need no second opinion,
    and those whose failover servers answered and none reached the server."""
    if not getattr(django_settings, "CMS_SECOND_OPINION", True):
        return list(openings)
    asking = [o for o in openings if needs_opinion(o)]
    if not asking:
        return list(openings)
    opinions = ask(asking, teams)
    admitted = []
    for opening in openings:
        if not needs_opinion(opening):
            admitted.append(opening)
            continue
        try:
            verdict = decide(opening, opinions[opening.server.pk])
        except Exception:
            # Held: an opening that cannot be judged is not failed over this cycle; the
            # next cycle asks again.
            log.exception("server %s (%s): second opinion failed", opening.server.pk,
                          opening.server.name)  # fmt: skip
            continue
        if verdict is not None:
            admitted.append(verdict)
    return admitted


def ask(openings: Sequence[Opening], teams: TeamSettings) -> dict[int, Opinion]:
    """Ask every opening's failover servers at once; one Opinion per recording server."""
    servers = [o.server for o in openings]
    opinions = {server.pk: Opinion() for server in servers}
    asked_of = failover_servers_of(servers)
    calls: list[tuple[int, int, str, Any, dict[str, Any]]] = []  # rank, server, asked, ...
    longest = 0.0
    for server in servers:
        timeout = teams.of(server.team_id).probe_timeout
        try:
            request = probe_request(server, timeout)
        except Exception as exc:  # a QuickConnect ID that resolves to nothing, say
            log.warning("server %s (%s): no address to probe: %s", server.pk, server.name, exc)
            continue
        for rank, failover in enumerate(asked_of.get(server.pk, [])):
            opinions[server.pk].asked.append(failover.name)
            try:
                client = client_for(failover, timeout=(timeout, timeout), deadline=timeout)
            except Exception:
                log.exception("failover server %s (%s): cannot build its client", failover.pk,
                              failover.name)  # fmt: skip
                opinions[server.pk].silent.append(failover.name)
                continue
            calls.append((rank, server.pk, failover.name, client, request))
            longest = max(longest, timeout)
    if not calls:
        return opinions
    # Every server's first failover server before anyone's second: when more calls than
    # threads do not all finish in time, each server still had one asked first.
    calls.sort(key=lambda call: call[0])
    pool = ThreadPoolExecutor(max_workers=min(MAX_THREADS, len(calls)),
                              thread_name_prefix="second-opinion")  # fmt: skip
    try:
        futures: dict[Future, tuple[int, str]] = {
            pool.submit(_probe, client, request): (server_id, name)
            for _, server_id, name, client, request in calls
        }
        done, _ = wait(futures, timeout=longest + MARGIN_SECONDS)
    finally:
        # Queued calls are dropped; running ones end by their own deadline.
        pool.shutdown(wait=False, cancel_futures=True)
    for future, (server_id, name) in futures.items():
        opinion = opinions[server_id]
        answer = future.result() if future in done and not future.cancelled() else None
        if answer is None:
            opinion.silent.append(name)
        elif answer:
            opinion.reached_by.append(name)
        else:
            opinion.not_reached_by.append(name)
    return opinions


def _probe(client: Any, request: dict[str, Any]) -> bool | None:
    """True: reached with the expected serial; False: not reached (or another serial);
    None: the failover server did not answer. Never raises."""
    try:
        answer = client.probe_peer(**request)
    except NodeError as exc:
        log.info("%s did not give a second opinion: %s", client, exc)
        return None
    except Exception:
        log.exception("%s: second opinion failed", client)
        return None
    expected = request["serial"]
    return bool(answer["reachable"]) and (expected == "-" or answer["serial"] == expected)


def failover_servers_of(servers: Sequence[Server]) -> dict[int, list[Server]]:
    """Up to MAX_ASKED enabled, normal failover servers per recording server, in
    protection order (one query)."""
    rows = (
        Protection.objects.filter(
            recording_server__in=[s.pk for s in servers],
            failover_server__enabled=True,
            failover_server__status=HealthStatus.NORMAL,
        )
        .select_related("failover_server")
        .order_by("recording_server_id", "priority", "pk")
    )
    found: dict[int, list[Server]] = defaultdict(list)
    for row in rows:
        if len(found[row.recording_server_id]) < MAX_ASKED:
            found[row.recording_server_id].append(row.failover_server)
    return found


def probe_request(server: Server, probe_timeout: float) -> dict[str, Any]:
    """What a failover server is asked: the server's LAN address, or the CMS's."""
    if server.lan_address:
        address, https = server.lan_address, server.use_https
    elif server.connection_type == ConnectionType.QUICKCONNECT:
        host, port = resolve(server.quickconnect_id)
        address, https = _join(host, port), False
    else:
        address, https = _join(server.host, server.port), server.use_https
    # The failover server's answer must come back within the CMS's own deadline.
    timeout = round(min(MAX_PEER_PROBE_SECONDS, max(0.1, probe_timeout / 2)), 3)
    # A server whose serial was never read: any node answering there counts.
    return {"address": address, "https": https, "serial": server.serial or "-",
            "timeout": timeout}  # fmt: skip


def _join(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def decide(opening: Opening, opinion: Opinion) -> Opening | None:
    """The opening to admit, or None (held; the server's status and last error say why)."""
    server = opening.server
    if opinion.reached_by:
        _mark(server, HealthStatus.UNREACHABLE_FROM_CMS,
              f"the CMS cannot reach it, but {', '.join(opinion.reached_by)} can: "
              "not failed over (a fault between the CMS and the site)")  # fmt: skip
        return None
    if opinion.answered:
        why = f"{', '.join(opinion.not_reached_by)} cannot reach it either"
        if server.status == HealthStatus.UNREACHABLE_FROM_CMS:
            _mark(server, HealthStatus.DISCONNECTED, f"{why}: failed over")
        return replace(opening, reason=f"{opening.reason}; {why}")
    if opinion.asked:
        held = f"no answer from {', '.join(opinion.asked)} either"
    else:
        held = "no failover server could be asked"
    _mark(server, server.status,
          f"the CMS cannot reach it and {held}: not failed over, as the CMS could not "
          "reach a failover server to take over")  # fmt: skip
    return None


def _mark(server: Server, status: str, error: str) -> None:
    """Write the server's status and last error when they change; alert as it enters
    UNREACHABLE_FROM_CMS."""
    error = error[:1000]
    entering = status == HealthStatus.UNREACHABLE_FROM_CMS != server.status
    if (server.status, server.last_error) == (status, error):
        return
    server.status, server.last_error = status, error
    Server.objects.filter(pk=server.pk).update(status=status, last_error=error)
    if entering:
        alerts.notify(
            server.team_id, Kind.UNREACHABLE_FROM_CMS,
            f"Unreachable from the CMS: {server.name}",
            f"The CMS cannot reach {server.name} ({server.address}), but its failover "
            f"servers can: {error}. Check the network between the CMS and the site.",
            url=reverse(f"admin:inventory_{server.role}server_change", args=[server.pk]),
        )  # fmt: skip
