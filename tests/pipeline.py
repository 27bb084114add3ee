"""The hand-off under test: relays and consumers run in the test's own event loop."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import asyncpg
from redis.asyncio import Redis

from gateway.handoff.consumer import ClaimConsumer
from gateway.handoff.relay import Relay
from gateway.infra import clients
from gateway.infra.settings import Settings


@contextlib.asynccontextmanager
async def running_consumer(
    settings: Settings, database_url: str, consumer_class: type[ClaimConsumer] = ClaimConsumer
) -> AsyncIterator[ClaimConsumer]:
    """A consumer-group member persisting claims while the block runs."""
    await clients.ensure_topics(settings)
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
    consumer = clients.claims_consumer(settings)
    dead_letters = clients.kafka_producer(settings)
    await consumer.start()
    await dead_letters.start()
    stop = asyncio.Event()
    member = consumer_class(consumer, dead_letters, pool, settings)
    task = asyncio.create_task(member.run(stop))
    try:
        yield member
    finally:
        stop.set()
        with contextlib.suppress(Exception):
            await task
        await consumer.stop()
        await dead_letters.stop()
        await pool.close()


@contextlib.asynccontextmanager
async def running_relay(
    settings: Settings, redis: Redis, name: str = "", relay_class: type[Relay] = Relay
) -> AsyncIterator[Relay]:
    """A relay moving outboxes to Kafka while the block runs."""
    await clients.ensure_topics(settings)
    producer = clients.kafka_producer(settings)
    await producer.start()
    stop = asyncio.Event()
    relay = relay_class(redis, producer, settings, name)
    task = asyncio.create_task(relay.run(stop))
    try:
        yield relay
    finally:
        stop.set()
        await task
        await producer.stop()


async def wait_until(predicate: Callable[[], Awaitable[bool]], within_s: float = 30.0) -> None:
    """Poll ``predicate`` until true; fail the test after ``within_s`` seconds."""
    deadline = time.monotonic() + within_s
    while not await predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.1)


async def rows_of(pool: asyncpg.Pool, campaign_id: str) -> list[str]:
    """Coupon ids stored for a campaign."""
    return [
        row["coupon_id"]
        for row in await pool.fetch(
            "SELECT coupon_id::text FROM coupons WHERE campaign_id = $1", campaign_id
        )
    ]
