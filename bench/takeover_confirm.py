"""From the takeover call to confirmed, on a real failover agent: the two ways.

    python bench/takeover_confirm.py --trials 5 [--cameras 2 --segment-seconds 1]

One failover agent; per trial, a takeover at a new epoch for a recording server of
``--cameras`` synthetic cameras, then a release. Timed from the call to confirmed:

* ``full``: the whole configuration in the call, confirmed when every camera has
  written a segment (the node's health asked every 250 ms): the CMS before the
  standby configurations;
* ``one_step``: the version of the standby configuration the agent holds, confirmed
  when every camera's source is open (asked every 50 ms): the CMS now
  (failover/engine.py: _take_over_on, _wait_until_open).

The pairing and the login are done before the first trial, as a CMS that has been
probing the failover server has them.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

from _harness import Processes, emit, log, machine, start_agent, summary

OWNER = {"id": "rs1", "name": "Lobby"}


def confirmed(client: Any, epoch: int, cameras: int, ready: str) -> bool:
    recording = client.health()["recording"]
    ours = [c for c in recording["cameras"] if c.get("on_behalf_of") == OWNER["id"]]
    return (
        recording.get("takeover_epoch") == epoch
        and len(ours) >= cameras
        and all(c.get(ready) for c in ours)
    )


def one_trial(client: Any, epoch: int, args: argparse.Namespace, way: str, config: dict) -> float:
    started = time.monotonic()
    if way == "one_step":
        client.takeover(epoch, OWNER, config_version=config["version"])
        ready, interval = "open", 0.05
    else:
        client.takeover(epoch, OWNER, config)
        ready, interval = "segments", 0.25
    while not confirmed(client, epoch, args.cameras, ready):
        if time.monotonic() - started > 30:
            raise RuntimeError(f"{way}: not confirmed within 30 s")
        time.sleep(interval)
    seconds = time.monotonic() - started
    client.release(epoch)
    # Until the cameras are gone, the next takeover would find them still recording.
    while client.health()["recording"]["cameras"]:
        time.sleep(0.05)
    return seconds


def main() -> int:
    parser = argparse.ArgumentParser(description="takeover call -> confirmed")
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--cameras", type=int, default=2)
    parser.add_argument("--segment-seconds", type=float, default=1.0)
    args = parser.parse_args()
    procs = Processes()
    config = {
        "version": "1",
        "cameras": [
            {"id": f"cam{i + 1}", "name": f"Camera {i + 1}", "source": "synthetic"}
            for i in range(args.cameras)
        ],
    }
    results: dict[str, list[float]] = {"full": [], "one_step": []}
    try:
        with tempfile.TemporaryDirectory(prefix="bench-takeover-") as tmp:
            agent = start_agent(
                procs,
                Path(tmp) / "standby",
                mode="failover",
                name="standby",
                segment_seconds=args.segment_seconds,
            )
            client = agent.client()
            client.ensure_paired()
            client.put_standby(OWNER["id"], OWNER["name"], config)
            epoch = 0
            for n in range(args.trials):
                for way in ("full", "one_step"):
                    epoch += 1
                    seconds = one_trial(client, epoch, args, way, config)
                    results[way].append(seconds)
                    log(f"trial {n + 1}: {way} {seconds:.3f} s")
    finally:
        procs.stop_all()
    emit(
        {
            "benchmark": "takeover_confirm",
            "cameras": args.cameras,
            "segment_seconds": args.segment_seconds,
            "full_configuration_until_segments_s": summary(results["full"]),
            "one_step_until_open_s": summary(results["one_step"]),
            "machine": machine(),
        }
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
