"""The H5 page's herd: the public campaign view and the page itself, against ``/livez``.

The whole herd polls ``GET /api/campaigns/{id}/public`` and loads the page at T0, so both
must cost about what the gateway's cheapest answer costs. One gateway worker (pinned to
CPU 1, ``campaign_cache_ms`` at its default of a second) answers, in turn and ROUNDS times:
``/livez`` (the baseline: same process, same middleware, a fixed JSON answer), the public
view (from the worker's memory, the server time computed per request) and the page's HTML
(gzipped, from memory). wrk (one thread, 64 connections) shares CPU 0 with Redis. Figures
are printed and written to ``bench/out/public_bench.json``.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import statistics
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path

from bench.claim_bench import (
    ADMIN_TOKEN,
    DURATION_S,
    JWT_SECRET,
    OUT,
    POSTGRES_URL,
    ROUNDS,
    Run,
    gateway_env,
    publish,
    run_wrk,
    start_server,
    stop,
)
from gateway.infra.settings import Settings
from gateway.stack.servers import RedisServer, drop_database, free_port, scratch_database

BASELINE = "/livez (baseline)"


def get_script(path: str, gzip: bool = False) -> str:
    """A wrk script sending ``GET path`` (as a browser would, gzip accepted, if asked)."""
    headers = '{["Accept-Encoding"] = "gzip"}' if gzip else "{}"
    return f'request = function() return wrk.format("GET", "{path}", {headers}) end\n'


def main() -> int:
    """Run the three workloads, interleaved, and print requests/s and ratios."""
    work = Path(tempfile.mkdtemp(prefix="flashclaim-public-bench-"))
    redis = RedisServer(work).start()
    database_url = asyncio.run(scratch_database(POSTGRES_URL))
    settings = Settings.from_env(
        {},
        redis_url=redis.url,
        database_url=database_url,
        jwt_secret=JWT_SECRET,
        admin_token=ADMIN_TOKEN,
    )
    port = free_port()
    try:
        campaign_id = asyncio.run(publish(settings, stock=1000))
        workloads = {
            BASELINE: get_script("/livez"),
            "public view": get_script(f"/api/campaigns/{campaign_id}/public?channel=h5"),
            "H5 page (gzip)": get_script(f"/h5/{campaign_id}", gzip=True),
        }
        gateway = start_server(
            [sys.executable, "-m", "gateway.cli", "worker"], port, gateway_env(settings, port)
        )
        runs: list[Run] = []
        try:
            for round_ in range(-1, ROUNDS):  # round -1 warms up
                for name, script in workloads.items():
                    path = work / f"{round_}-{len(runs)}.lua"
                    path.write_text(script)
                    run = run_wrk(name, port, path, duration=2 if round_ < 0 else DURATION_S)
                    if round_ >= 0:
                        runs.append(run)
        finally:
            stop(gateway)
    finally:
        redis.stop()
        asyncio.run(drop_database(POSTGRES_URL, database_url))
        shutil.rmtree(work, ignore_errors=True)
    report(runs)
    return 0


def report(runs: list[Run]) -> None:
    """Median round per workload and its ratio to the baseline of the same round."""
    print(f"\nH5 herd bench: {ROUNDS} interleaved rounds, wrk 1 thread, 1 gateway worker\n")
    print(
        f"{'workload':<20}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'non-2xx':>9}{'ratio':>8}"
        "  ratio per round"
    )
    baselines = [run.requests_per_s for run in runs if run.name == BASELINE]
    for name in dict.fromkeys(run.name for run in runs):
        mine = [run for run in runs if run.name == name]
        ratios = [run.requests_per_s / base for run, base in zip(mine, baselines, strict=True)]
        median = sorted(mine, key=lambda run: run.requests_per_s)[len(mine) // 2]
        print(
            f"{name:<20}{median.requests_per_s:>10.0f}{median.p50_ms:>9.2f}{median.p99_ms:>9.2f}"
            f"{median.non_2xx:>9}{statistics.median(ratios):>8.2f}"
            f"  {' '.join(f'{ratio:.2f}' for ratio in ratios)}"
        )
    OUT.mkdir(exist_ok=True)
    (OUT / "public_bench.json").write_text(json.dumps([asdict(r) for r in runs], indent=2))


if __name__ == "__main__":
    sys.exit(main())
