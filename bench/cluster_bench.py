"""``make bench``: claims on a local Redis Cluster, and what ``WAIT`` durability costs.

One run, one machine, interleaved rounds (``BENCH_ROUNDS``, 3; ``BENCH_DURATION`` s, 6),
each workload a gateway worker of its own pinned to CPU 1, wrk (1 thread, 64 connections)
and the Redis nodes on CPU 0, all claims accepting (stock to spare):

1. cluster          the claim path's own connections, routed per slot (``ClusterWire``);
2. cluster + WAIT   the same, each accepting batch waiting for 1 replica's
                    acknowledgement (``FLASHCLAIM_REDIS_WAIT_REPLICAS=1``);
3. cluster, redis-py  redis-py's cluster client on the claim path instead
                    (``FLASHCLAIM_CLAIM_LEAN_REDIS=false``): which costs less;
4. one Redis        the claim path's one connection to a lone Redis (no cluster).

Ratios are to workload 1 of the same round. The cluster is 3 masters + 3 replicas with
AOF (``appendfsync everysec``), as the tests run it; the campaign's keys sit on one master.
Figures are printed and written to ``bench/out/cluster_bench.json``.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import shutil
import statistics
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

import msgspec

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
    wrk_script,
)
from gateway.infra.settings import Settings
from gateway.stack.servers import (
    RedisClusterServers,
    RedisServer,
    drop_database,
    free_port,
    scratch_database,
)

BASE = "cluster"
WORKLOADS: dict[str, dict[str, Any]] = {
    BASE: {},
    "cluster + WAIT 1 replica": {"redis_wait_replicas": 1},
    "cluster, redis-py client": {"claim_lean_redis": False},
}
SINGLE = "one Redis (no cluster)"


def main() -> int:
    """Start the cluster and a lone Redis, run the workloads interleaved, print the table."""
    work = Path(tempfile.mkdtemp(prefix="flashclaim-cluster-bench-"))
    cluster = RedisClusterServers(work / "cluster").start()
    single = RedisServer(work / "single", aof=True, fsync="everysec").start()
    database_url = asyncio.run(scratch_database(POSTGRES_URL))
    base = Settings.from_env(
        {},
        redis_url=cluster.url,
        redis_cluster=True,
        database_url=database_url,
        jwt_secret=JWT_SECRET,
        admin_token=ADMIN_TOKEN,
    )
    try:
        runs = bench(
            base, msgspec.structs.replace(base, redis_url=single.url, redis_cluster=False), work
        )
    finally:
        cluster.stop()
        single.stop()
        asyncio.run(drop_database(POSTGRES_URL, database_url))
        shutil.rmtree(work, ignore_errors=True)
    report(runs)
    return 0


def bench(on_cluster: Settings, on_single: Settings, work: Path) -> list[Run]:
    """Every workload once per round, after a warm-up round."""
    campaigns = {
        BASE: asyncio.run(publish(on_cluster, stock=100_000_000)),
        SINGLE: asyncio.run(publish(on_single, stock=100_000_000)),
    }
    servers = {}
    try:
        for name, overrides in WORKLOADS.items():
            port = free_port()
            env = gateway_env(on_cluster, port, metrics_port=0, **overrides)
            servers[name] = (
                port,
                start_server([sys.executable, "-m", "gateway.cli", "worker"], port, env),
            )
        port = free_port()
        env = gateway_env(on_single, port, metrics_port=0)
        servers[SINGLE] = (
            port,
            start_server([sys.executable, "-m", "gateway.cli", "worker"], port, env),
        )
        runs: list[Run] = []
        for round_ in range(-1, ROUNDS):
            for name, (port, _) in servers.items():
                campaign = campaigns[SINGLE if name == SINGLE else BASE]
                script = work / f"{round_}-{port}.lua"
                script.write_text(wrk_script(campaign, secrets.token_hex(4)))
                run = run_wrk(name, port, script, duration=2 if round_ < 0 else DURATION_S)
                if round_ >= 0:
                    runs.append(run)
        return runs
    finally:
        for _, process in servers.values():
            stop(process)


def report(runs: list[Run]) -> None:
    """Median round per workload and its per-round ratio to the cluster baseline."""
    print(
        f"\nflashclaim cluster bench: {ROUNDS} interleaved rounds of {DURATION_S}s, claims"
        " accepting, 1 gateway worker each; cluster 3 masters + 3 replicas, AOF everysec\n"
    )
    baselines = [run.requests_per_s for run in runs if run.name == BASE]
    print(
        f"{'workload':<30}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'non-2xx':>10}{'ratio':>8}"
        "  per round"
    )
    for name in dict.fromkeys(run.name for run in runs):
        mine = [run for run in runs if run.name == name]
        ratios = [run.requests_per_s / b for run, b in zip(mine, baselines, strict=True)]
        middle = sorted(mine, key=lambda r: r.requests_per_s)[len(mine) // 2]
        print(
            f"{name:<30}{middle.requests_per_s:>10.0f}{middle.p50_ms:>9.2f}{middle.p99_ms:>9.2f}"
            f"{middle.non_2xx:>10}{statistics.median(ratios):>8.2f}  "
            + " ".join(f"{r:.2f}" for r in ratios)
        )
    OUT.mkdir(exist_ok=True)
    (OUT / "cluster_bench.json").write_text(json.dumps([asdict(r) for r in runs], indent=2))


if __name__ == "__main__":
    sys.exit(main())
