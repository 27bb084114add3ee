"""The sold-out herd from memory: losers are answered without Redis, winners' retries
still get their coupons, and a top-up ends the shortcut."""

from __future__ import annotations

import asyncio

import pytest
from redis.asyncio import RedisCluster

from gateway.app import SUBSCRIBED
from gateway.campaigns.ops import keys_of
from gateway.claim.api import CLAIMS
from tests.helpers import T0_MS, claim, published


@pytest.fixture
def opened(clock):
    """Move the clock just past T0."""
    clock.set(T0_MS + 1000)


async def _reads(redis) -> int:
    """How many replay reads (MGET) Redis has served (all masters of a cluster)."""
    if isinstance(redis, RedisCluster):
        each = await redis.info("commandstats", target_nodes=RedisCluster.PRIMARIES)
        return sum(int(s.get("cmdstat_mget", {}).get("calls", 0)) for s in each.values())
    stats = await redis.info("commandstats")
    return int(stats.get("cmdstat_mget", {}).get("calls", 0))


async def _known(client, campaign_id: str) -> frozenset[str]:
    for _ in range(100):
        winners: frozenset[str] | None = client.app[CLAIMS].winners.of(campaign_id)
        if winners is not None:
            return winners
        await asyncio.sleep(0.01)
    pytest.fail("the winners were never loaded")


@pytest.mark.usefixtures("opened")
async def test_losers_are_answered_from_memory_and_winners_replayed(make_client, ops, redis):
    client = await make_client(sold_out_cache_ms=600_000, campaign_cache_ms=600_000)
    campaign = await published(ops, stock=3, perUserLimit=1)
    won = {}
    for user in ("u1", "u2", "u3"):
        code, won[user] = await claim(client, user, campaign.id, request_id=f"click-{user}")
        assert code == 200
    assert await redis.lrange(keys_of(campaign).winners, 0, -1) == [
        "click-u1",
        "click-u2",
        "click-u3",
    ]
    assert (await claim(client, "u4", campaign.id))[1]["reason"] == "SOLD_OUT"
    assert await _known(client, campaign.id) == {"click-u1", "click-u2", "click-u3"}

    before = await _reads(redis)
    for n in range(5, 40):
        assert (await claim(client, f"u{n}", campaign.id))[1]["reason"] == "SOLD_OUT"
    assert await _reads(redis) == before, "a loser's claim read Redis"
    code, again = await claim(client, "u2", campaign.id, request_id="click-u2")
    assert (code, again) == (200, won["u2"])
    assert await _reads(redis) == before + 1  # the winner's retry: one replay read
    code, other = await claim(client, "u9", campaign.id, request_id="click-u2")
    assert (code, other["reason"]) == (409, "REQUEST_MISMATCH")


@pytest.mark.usefixtures("opened")
async def test_a_top_up_ends_the_shortcut(make_client, ops, redis):
    client = await make_client(sold_out_cache_ms=600_000, campaign_cache_ms=600_000)
    await asyncio.wait_for(client.app[SUBSCRIBED].wait(), 5)
    campaign = await published(ops, stock=1)
    assert (await claim(client, "u1", campaign.id))[0] == 200
    assert (await claim(client, "u2", campaign.id))[1]["reason"] == "SOLD_OUT"
    assert await _known(client, campaign.id) is not None
    await ops.top_up(campaign.id, 1, 0)
    for _ in range(100):
        if client.app[CLAIMS].winners.of(campaign.id) is None:
            break
        await asyncio.sleep(0.01)
    code, won = await claim(client, "u3", campaign.id, request_id="click-late")
    assert (code, won["reason"]) == (200, "ACCEPTED")
    assert (await claim(client, "u4", campaign.id))[1]["reason"] == "SOLD_OUT"
    assert "click-late" in await _known(client, campaign.id)
    code, again = await claim(client, "u3", campaign.id, request_id="click-late")
    assert (code, again) == (200, won)


@pytest.mark.usefixtures("opened")
async def test_over_the_cap_no_list_is_kept_and_replays_still_work(make_client, ops, redis):
    client = await make_client(sold_out_cache_ms=600_000, sold_out_memory_max=1)
    campaign = await published(ops, stock=2, perUserLimit=1)
    code, won = await claim(client, "u1", campaign.id, request_id="click-aaa")
    assert code == 200, won
    assert (await claim(client, "u2", campaign.id))[0] == 200
    assert await redis.exists(keys_of(campaign).winners) == 0
    assert (await claim(client, "u3", campaign.id))[1]["reason"] == "SOLD_OUT"
    await asyncio.sleep(0.1)
    assert client.app[CLAIMS].winners.of(campaign.id) is None
    assert await claim(client, "u1", campaign.id, request_id="click-aaa") == (code, won)
