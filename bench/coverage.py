"""Coverage per camera: the work of one request, and of reading a long period page by page.

A real agent records two synthetic cameras in short segments until it holds more files
than one request reads (`failover.coverage.PAGES` pages of `PAGE_ITEMS`); then the
period is read the way the API and the admin page read it, following `next`. Reports
the seconds of each request, the files each one read, and how many requests the
period took. One JSON object on the last line of stdout.

    python bench/coverage.py [--seconds 60] [--segment-seconds 0.05] [--rounds 5]
"""

from __future__ import annotations

import argparse
import datetime as dt
import tempfile
import time
from pathlib import Path
from typing import Any

from _harness import (
    AGENT_PASSWORD,
    Database,
    Processes,
    cms_env,
    emit,
    log,
    machine,
    setup_django,
    start_agent,
    summary,
)


def read_period(server: Any, since: dt.datetime, until: dt.datetime) -> dict[str, Any]:
    from failover import coverage

    times, files, requests = [], [], 0
    start: dt.datetime | None = since
    while start is not None:
        began = time.perf_counter()
        found = coverage.coverage(server, start, until)
        times.append(time.perf_counter() - began)
        files.append(sum(s.files for s in found.sources))
        requests += 1
        start = found.next
    return {"requests": requests, "seconds": times, "files": files}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="recording time")
    parser.add_argument("--segment-seconds", type=float, default=0.05)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    procs = Processes()
    with tempfile.TemporaryDirectory(prefix="bench-coverage-") as tmp:
        folder = Path(tmp)
        db = Database(None, folder)
        try:
            setup_django(cms_env(folder / "var", db.url, "memory://", "bench-coverage"))
            from cms.inventory.models import Server, Team
            from failover import coverage

            agent = start_agent(procs, folder / "lobby", mode="recording", name="lobby",
                                cameras=2, segment_seconds=args.segment_seconds)  # fmt: skip
            team = Team.objects.create(name="Bench")
            server = Server.objects.create(team=team, role="recording", name="Lobby",
                                           host=agent.host, port=agent.port,
                                           admin_password=AGENT_PASSWORD)  # fmt: skip
            since = dt.datetime.now(dt.UTC)
            log(f"recording for {args.seconds:.0f} s in {args.segment_seconds} s segments")
            time.sleep(args.seconds)
            until = dt.datetime.now(dt.UTC)
            held = sum(
                1 for _ in agent.client().list_recordings(kind="recording", since=since.isoformat(),
                                                          until=until.isoformat())
            )  # fmt: skip
            per_request = coverage.PAGES * coverage.PAGE_ITEMS
            log(f"{held} files held; one request reads at most {per_request} a node")
            rounds = [read_period(server, since, until) for _ in range(args.rounds)]
            seconds = [t for r in rounds for t in r["seconds"]]
            emit({
                "benchmark": "coverage",
                "files_held": held,
                "files_per_request_max": per_request,
                "requests_per_period": rounds[0]["requests"],
                "files_read_per_request": summary([f for r in rounds for f in r["files"]]),
                "seconds_per_request": summary(seconds),
                "seconds_per_period": summary([sum(r["seconds"]) for r in rounds]),
                "machine": machine(),
            })  # fmt: skip
        finally:
            procs.stop_all()
            db.drop()


if __name__ == "__main__":
    main()
