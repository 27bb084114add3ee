"""A coupon is usable the moment its claim was answered: listed, quoted and locked before the
consumer stored its row; the lock writes the row through, and the consumer's insert then
stores nothing (each coupon once); recover brings the record back after Redis lost it."""

from __future__ import annotations

from gateway.claim.events import ClaimEvent
from gateway.handoff.persist import insert_claims
from gateway.ops.recover import outbox_claims, recover
from gateway.redemption.recent import recent_claims
from tests.helpers import T0_MS, auth, claim
from tests.redemption.conftest import CART, use_body

NOW = T0_MS + 3_600_000


async def test_claimed_then_used_before_the_consumer(client, clock, make_campaign, orders_pool,
                                                     redis):  # fmt: skip
    campaign = await make_campaign()
    clock.set(NOW)
    status, claimed = await claim(client, "u1", campaign.id)
    assert status == 200, claimed
    coupon = claimed["couponId"]
    assert await orders_pool.fetchval("SELECT count(*) FROM coupons") == 0  # no consumer here

    wallet = await (await client.get("/api/coupons", headers=auth("u1"))).json()
    assert [(c["couponId"], c["status"]) for c in wallet["coupons"]] == [(coupon, "unused")]
    quoted = await (await client.post("/api/checkout/quote", json=CART, headers=auth("u1"))).json()
    assert quoted["best"]["couponIds"] == [coupon]
    other = await (await client.get("/api/coupons", headers=auth("u2"))).json()
    assert other["coupons"] == []

    response = await client.post("/api/coupon/use", json=use_body("o-1", [coupon]),
                                 headers=auth("u1"))  # fmt: skip
    assert (response.status, (await response.json())["reason"]) == (200, "LOCKED")
    assert await orders_pool.fetchval("SELECT status FROM coupons") == "locked"

    # The consumer arrives late with the same claim: nothing new, the lock stands.
    [event] = await outbox_claims(redis, campaign)
    async with orders_pool.acquire() as conn:
        assert await insert_claims(conn, [event]) == 0
    assert await orders_pool.fetchval("SELECT count(*) FROM coupons") == 1
    assert await orders_pool.fetchval("SELECT status FROM coupons") == "locked"
    wallet = await (await client.get("/api/coupons", headers=auth("u1"))).json()
    assert [(c["couponId"], c["status"]) for c in wallet["coupons"]] == [(coupon, "locked")]


async def test_someone_else_cannot_lock_a_coupon_not_stored_yet(client, clock, make_campaign,
                                                                orders_pool):  # fmt: skip
    campaign = await make_campaign()
    clock.set(NOW)
    _, claimed = await claim(client, "u1", campaign.id)
    response = await client.post("/api/coupon/use", json=use_body("o-1", [claimed["couponId"]]),
                                 headers=auth("u2"))  # fmt: skip
    assert (response.status, (await response.json())["reason"]) == (404, "COUPON_NOT_FOUND")
    assert await orders_pool.fetchval("SELECT count(*) FROM coupons") == 0


async def test_recover_brings_back_the_record_of_a_claim_still_in_the_outbox(
    client, clock, make_campaign, ops, orders_pool, redis, settings
):
    campaign = await make_campaign()
    clock.set(NOW)
    _, claimed = await claim(client, "u1", campaign.id)
    outbox = await outbox_claims(redis, campaign)
    # Redis loses the user's record (an older AOF, say); the outbox entry survived.
    await redis.delete(*(await redis.keys("*:recent:u1")))
    assert await recent_claims(redis, "u1") == []
    await recover(ops, orders_pool, redis, clock, settings, campaign.id)
    events: list[ClaimEvent] = await recent_claims(redis, "u1")
    assert [e.coupon_id for e in events] == [claimed["couponId"]] == [c.coupon_id for c in outbox]
