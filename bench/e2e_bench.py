"""``make bench`` (second part): claims from request to row, and the consumer alone.

1. consumer   N claim events already in Kafka are persisted by one ``ClaimConsumer``;
              its rows/s is compared with a plain asyncpg COPY of the same rows into an
              empty table of the same shape, measured in the same run;
2. end to end one gateway worker (with its relay) and one consumer process; wrk drives
              accepted claims for a while; the rate is rows stored divided by the time
              from the first request until the last row landed.

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
import uuid
from datetime import UTC, datetime
from pathlib import Path

import asyncpg

from bench.claim_bench import (
    ADMIN_TOKEN,
    JWT_SECRET,
    OUT,
    POSTGRES_URL,
    gateway_env,
    publish,
    run_wrk,
    start_server,
    stop,
    wrk_script,
)
from gateway.claim import events
from gateway.handoff import persist
from gateway.handoff.consumer import ClaimConsumer
from gateway.infra import clients
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


def sample_events(n: int) -> list[events.ClaimEvent]:
    """``n`` distinct accepted claims."""
    now = int(time.time() * 1000)
    return [
        events.ClaimEvent(
            coupon_id=str(uuid.uuid4()),
            campaign_id="bench",
            user_id=f"user-{i}",
            device_id=f"dev-{i}",
            request_id=f"req-{i:08d}",
            channel="seckill",
            value_cents=500,
            claimed_at_ms=now,
            expires_at_ms=now + 86_400_000,
        )
        for i in range(n)
    ]


async def consumer_rate(settings: Settings, claims: list[events.ClaimEvent]) -> float:
    """Rows/s of one consumer persisting claims already waiting in Kafka."""
    await clients.ensure_topics(settings)
    producer = clients.kafka_producer(settings)
    await producer.start()
    try:
        for claim in claims:
            await producer.send(
                settings.claims_topic, events.encode(claim), key=claim.user_id.encode()
            )
        await producer.flush()
    finally:
        await producer.stop()
    pool = await asyncpg.create_pool(settings.database_url, min_size=1, max_size=2)
    consumer, dead_letters = clients.claims_consumer(settings), clients.kafka_producer(settings)
    await consumer.start()
    await dead_letters.start()
    stop = asyncio.Event()
    task = asyncio.create_task(ClaimConsumer(consumer, dead_letters, pool, settings).run(stop))
    started = None
    try:
        while (rows := await pool.fetchval("SELECT count(*) FROM coupons")) < len(claims):
            if rows and started is None:
                started = time.perf_counter()
            await asyncio.sleep(0.01)
        elapsed = time.perf_counter() - (started or time.perf_counter())
    finally:
        stop.set()
        await task
        await consumer.stop()
        await dead_letters.stop()
        await pool.close()
    return len(claims) / max(elapsed, 1e-9)


async def copy_rate(database_url: str, claims: list[events.ClaimEvent]) -> float:
    """Rows/s of asyncpg COPY of the same rows into an empty table shaped like coupons."""
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute("CREATE TABLE coupons_copy (LIKE coupons INCLUDING ALL)")
        at = datetime.now(UTC)
        records = [
            (
                uuid.UUID(c.coupon_id),
                c.campaign_id,
                c.user_id,
                c.device_id,
                c.request_id,
                c.channel,
                c.value_cents,
                at,
                at,
                c.code or None,
            )
            for c in claims
        ]
        started = time.perf_counter()
        await conn.copy_records_to_table(
            "coupons_copy",
            records=records,
            columns=persist.COLUMNS,
        )
        return len(claims) / (time.perf_counter() - started)
    finally:
        await conn.close()


def end_to_end(settings: Settings, work: Path) -> tuple[float, int, float]:
    """(rows/s from first request to last row, rows, claims/s answered by the gateway)."""
    campaign_id = asyncio.run(publish(settings, stock=100_000_000))
    port = free_port()
    env = gateway_env(
        settings, port, claims_topic="e2e.claims", consumer_group="e2e", relay_in_gateway=True
    )
    consumer = subprocess.Popen([sys.executable, "-m", "gateway.cli", "consumer"], env=env)
    gateway = start_server([sys.executable, "-m", "gateway.cli", "worker"], port, env)
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
        claims = sample_events(EVENTS)
        consumed = asyncio.run(consumer_rate(settings, claims))
        copied = asyncio.run(copy_rate(database_url, claims))
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
        f" gateway answered {answered:.0f}/s)"
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
