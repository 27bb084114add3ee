"""``make bench``'s further claim figures, run against the gateway ``claim_bench`` started.

- latency at half the peak: accepting claims offered at half the median accepting rate
  just measured (wrk's per-connection ``delay()``: 64 connections each waiting
  64 / rate seconds between requests), so p99 is a latency under load, not a queue;
- ``PROFILE=1``: a py-spy flame graph (SVG) of the gateway during one accepting run, in
  ``bench/out/``;
- worker memory after a herd of ``BENCH_HERD_USERS`` distinct users (100,000) on the
  sold-out campaign for ``BENCH_HERD_S`` seconds (60): resident memory (RSS, summed over
  the gateway's processes) before and after, which the caches must keep bounded.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

HERD_USERS = int(os.environ.get("BENCH_HERD_USERS", "100000"))
HERD_S = int(os.environ.get("BENCH_HERD_S", "60"))
PROFILE = os.environ.get("PROFILE", "") not in ("", "0")
OUT = Path(__file__).resolve().parent / "out"


def delay_ms(rate_per_s: float, connections: int) -> float:
    """wrk's per-request delay on each of ``connections`` for ``rate_per_s`` in total."""
    return 1000.0 * connections / max(rate_per_s, 1.0)


def rss_kib(pid: int) -> int:
    """Resident memory of ``pid`` and all its descendants, KiB."""
    total = 0
    for proc in _tree(pid):
        try:
            status = Path(f"/proc/{proc}/status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total


def _tree(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        for task in Path(f"/proc/{current}/task").glob("*"):
            try:
                children = (task / "children").read_text().split()
            except OSError:
                continue
            todo += [int(child) for child in children]
    return found


def profile(pid: int, name: str, seconds: int, run: Callable[[], object]) -> Path | None:
    """Record a py-spy flame graph of ``pid`` (and its children) while ``run`` runs."""
    if not PROFILE:
        return None
    OUT.mkdir(exist_ok=True)
    svg = OUT / f"{name}.svg"
    spy = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "py-spy"),
            "record",
            "--subprocesses",
            "--nonblocking",
            "--pid",
            str(pid),
            "--duration",
            str(seconds),
            "--output",
            str(svg),
            "--format",
            "flamegraph",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(0.5)  # attached before the load starts
    run()
    spy.wait(timeout=seconds + 30)
    return svg if svg.exists() else None
