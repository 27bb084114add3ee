"""Redeem codes survive Redis losing data: the claim event and the coupon row carry the
code's keyed hash, and ``flashclaim recover`` rebuilds each campaign's codes (unused from
``code_batches``, used from the stored and waiting claims) and the global index."""

from __future__ import annotations

import pytest

from gateway.campaigns.ops import keys_of
from gateway.channels.code_store import CodeBatches
from gateway.channels.codes import CodeHasher
from gateway.claim.events import ClaimEvent, decode, encode
from gateway.handoff.persist import insert_claims
from gateway.infra.clock import ManualClock
from gateway.keys import CODE_INDEX
from gateway.ops.recover import outbox_claims, recover
from tests.channels.test_redeem import redeem
from tests.helpers import T0_MS, claim, published


@pytest.fixture
async def gateway(make_client, clock):
    clock.set(T0_MS + 1)
    return await make_client()


@pytest.fixture
def hasher(settings):
    return CodeHasher.for_settings(settings.code_secret, settings.jwt_secret)


@pytest.fixture
def batches(settings, pool, redis, hasher):
    return CodeBatches(pool, redis, hasher)


async def relay_and_persist(redis, pool, campaign) -> list[ClaimEvent]:
    """What relay and consumer do with the outbox: each event through its JSON form into
    PostgreSQL (the consumer's own insert), then the entries leave the outbox."""
    keys = keys_of(campaign)
    entries = await redis.xrange(keys.outbox)
    events = [decode(encode(ClaimEvent.from_outbox(fields))) for _, fields in entries]
    async with pool.acquire() as conn:
        assert await insert_claims(conn, events) == len(events)
    await redis.xdel(keys.outbox, *(entry_id for entry_id, _ in entries))
    return events


async def test_after_redis_lost_everything_a_used_code_stays_used(
    gateway, ops, pool, redis, batches, hasher, settings, clock
):
    campaign = await published(ops, stock=10, perUserLimit=5)
    _, [used, unused] = await batches.create(campaign.id, 2)
    _, won = await redeem(gateway, "alice", used, "redeem-a-1")
    assert won["reason"] == "ACCEPTED"
    assert (await claim(gateway, "carol", campaign.id))[0] == 200  # no code: none stored
    events = await relay_and_persist(redis, pool, campaign)
    assert [e.code for e in events] == [hasher(used), ""]
    assert b'"code"' not in encode(events[1])  # events without a code look as before
    rows = await pool.fetch("SELECT user_id, code_hash FROM coupons ORDER BY user_id")
    assert [(r["user_id"], r["code_hash"]) for r in rows] == [
        ("alice", hasher(used)),
        ("carol", None),
    ]

    await redis.flushall()  # Redis restarted without its data
    assert (await redeem(gateway, "bob", unused, "redeem-lost-1", device="dev-b"))[1]["reason"] == (
        "CODE_INVALID"  # what recovery mends: every code looks wrong
    )
    recovered = await recover(ops, pool, redis, ManualClock(clock.now_ms()), settings, campaign.id)
    assert recovered.codes == 2

    _, stolen = await redeem(gateway, "bob", used, "redeem-b-1", device="dev-b")
    assert stolen["reason"] == "CODE_INVALID"
    retry, again = await redeem(gateway, "alice", used, "redeem-a-1")
    assert again["couponId"] == won["couponId"]
    assert retry.headers["Idempotent-Replayed"] == "true"
    _, fresh = await redeem(gateway, "bob", unused, "redeem-b-2", device="dev-b")
    assert fresh["reason"] == "ACCEPTED"
    assert await redis.hget(CODE_INDEX, hasher(unused)) == campaign.id


async def test_after_an_older_aof_a_code_used_since_is_refused_again(
    gateway, ops, pool, redis, batches, hasher, settings, clock
):
    campaign = await published(ops, stock=10, perUserLimit=5)
    _, [code] = await batches.create(campaign.id, 1)
    keys = keys_of(campaign)
    before = await redis.dump(keys.codes)
    _, won = await redeem(gateway, "alice", code, "redeem-a-1")
    assert won["reason"] == "ACCEPTED"
    # Redis comes back from a file written before the redemption: the code's mark is gone,
    # the claim is still waiting in the outbox (the relay had not moved it).
    await redis.restore(keys.codes, 0, before, replace=True)
    assert await redis.hget(keys.codes, hasher(code)) == ""
    [waiting] = await outbox_claims(redis, campaign)
    assert waiting.code == hasher(code)

    await recover(ops, pool, redis, ManualClock(clock.now_ms()), settings, campaign.id)
    assert await redis.hget(keys.codes, hasher(code)) == "alice\tredeem-a-1"
    _, stolen = await redeem(gateway, "bob", code, "redeem-b-1", device="dev-b")
    assert stolen["reason"] == "CODE_INVALID"
    assert int(await redis.hget(keys.counters, "issued")) == 1


async def test_verify_fails_a_code_that_named_two_coupons(gateway, ops, pool, redis, batches):
    from gateway.ops.verify import verify_campaign

    campaign = await published(ops, stock=10, perUserLimit=5)
    _, [code] = await batches.create(campaign.id, 1)
    assert (await redeem(gateway, "alice", code, "redeem-a-1"))[1]["reason"] == "ACCEPTED"
    [event] = await relay_and_persist(redis, pool, campaign)
    assert (await verify_campaign(pool, redis, campaign)).codes_used_twice == 0
    await pool.execute(  # a second row with the same code: what a rewound code would leave
        "INSERT INTO coupons (coupon_id, campaign_id, user_id, device_id, request_id, channel,"
        " value_cents, claimed_at, expires_at, code_hash)"
        " SELECT gen_random_uuid(), campaign_id, 'bob', 'dev-b', 'redeem-b-1', channel,"
        " value_cents, claimed_at, expires_at, code_hash FROM coupons WHERE coupon_id = $1",
        event.coupon_id,
    )
    assert "codes used twice: 1" in (await verify_campaign(pool, redis, campaign)).problems
