"""A sharded campaign through its operations: the spec's rules, publish, pause, block,
top-up, the admin view, the relay's scan list, reconcile and recover."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.campaigns.ops import keys_of
from gateway.campaigns.spec import InvalidSpec, decode_spec
from gateway.handoff.relay import published as relay_scan
from gateway.infra.clock import ManualClock
from gateway.ops.reconcile import reconcile_campaign
from gateway.ops.recover import recover
from gateway.shards.stock import ShardedStock, all_shards, shard_of, share_of
from tests.helpers import T0_MS, claim, published, spec

SHARDS = 4


def users_on(shard: int, count: int) -> list[str]:
    return [u for u in (f"op-user-{n}" for n in range(400)) if shard_of(u, SHARDS) == shard][:count]


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"budgetCents": 100_000}, "budgetCents"),
        ({"dailyStock": 5}, "dailyStock"),
        ({"perDeviceLimit": 1}, "perDeviceLimit"),
        ({"exclusionGroup": "g1"}, "exclusionGroup"),
        ({"dailyBudgetCents": 100_000}, "dailyBudgetCents"),
        ({"channelQuotas": {"seckill": 5}}, "channelQuotas"),
        ({"stock": 3}, "stockShards"),
    ],
)
def test_rules_not_exact_across_shards_are_refused(extra, field):
    with pytest.raises(InvalidSpec) as refused:
        decode_spec(spec(stockShards=SHARDS, **extra))
    assert [e.field for e in refused.value.errors] == [field]


def test_shards_are_bounded():
    for shards in (0, 65):
        with pytest.raises(InvalidSpec) as refused:
            decode_spec(spec(stockShards=shards))
        assert refused.value.errors[0].field == "stockShards"
    decode_spec(spec(stockShards=SHARDS, perUserLimit=2, perUserDailyLimit=1))


async def test_publish_pause_block_and_top_up_reach_every_shard(client, ops, redis, clock):
    clock.set(T0_MS + 1)
    campaign = await published(ops, stock=10, stockShards=SHARDS)
    shards = all_shards(keys_of(campaign), SHARDS)
    assert len({k.base.split("}")[0] for k in shards}) == SHARDS  # four slot tags
    assert [int(await redis.hget(k.config, "stock")) for k in shards] == [3, 3, 2, 2]
    with pytest.raises(InvalidSpec):
        await ops.update(campaign.id, {"stockShards": 2})

    await ops.pause(campaign.id)
    for shard in range(SHARDS):
        assert (await claim(client, users_on(shard, 1)[0], campaign.id))[1]["reason"] == "PAUSED"
    await ops.resume(campaign.id)
    blocked = users_on(3, 1)[0]
    await ops.block(campaign.id, [blocked], [])
    assert (await claim(client, blocked, campaign.id))[1]["reason"] == "BLOCKED"

    await ops.top_up(campaign.id, 5, 0)
    assert [int(await redis.hget(k.config, "stock")) for k in shards] == [4, 4, 4, 3]
    users = [u for shard in range(SHARDS) for u in users_on(shard, 5) if u != blocked]
    reasons = [(await claim(client, user, campaign.id))[1]["reason"] for user in users]
    assert reasons.count("ACCEPTED") == 15
    assert reasons[-1] == "SOLD_OUT"
    live = (await ops.live(campaign.id))["live"]
    assert (live["issued"], live["stockRemaining"], live["outboxLength"]) == (15, 0, 15)
    assert (await reconcile_campaign_counts(ops, redis, campaign)) == (15, 15, 15)
    assert {k.outbox for k in shards} <= {k.outbox for k in await relay_scan(redis)}


async def reconcile_campaign_counts(ops, redis, campaign) -> tuple[int, int, int]:
    report = await reconcile_campaign(ops.store.pool, redis, campaign, ids=False)
    return report.stock, report.issued, report.outbox


async def test_recover_rebuilds_every_shard_and_the_stock_left(
    client, ops, pool, redis, clock, settings
):
    clock.set(T0_MS + 1)
    campaign = await published(ops, stock=12, stockShards=SHARDS)
    keys = keys_of(campaign)
    shards = all_shards(keys, SHARDS)
    users = users_on(0, 6) + users_on(2, 2)  # shard 0 borrows
    for user in users:
        assert (await claim(client, user, campaign.id))[1]["reason"] == "ACCEPTED"
    stock = ShardedStock(redis)
    assert (await stock.script.lend(keys.of_shard(3), "t-lost", 1, 1)).amount == 1  # in flight
    for k in shards:  # Redis lost its counters (a restore from an old file)
        await redis.delete(k.counters, k.users)

    recovered = await recover(ops, pool, redis, ManualClock(clock.now_ms()), settings, campaign.id)
    assert (recovered.issued, recovered.stock) == (8, 12)
    figures = await stock.figures(keys, SHARDS)
    assert sum(f.left for f in figures) == 4
    assert [int(await redis.hget(k.counters, "issued")) for k in shards] == [6, 0, 2, 0]
    assert (await stock.script.credit(keys.of_shard(1), "t-lost", 1)).amount == 0  # closed
    assert (await claim(client, users[0], campaign.id))[1]["reason"] == "USER_LIMIT"
    more = users_on(1, 3) + users_on(3, 3)
    reasons = [(await claim(client, user, campaign.id))[1]["reason"] for user in more]
    assert reasons == ["ACCEPTED"] * 4 + ["SOLD_OUT"] * 2


@given(st.integers(1, 10**9), st.integers(1, 64), st.integers(0, 10**6))
def test_shares_sum_to_the_stock_and_only_grow_with_it(stock, shards, added):
    """What publish writes and top-ups add up to: every coupon on exactly one shard."""
    before = [share_of(stock, shards, s) for s in range(shards)]
    after = [share_of(stock + added, shards, s) for s in range(shards)]
    assert sum(before) == stock
    assert sum(after) == stock + added
    assert all(a >= b for a, b in zip(after, before, strict=True))
