"""A sharded campaign end to end: claims on every shard, the relay reading one outbox per
shard into Kafka, the consumer storing them, and verify finding the campaign clean."""

from __future__ import annotations

import asyncio

from gateway.ops.verify import verify_campaign
from gateway.shards.stock import shard_of
from tests.helpers import T0_MS, claim, published
from tests.pipeline import rows_of, running_consumer, running_relay, wait_until

SHARDS = 4


async def test_every_shards_claims_reach_postgresql_and_verify_is_clean(
    client, ops, pool, redis, clock, kafka_settings, database_url
):
    clock.set(T0_MS + 1)
    campaign = await published(ops, stock=30, perUserLimit=1, stockShards=SHARDS)
    users = [f"pipe-user-{n}" for n in range(40)]
    assert {shard_of(u, SHARDS) for u in users} == set(range(SHARDS))
    answers = await asyncio.gather(*(claim(client, user, campaign.id) for user in users))
    coupons = {data["couponId"] for status, data in answers if status == 200}
    assert len(coupons) == 30

    async with (
        running_consumer(kafka_settings, database_url),
        running_relay(kafka_settings, redis),
    ):

        async def stored() -> bool:
            return len(await rows_of(pool, campaign.id)) >= 30

        await wait_until(stored, within_s=60)
    assert set(await rows_of(pool, campaign.id)) == coupons
    verdict = await verify_campaign(pool, redis, campaign)
    assert (verdict.stock, verdict.accepted, verdict.rows) == (30, 30, 30)
    assert verdict.problems == []
