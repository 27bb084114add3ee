"""End to end: accepted claims travel outbox -> relay -> Kafka -> consumer -> PostgreSQL."""

from __future__ import annotations

import asyncio

from gateway.campaign_ops import keys_of
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
