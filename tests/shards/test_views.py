"""What users and other capabilities read of a sharded campaign: the public page's stock
band (the sums over the shards), the wallet's claims not yet stored (on the user's shard)
and the offers rule "holds a coupon of campaign A" (the user's shard)."""

from __future__ import annotations

from gateway.redemption.recent import recent_claims
from gateway.shards.stock import shard_of
from tests.helpers import T0_MS, claim, published

SHARDS = 4


def users_on(shard: int, count: int) -> list[str]:
    return [u for u in (f"view-user-{n}" for n in range(400)) if shard_of(u, SHARDS) == shard][
        :count
    ]


async def public(client, campaign_id):
    response = await client.get(f"/api/campaigns/{campaign_id}/public")
    return await response.json()


async def test_the_public_stock_band_sums_the_shards(client, ops, clock):
    campaign = await published(ops, stock=20, perUserLimit=1, stockShards=SHARDS)
    clock.set(T0_MS)
    users = users_on(0, 20)  # shard 0's share is 5: the rest is borrowed
    for user in users[:17]:
        assert (await claim(client, user, campaign.id))[1]["reason"] == "ACCEPTED"
    assert (await public(client, campaign.id))["stockLeft"] == "plenty"  # 3 of 20 left
    assert (await claim(client, users[17], campaign.id))[0] == 200
    assert (await public(client, campaign.id))["stockLeft"] == "few"  # 2 of 20
    for user in users[18:]:
        assert (await claim(client, user, campaign.id))[0] == 200
    view = await public(client, campaign.id)
    assert (view["status"], view["stockLeft"]) == ("sold_out", "none")


async def test_the_wallet_finds_a_claim_on_the_users_shard(client, ops, redis, clock):
    campaign = await published(ops, stock=8, perUserLimit=1, stockShards=SHARDS)
    clock.set(T0_MS)
    user = users_on(3, 1)[0]
    status, body = await claim(client, user, campaign.id)
    assert status == 200
    events = await recent_claims(redis, user)
    assert [(e.campaign_id, e.coupon_id) for e in events] == [(campaign.id, body["couponId"])]


async def test_an_offer_sees_a_coupon_held_on_another_shard(client, ops, clock):
    held = await published(ops, stock=8, perUserLimit=1, stockShards=SHARDS)
    offered = await published(ops, stock=8, perUserLimit=1)
    gated = await published(
        ops, stock=8, perUserLimit=1, audience={"offers": [{"holds": held.id, "offer": offered.id}]}
    )
    clock.set(T0_MS)
    user = users_on(2, 1)[0]
    assert (await claim(client, user, held.id))[0] == 200
    status, body = await claim(client, user, gated.id)
    assert (status, body["reason"], body.get("offer")) == (403, "NOT_ELIGIBLE", offered.id)
