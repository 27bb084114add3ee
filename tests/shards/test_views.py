"""What users and other capabilities read of a sharded campaign: the public page's stock
band (the sums over the shards), the wallet's claims not yet stored (on the user's shard)
and the offers rule "holds a coupon of campaign A" (the user's shard)."""

from __future__ import annotations

import asyncio

from gateway.claim.api import CLAIMS
from gateway.redemption.recent import recent_claims
from gateway.shards.stock import shard_of
from tests.helpers import T0_MS, auth, body, claim, published

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


async def test_the_sold_out_herd_is_answered_from_each_shards_winners(make_client, ops, clock):
    """Once sold out, a shard that decides a batch loads its own winners (the claims of its
    users): their retries replay from that set, newcomers are refused from memory."""
    client = await make_client(sold_out_cache_ms=0)  # every batch reaches the script
    campaign = await published(ops, stock=SHARDS, perUserLimit=1, stockShards=SHARDS)
    clock.set(T0_MS)
    winners = users_on(1, 3) + users_on(2, 1)  # shard 1 borrows two
    rids = {}
    for user in winners:
        request = body(campaign.id)
        answer = await client.post("/api/coupon/issue", json=request, headers=auth(user))
        assert (await answer.json())["reason"] == "ACCEPTED"
        rids[user] = request
    assert (await claim(client, users_on(1, 4)[3], campaign.id))[1]["reason"] == "SOLD_OUT"
    service = client.app[CLAIMS]
    for _ in range(100):
        if service.winners.of(campaign.id, 1) is not None:
            break
        await asyncio.sleep(0.01)
    assert service.winners.of(campaign.id, 1) == {rids[u]["requestId"] for u in winners[:3]}
    retry = await client.post("/api/coupon/issue", json=rids[winners[0]], headers=auth(winners[0]))
    assert (await retry.json())["reason"] == "ACCEPTED"
