"""``make bench`` (second part): claims from request to row, and the consumer alone.

1. consumer   N claim events already in Kafka are persisted by one ``ClaimConsumer``
              (timed from its partition assignment to its last row, as
              ``bench/handoff_ab.py``); its rows/s is compared with a plain asyncpg COPY
              of the same rows into an empty table of the same shape, in the same run;
2. end to end one gateway worker (``BENCH_WORKERS``, each with its relay) and one
              consumer process; wrk drives accepted claims for a while; the rate is rows
              stored divided by the time from the first request until the last row landed.

Figures are printed and written to ``bench/out/e2e_bench.json``.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import asyncpg

from bench import handoff_ab
from bench.claim_bench import (
    ADMIN_TOKEN,
    JWT_SECRET,
    OUT,
    POSTGRES_URL,
    WORKERS,
    gateway_env,
    publish,
    run_wrk,
    start_server,
    stop,
    wrk_script,
)
from gateway.claim import events
from gateway.handoff.consumer import ClaimConsumer
from gateway.infra.settings import Settings
from gateway.stack.servers import (
    KafkaBroker,
    RedisServer,
    drop_database,
    free_port,
    scratch_database,
)

EVENTS = int(os.environ.get("BENCH_EVENTS", "50000"))
DURATION_S = int(os.environ.get("BENCH_DURATION", "10"))


async def consumer_and_copy(
    settings: Settings, claims: list[events.ClaimEvent]
) -> tuple[float, float]:
    """Rows/s of one consumer persisting claims already waiting in Kafka (timed from the
    moment it has partitions until the last row is stored, figures from its own counter,
    as ``bench/handoff_ab.py`` does), and of an asyncpg COPY of the same rows into an
    empty table shaped like coupons."""
    await handoff_ab.produce(settings, claims)
    pool = await asyncpg.create_pool(settings.database_url, min_size=1, max_size=2)
    conn = await asyncpg.connect(settings.database_url)
    try:
        consumed = await handoff_ab.consumer_turn(
            settings, pool, ClaimConsumer, settings.consumer_group, len(claims)
        )
        await conn.execute("CREATE TABLE coupons_copy (LIKE coupons INCLUDING ALL)")
        copied = await handoff_ab.copy_turn(conn, handoff_ab.copy_records(claims))
    finally:
        await conn.close()
        await pool.close()
    return consumed.per_s, copied.per_s


def end_to_end(settings: Settings, work: Path) -> tuple[float, int, float]:
    """(rows/s from first request to last row, rows, claims/s answered by the gateway)."""
    campaign_id = asyncio.run(publish(settings, stock=100_000_000))
    port = free_port()
    env = gateway_env(
        settings,
        port,
        claims_topic="e2e.claims",
        consumer_group="e2e",
        relay_in_gateway=True,
        workers=WORKERS,
        metrics_port=0,
    )
    consumer = subprocess.Popen([sys.executable, "-m", "gateway.cli", "consumer"], env=env)
    command = [sys.executable, "-m", "gateway.cli", "worker" if WORKERS == 1 else "serve"]
    gateway = start_server(command, port, env, cpus="1" if WORKERS == 1 else "0,1")
    try:
        script = work / "e2e.lua"
        script.write_text(wrk_script(campaign_id, secrets.token_hex(4)))
        started = time.perf_counter()
        answered = run_wrk("end to end", port, script, DURATION_S)
        rows = asyncio.run(_wait_for_rows(settings.database_url, campaign_id, answered.requests))
        elapsed = time.perf_counter() - started
    finally:
        stop(gateway)
        stop(consumer)
    return rows / elapsed, rows, answered.requests_per_s


async def _wait_for_rows(database_url: str, campaign_id: str, at_least: int) -> int:
    conn = await asyncpg.connect(database_url)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            rows = int(
                await conn.fetchval(
                    "SELECT count(*) FROM coupons WHERE campaign_id = $1", campaign_id
                )
            )
            if rows >= at_least:
                return rows
            await asyncio.sleep(0.05)
        raise TimeoutError(f"only {rows} of {at_least} rows after 120 s")
    finally:
        await conn.close()


def main() -> int:
    """Measure and print."""
    work = Path(tempfile.mkdtemp(prefix="flashclaim-e2e-"))
    redis = RedisServer(work, aof=True, fsync="everysec").start()
    broker = KafkaBroker().start()
    database_url = asyncio.run(scratch_database(POSTGRES_URL))
    settings = Settings.from_env(
        {},
        redis_url=redis.url,
        database_url=database_url,
        jwt_secret=JWT_SECRET,
        admin_token=ADMIN_TOKEN,
        kafka_bootstrap=broker.bootstrap,
        claims_topic="bench.claims",
        consumer_group="bench",
    )
    try:
        claims = handoff_ab.sample_events(EVENTS)
        consumed, copied = asyncio.run(consumer_and_copy(settings, claims))
        e2e_rate, rows, answered = end_to_end(settings, work)
    finally:
        broker.stop()
        redis.stop()
        asyncio.run(drop_database(POSTGRES_URL, database_url))
    print(f"\nflashclaim end-to-end bench: {EVENTS} events; {DURATION_S}s of claims\n")
    print(f"consumer into PostgreSQL     {consumed:>10.0f} rows/s")
    print(f"asyncpg COPY, same rows      {copied:>10.0f} rows/s")
    print(f"consumer / COPY              {consumed / copied:>10.2f}")
    print(
        f"end to end, request to row   {e2e_rate:>10.0f} claims/s ({rows} rows;"
        f" gateway answered {answered:.0f}/s; {WORKERS} worker(s))"
    )
    OUT.mkdir(exist_ok=True)
    (OUT / "e2e_bench.json").write_text(
        json.dumps(
            {
                "events": EVENTS,
                "consumer_rows_per_s": consumed,
                "copy_rows_per_s": copied,
                "end_to_end_claims_per_s": e2e_rate,
                "end_to_end_rows": rows,
                "gateway_claims_per_s": answered,
            },
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
