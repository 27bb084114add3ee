"""End to end: accepted claims travel outbox -> relay -> Kafka -> consumer -> PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterator

import asyncpg
import msgspec
import pytest

from consumer.worker import ClaimConsumer, kafka_consumer
from gateway import kafka
from gateway.campaign_ops import keys_of
from tests.helpers import T0_MS, claim, published
from tests.services import KafkaBroker


@pytest.fixture(scope="module")
def broker() -> Iterator[KafkaBroker]:
    broker = KafkaBroker().start()
    yield broker
    broker.stop()


@pytest.fixture
def kafka_overrides(broker, request) -> dict[str, object]:
    """Settings of a test's own topics and group on the module's broker."""
    name = request.node.name[:40]
    return {
        "kafka_bootstrap": broker.bootstrap,
        "relay_reclaim_ms": 500,
        "claims_topic": f"claims-{name}",
        "dlq_topic": f"dlq-{name}",
        "consumer_group": f"persist-{name}",
    }


@pytest.fixture
def kafka_settings(settings, kafka_overrides):
    return msgspec.structs.replace(settings, **kafka_overrides)


@contextlib.asynccontextmanager
async def running_consumer(settings, database_url) -> AsyncIterator[None]:
    """A consumer-group member persisting claims while the block runs."""
    await kafka.ensure_topics(settings)
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
    consumer = kafka_consumer(settings)
    dead_letters = kafka.producer(settings)
    await consumer.start()
    await dead_letters.start()
    stop = asyncio.Event()
    task = asyncio.create_task(ClaimConsumer(consumer, dead_letters, pool, settings).run(stop))
    try:
        yield
    finally:
        stop.set()
        await task
        await consumer.stop()
        await dead_letters.stop()
        await pool.close()


async def wait_until(predicate, within_s: float = 30.0) -> None:
    deadline = time.monotonic() + within_s
    while not await predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.1)


async def test_every_accepted_claim_becomes_exactly_one_row(
    make_client, ops, redis, pool, clock, kafka_settings, kafka_overrides, database_url
):
    await pool.execute("TRUNCATE coupons")
    client = await make_client(**kafka_overrides, relay_in_gateway=True)
    clock.set(T0_MS + 1000)
    campaign = await published(ops, stock=150, perUserLimit=2)
    answers = await asyncio.gather(
        *(claim(client, f"user-{n % 120}", campaign.id, device=f"dev-{n}") for n in range(300))
    )
    accepted = {data["couponId"] for status, data in answers if status == 200}
    assert len(accepted) == 150

    async with running_consumer(kafka_settings, database_url):

        async def persisted() -> bool:
            rows = await pool.fetchval(
                "SELECT count(*) FROM coupons WHERE campaign_id = $1", campaign.id
            )
            return bool(rows >= 150)

        await wait_until(persisted)
    rows = await pool.fetch(
        "SELECT coupon_id::text, user_id FROM coupons WHERE campaign_id = $1", campaign.id
    )
    assert {r["coupon_id"] for r in rows} == accepted
    assert len(rows) == 150
    assert await redis.xlen(keys_of(campaign).outbox) == 0
