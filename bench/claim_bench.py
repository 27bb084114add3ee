"""``make bench``: claim throughput against an aiohttp hello-world, measured by wrk.

Everything is measured in one run on one machine, so the ratios hold even when the
absolute figures move with the machine's load:

1. baseline   an aiohttp + uvloop server that reads a JSON POST and answers JSON;
2. accepting  claims to a campaign with stock to spare: every request wins a coupon
              (one Lua decision per batch, replay record and outbox entry written);
3. sold out   the herd after the last coupon: answered from the worker's memory plus
              one read of the batch's replay records.

Each server is one process pinned to CPU 1; wrk (one thread, 64 connections) and Redis
(AOF, ``appendfsync everysec``) share CPU 0. The three workloads run in turn, ROUNDS times
(``BENCH_ROUNDS``, 3; ``BENCH_DURATION`` seconds each, 6), so every round's ratios compare
runs seconds apart; the table shows the median round and each round's ratio. The figures
are printed and written to ``bench/out/claim_bench.json``.

Then, against the same gateway (``bench/claim_extras.py``): accepting claims at half the
peak just measured (p99 under load), ``PROFILE=1``'s flame graph, and the gateway's memory
after a herd of 100,000 distinct users. ``BENCH_WORKERS=2`` runs the gateway as two
worker processes (``flashclaim serve``, both CPUs) for the scaling figure.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec

from bench import claim_extras as extras
from gateway.campaigns.ops import CampaignOps
from gateway.campaigns.spec import decode_spec
from gateway.campaigns.store import CampaignStore
from gateway.infra import clients
from gateway.infra.auth import mint
from gateway.infra.clients import redis_client
from gateway.infra.clock import SystemClock
from gateway.infra.settings import Settings, to_env
from gateway.stack.servers import (
    RedisServer,
    drop_database,
    free_port,
    scratch_database,
    wait_for_port,
)

POSTGRES_URL = "postgresql://127.0.0.1:5432/postgres"
DURATION_S = int(os.environ.get("BENCH_DURATION", "6"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
WORKERS = int(os.environ.get("BENCH_WORKERS", "1"))
HALF_PEAK = "claims, accepting at half the peak rate"
BASELINE = "hello-world baseline"
CONNECTIONS = 64
USERS = 2000
JWT_SECRET = secrets.token_hex(24)
ADMIN_TOKEN = secrets.token_hex(24)
OUT = Path(__file__).resolve().parent / "out"


@dataclass
class Run:
    """What wrk measured for one server and workload."""

    name: str
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    non_2xx: int
    requests: int


def wrk_script(
    campaign_id: str, run_id: str, users: int = USERS, delay_ms: float | None = None
) -> str:
    """A wrk Lua script posting claims from ``users`` users, each request a new requestId
    (with ``delay_ms``: each connection waits that long between requests)."""
    now = int(time.time())
    tokens = ",\n".join(
        f'"{mint(JWT_SECRET, f"bench-{n}", expires_s=now + 3600)}"' for n in range(users)
    )
    delay = f"delay = function() return {delay_ms:.3f} end" if delay_ms else ""
    return f"""
{delay}
local tokens = {{ {tokens} }}
local counter = 0
request = function()
  counter = counter + 1
  local u = counter % #tokens + 1
  local body = string.format(
    '{{"campaignId":"{campaign_id}","requestId":"{run_id}-%d","deviceId":"dev-%d","channel":"seckill"}}',
    counter, u)
  return wrk.format("POST", "/api/coupon/issue",
    {{["Authorization"] = "Bearer " .. tokens[u], ["Content-Type"] = "application/json"}}, body)
end
"""


def run_wrk(name: str, port: int, script: Path, duration: int = DURATION_S) -> Run:
    """Drive ``port`` with wrk for ``duration`` seconds; parse its report."""
    out = subprocess.run(
        [
            "taskset",
            "-c",
            "0",
            "wrk",
            "-t1",
            f"-c{CONNECTIONS}",
            f"-d{duration}s",
            "--latency",
            "-s",
            str(script),
            f"http://127.0.0.1:{port}/api/coupon/issue",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return Run(
        name=name,
        requests_per_s=float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),  # type: ignore[union-attr]
        p50_ms=_latency(out, "50%"),
        p99_ms=_latency(out, "99%"),
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
        requests=int(re.search(r"(\d+) requests in", out).group(1)),  # type: ignore[union-attr]
    )


def _latency(report: str, percentile: str) -> float:
    value, unit = re.search(rf"{percentile}\s+([\d.]+)(us|ms|s)", report).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def start_server(
    command: list[str], port: int, env: dict[str, str], cpus: str = "1"
) -> subprocess.Popen[bytes]:
    """Start a server pinned to ``cpus`` and wait for its port."""
    process = subprocess.Popen(["taskset", "-c", cpus, *command], env=env)
    wait_for_port(port, timeout=30)
    return process


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    process.wait(timeout=30)


async def publish(settings: Settings, stock: int) -> str:
    """Create and publish an open campaign; return its id."""
    pool = await clients.create_pool(settings.database_url, max_size=2)
    redis = redis_client(settings)
    try:
        ops = CampaignOps(CampaignStore(pool), redis, SystemClock())
        now = datetime.now(UTC)
        campaign_id = f"bench-{secrets.token_hex(3)}"
        spec = decode_spec(
            {
                "id": campaign_id,
                "name": "bench",
                "kind": "no_threshold",
                "faceValueCents": 500,
                "stock": stock,
                "perUserLimit": 1_000_000_000,
                "startsAt": (now - timedelta(minutes=1)).isoformat(),
                "endsAt": (now + timedelta(days=1)).isoformat(),
            }
        )
        await ops.create(spec)
        await ops.publish(campaign_id)
        return campaign_id
    finally:
        await pool.close()
        await redis.aclose()


def main() -> int:
    """Run the three workloads, interleaved over ROUNDS rounds, and print the figures."""
    for tool in ("wrk", "taskset", "redis-server"):
        if shutil.which(tool) is None:
            print(f"bench: {tool} is missing (apt-get install wrk util-linux redis-server)")
            return 1
    work = Path(tempfile.mkdtemp(prefix="flashclaim-bench-"))
    redis = RedisServer(work, aof=True, fsync="everysec").start()
    database_url = asyncio.run(scratch_database(POSTGRES_URL))
    settings = Settings.from_env(
        {},
        redis_url=redis.url,
        database_url=database_url,
        jwt_secret=JWT_SECRET,
        admin_token=ADMIN_TOKEN,
        user_rate=0,
        device_rate=0,
        ip_rate=0,
    )
    try:
        runs = bench_interleaved(settings, work)
    finally:
        redis.stop()
        asyncio.run(drop_database(POSTGRES_URL, database_url))
        shutil.rmtree(work, ignore_errors=True)
    report(runs)
    return 0


def bench_interleaved(settings: Settings, work: Path) -> list[Run]:
    """Baseline, accepting, sold out; again and again, so each round's ratios share the
    machine's mood of the moment (these machines are shared and noisy)."""
    workloads = {
        BASELINE: "hello",
        "claims, accepting": asyncio.run(publish(settings, stock=100_000_000)),
        "claims, sold-out herd": asyncio.run(publish(settings, stock=1)),
    }
    hello_port, gateway_port = free_port(), free_port()
    hello = start_server(
        [sys.executable, "-m", "bench.hello", str(hello_port)], hello_port, dict(os.environ)
    )
    gateway = start_server(
        [sys.executable, "-m", "gateway.cli", "worker" if WORKERS == 1 else "serve"],
        gateway_port,
        gateway_env(settings, gateway_port, workers=WORKERS, metrics_port=0),
        cpus="1" if WORKERS == 1 else "0,1",
    )
    runs: list[Run] = []
    try:
        for round_ in range(-1, ROUNDS):  # round -1 warms both servers up
            for name, campaign_id in workloads.items():
                port = hello_port if name == BASELINE else gateway_port
                script = work / f"{round_}-{campaign_id}.lua"
                script.write_text(wrk_script(campaign_id, secrets.token_hex(4)))
                run = run_wrk(name, port, script, duration=2 if round_ < 0 else DURATION_S)
                if round_ >= 0:
                    runs.append(run)
        runs += further_runs(runs, workloads, gateway, gateway_port, work)
    finally:
        stop(gateway)
        stop(hello)
    return runs


def further_runs(
    runs: list[Run],
    workloads: dict[str, str],
    gateway: subprocess.Popen[bytes],
    port: int,
    work: Path,
) -> list[Run]:
    """Half-peak latency, the profile (PROFILE=1) and the memory after a herd of distinct
    users (see ``bench/claim_extras.py``)."""
    accepting, sold_out = workloads["claims, accepting"], workloads["claims, sold-out herd"]
    peak = statistics.median(r.requests_per_s for r in runs if r.name == "claims, accepting")
    script = work / "half-peak.lua"
    script.write_text(
        wrk_script(accepting, secrets.token_hex(4), delay_ms=extras.delay_ms(peak / 2, CONNECTIONS))
    )
    found = [run_wrk(HALF_PEAK, port, script)]
    script = work / "profile.lua"
    script.write_text(wrk_script(accepting, secrets.token_hex(4)))
    svg = extras.profile(
        gateway.pid, "claims-accepting", DURATION_S, lambda: run_wrk("profile", port, script)
    )
    if svg is not None:
        print(f"flame graph of the accepting run: {svg}")
    if extras.HERD_USERS > 0 and extras.HERD_S > 0:
        before = extras.rss_kib(gateway.pid)
        script = work / "herd.lua"
        script.write_text(wrk_script(sold_out, secrets.token_hex(4), users=extras.HERD_USERS))
        herd = run_wrk(f"herd, {extras.HERD_USERS:,} users", port, script, extras.HERD_S)
        after = extras.rss_kib(gateway.pid)
        print(
            f"\ngateway RSS: {before / 1024:.0f} MiB before, {after / 1024:.0f} MiB after"
            f" {herd.requests:,} claims from {extras.HERD_USERS:,} distinct users in"
            f" {extras.HERD_S} s ({WORKERS} worker(s))"
        )
        found.append(herd)
    return found


def gateway_env(settings: Settings, port: int, **overrides: Any) -> dict[str, str]:
    """The environment of a gateway (or consumer) process under benchmark: no rate caps,
    and no relay unless asked (the claim path is measured alone; the outbox just grows)."""
    bench = msgspec.structs.replace(
        settings,
        port=port,
        user_rate=0,
        device_rate=0,
        ip_rate=0,
        outbox_max_len=100_000_000,
        log_level="WARNING",
        **{"relay_in_gateway": False, **overrides},
    )
    return {**os.environ, **to_env(bench)}


def report(runs: list[Run]) -> None:
    """Per workload, the median round and the spread of its per-round ratio to the
    baseline of the same round; save every run as JSON."""
    cpu = subprocess.run(
        ["sh", "-c", "grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"],
        capture_output=True,
        text=True,
    ).stdout.strip()
    print(
        f"\nflashclaim bench: {ROUNDS} interleaved rounds of {DURATION_S}s per workload, wrk 1"
        f" thread x {CONNECTIONS} connections, 1 server process; {os.cpu_count()} CPUs ({cpu})\n"
    )
    baselines = [run.requests_per_s for run in runs if run.name == BASELINE]
    print(
        f"{'workload':<40}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'non-2xx':>10}{'ratio':>8}"
        f"  ratio per round"
    )
    for name in dict.fromkeys(run.name for run in runs):
        mine = [run for run in runs if run.name == name]
        if len(mine) == len(baselines):  # interleaved: each against its own round's
            ratios = [run.requests_per_s / base for run, base in zip(mine, baselines, strict=True)]
        else:  # the further runs: against the median baseline
            ratios = [run.requests_per_s / statistics.median(baselines) for run in mine]
        median = sorted(mine, key=lambda run: run.requests_per_s)[len(mine) // 2]
        print(
            f"{name:<40}{median.requests_per_s:>10.0f}{median.p50_ms:>9.2f}{median.p99_ms:>9.2f}"
            f"{median.non_2xx:>10}{statistics.median(ratios):>8.2f}"
            f"  {' '.join(f'{ratio:.2f}' for ratio in ratios)}"
        )
    OUT.mkdir(exist_ok=True)
    (OUT / "claim_bench.json").write_text(
        json.dumps(
            {
                "cpu": cpu,
                "duration_s": DURATION_S,
                "rounds": ROUNDS,
                "runs": [asdict(r) for r in runs],
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    sys.exit(main())
