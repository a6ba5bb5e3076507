"""Admin and API list pages with a large fleet: queries and time per page.

    python bench/admin_pages.py --servers 10000 [--rounds 5] [--database-url URL]

In a fresh database, registers servers in two steps (100, then --servers in all;
one in ten a failover server protecting nine recording servers, with events,
restorations and licenses in proportion) and, at each size, renders every list
page an operator watches through Django's test client as a logged-in superuser:
the dashboard, both server tabs (plain and filtered by status), the event list,
the live-status poll and the API's server list. Per page: the number of SQL
queries (CaptureQueriesContext) and the render time over --rounds. The query
counts must not grow with the fleet; the time is what a page costs the web process.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

from _harness import AGENT_PASSWORD, Database, cms_env, emit, log, machine, setup_django, summary

SMALL = 100


def populate(upto: int, start: int) -> None:
    """Servers start..upto-1, with their protection, events, restorations, licenses."""
    from cms.inventory.models import License, Server, Team
    from failover.models import FailoverEvent, Protection, RestorationJob

    team = Team.objects.get_or_create(name="Bench")[0]
    rows = []
    for i in range(start, upto):
        rows.append(Server(
            team=team, role="failover" if i % 10 == 0 else "recording", name=f"S-{i}",
            host=f"10.{i // 65536 % 256}.{i // 256 % 256}.{i % 256}", port=5000,
            admin_password=AGENT_PASSWORD, status=["normal", "normal", "disconnected"][i % 3],
        ))  # fmt: skip
    Server.objects.bulk_create(rows, batch_size=1000)
    created = list(Server.objects.filter(name__in=[r.name for r in rows]).order_by("pk"))
    failovers = [s for s in created if s.role == "failover"]
    recordings = [s for s in created if s.role == "recording"]
    Protection.objects.bulk_create([
        Protection(recording_server=r, failover_server=failovers[n // 9 % len(failovers)])
        for n, r in enumerate(recordings)
    ], batch_size=1000)  # fmt: skip
    License.objects.bulk_create([
        License(key=f"BNCH-{i:04X}-{i * 7 % 65536:04X}", team=team, server=r, cameras=4)
        for i, r in zip(range(start, upto), recordings, strict=False)
    ], batch_size=1000)  # fmt: skip
    # One event in ten recording servers, half of them finished, some restoring.
    events = []
    for n, r in enumerate(recordings[::10]):
        fo = failovers[n % len(failovers)]
        state = ["active", "completed", "restoring", "completed"][n % 4]
        events.append(FailoverEvent(
            team=team, recording_server=r, recording_server_name=r.name, failover_server=fo,
            failover_server_name=fo.name, trigger="disconnection", state=state,
            node_tag=f"rs{r.pk}",
        ))  # fmt: skip
    FailoverEvent.objects.bulk_create(events, batch_size=1000)
    RestorationJob.objects.bulk_create([
        RestorationJob(event=e, state="running", files_total=100, bytes_total=10**9)
        for e in FailoverEvent.objects.filter(state="restoring", restoration__isnull=True)
    ], batch_size=1000)  # fmt: skip


def pages() -> dict[str, str]:
    from cms.inventory.models import Server
    from failover.models import RestorationJob

    first_page = Server.objects.order_by("name").values_list("pk", flat=True)[:100]
    ids = ",".join(str(pk) for pk in first_page)
    jobs = ",".join(str(pk) for pk in RestorationJob.objects.values_list("pk", flat=True)[:20])
    return {
        "dashboard": "/admin/",
        "recording_servers": "/admin/inventory/recordingserver/",
        "failover_servers": "/admin/inventory/failoverserver/",
        "failover_servers_acting": "/admin/inventory/failoverserver/?duty=acting",
        "events": "/admin/failover/failoverevent/",
        "live_status_poll": f"/admin/failover/failoverevent/live-status/?servers={ids}&jobs={jobs}",
        "api_recording_servers": "/api/v1/recording-servers/?limit=100",
    }


def measure(client: Any, rounds: int) -> dict[str, Any]:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    result = {}
    for name, url in pages().items():
        times, queries, size = [], None, 0
        for _ in range(rounds):
            with CaptureQueriesContext(connection) as ctx:
                started = time.perf_counter()
                response = client.get(url, HTTP_HOST="127.0.0.1")
                times.append(time.perf_counter() - started)
            if response.status_code != 200:
                raise RuntimeError(f"{url}: HTTP {response.status_code}")
            queries, size = len(ctx.captured_queries), len(response.content)
        result[name] = {"queries": queries, "bytes": size, "seconds": summary(times)}
        log(f"  {name}: {queries} queries, p50 {result[name]['seconds']['p50']} s")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--servers", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--database-url", help="PostgreSQL server to create a fresh db on")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-admin-") as tmp:
        folder = Path(tmp)
        db = Database(args.database_url, folder)
        try:
            setup_django(cms_env(folder / "var", db.url, "memory://", "bench-admin"))
            from django.contrib.auth import get_user_model
            from django.test import Client

            user = get_user_model().objects.create_superuser("bench", password=AGENT_PASSWORD)
            client = Client()
            client.force_login(user)
            sizes = {}
            for size, start in ((SMALL, 0), (args.servers, SMALL)):
                log(f"{size} servers")
                populate(size, start)
                sizes[str(size)] = measure(client, args.rounds)
            small, large = sizes[str(SMALL)], sizes[str(args.servers)]
            emit({
                "benchmark": "admin_pages", "database": db.kind, "servers": args.servers,
                "rounds": args.rounds, "pages": sizes,
                "constant_queries": all(small[p]["queries"] == large[p]["queries"] for p in small),
                "machine": machine(),
            })  # fmt: skip
        finally:
            db.drop()


if __name__ == "__main__":
    main()
