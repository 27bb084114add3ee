"""Wait until every accepted claim has reached PostgreSQL.

Drained means: every outbox is empty and, for every published campaign, PostgreSQL holds
as many rows as Redis issued coupons. Counting rows (rather than trusting the consumer
group's lag) works with any Kafka-protocol broker: the local tansu broker reports end
offsets that do not match what it stores.

``flashclaim up`` drains on its way down (relaying itself, the gateway's relays being
gone); ``flashclaim verify`` waits for the running relays and consumer before it checks.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable

import asyncpg
from redis.asyncio import Redis

from gateway.handoff.relay import Relay, outbox_backlog, published
from gateway.infra import clients
from gateway.infra.settings import Settings

DRAIN_TIMEOUT_S = 30.0


async def drain(
    settings: Settings,
    *,
    relay: bool,
    timeout_s: float = DRAIN_TIMEOUT_S,
    report: Callable[[int], None] | None = None,
) -> int:
    """Wait (relaying too, if asked) until drained or ``timeout_s`` passed.

    Returns the accepted claims not yet stored (0 when drained). Whatever is left stays in
    the outboxes (or Kafka) and is carried on by the next relay and consumer: nothing
    accepted is lost either way. ``report`` hears how many are left, once a second.
    """
    deadline = time.monotonic() + timeout_s
    reported = time.monotonic()
    redis = clients.redis_client(settings)
    pool = await clients.create_pool(settings.database_url, max_size=1)
    producer = clients.kafka_producer(settings) if relay else None
    try:
        mover = None
        if producer is not None:
            await producer.start()
            mover = Relay(redis, producer, settings)
        while True:
            waiting = await outbox_backlog(redis)
            if waiting and mover is not None and await mover.relay_once():
                continue
            left = waiting or await unpersisted(redis, pool)
            if not left or time.monotonic() >= deadline:
                return left
            if report is not None and time.monotonic() - reported >= 1.0:
                reported = time.monotonic()
                report(left)
            await asyncio.sleep(0.1)  # the consumer works; pending entries are reclaimed
    finally:
        if producer is not None:
            await producer.stop()
        await pool.close()
        await redis.aclose()


async def unpersisted(redis: Redis, pool: asyncpg.Pool) -> int:
    """Coupons Redis issued that PostgreSQL has no row for yet, over all campaigns."""
    issued: Counter[str] = Counter()  # per campaign, summed over its stock shards
    for keys in await published(redis):
        issued[keys.campaign_id] += int(await redis.hget(keys.counters, "issued") or 0)
    return sum([await _unpersisted(pool, cid, n) for cid, n in issued.items()])


async def _unpersisted(pool: asyncpg.Pool, campaign_id: str, issued: int) -> int:
    rows = await pool.fetchval("SELECT count(*) FROM coupons WHERE campaign_id = $1", campaign_id)
    return max(0, issued - int(rows))
