"""End to end: accepted claims travel outbox -> relay -> Kafka -> consumer -> PostgreSQL."""

from __future__ import annotations

import asyncio

from gateway.campaigns.ops import keys_of
from tests.helpers import T0_MS, claim, published
from tests.pipeline import running_consumer, wait_until


async def test_every_accepted_claim_becomes_exactly_one_row(
    make_client, ops, redis, pool, clock, kafka_settings, kafka_overrides, database_url
):
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


async def test_undecodable_message_goes_to_the_dead_letter_topic(
    make_client, ops, redis, pool, clock, kafka_settings, kafka_overrides, database_url
):
    from aiokafka import AIOKafkaConsumer
    from prometheus_client import REGISTRY

    from gateway.infra import clients

    await clients.ensure_topics(kafka_settings)
    producer = clients.kafka_producer(kafka_settings)
    await producer.start()
    await producer.send_and_wait(kafka_settings.claims_topic, b'{"not": "a claim"}', key=b"x")
    await producer.stop()
    before = REGISTRY.get_sample_value("flashclaim_dead_letters_total") or 0.0
    client = await make_client(**kafka_overrides, relay_in_gateway=True)
    clock.set(T0_MS + 1000)
    campaign = await published(ops, stock=5)
    told = {data["couponId"] for _, data in [await claim(client, "u1", campaign.id)]}
    async with running_consumer(kafka_settings, database_url):

        async def stored() -> bool:
            return bool(await pool.fetchval("SELECT count(*) FROM coupons") == 1)

        await wait_until(stored)
    assert (REGISTRY.get_sample_value("flashclaim_dead_letters_total") or 0.0) == before + 1
    dead = AIOKafkaConsumer(
        kafka_settings.dlq_topic,
        bootstrap_servers=kafka_settings.kafka_bootstrap,
        auto_offset_reset="earliest",
        group_id=None,
    )
    await dead.start()
    try:
        batch = await dead.getmany(timeout_ms=5000)
    finally:
        await dead.stop()
    assert [m.value for ms in batch.values() for m in ms] == [b'{"not": "a claim"}']
    assert told == {await pool.fetchval("SELECT coupon_id::text FROM coupons")}
