"""``flashclaim recover`` rebuilds the claim rules' counters: issued per channel, value per
user, value per day, so quotas and caps hold after Redis lost data."""

from __future__ import annotations

from gateway.campaigns.ops import keys_of
from gateway.infra.clock import ManualClock
from gateway.ops.recover import recover
from tests.helpers import DAY_MS, T0_MS, claim, published


async def test_recover_rebuilds_the_rule_counters(client, ops, pool, redis, clock, settings):
    campaign = await published(
        ops,
        stock=20,
        perUserLimit=3,
        channelQuotas={"code": 2, "seckill": 10},
        perUserMoneyCapCents=20_000,
        dailyBudgetCents=30_000,
    )
    keys = keys_of(campaign)
    clock.set(T0_MS + 1000)
    for user, channel in [("u1", "code"), ("u1", "seckill"), ("u2", "code")]:
        assert (await claim(client, user, campaign.id, channel=channel))[0] == 200
    clock.set(T0_MS + DAY_MS + 1000)
    assert (await claim(client, "u3", campaign.id, channel="h5"))[0] == 200
    days = ("20261111", "20261112")
    before = (
        await redis.hgetall(keys.counters),
        await redis.hgetall(keys.user_money),
        [await redis.get(keys.daily_money(day)) for day in days],
    )
    assert before[1] == {"u1": "20000", "u2": "10000", "u3": "10000"}
    assert before[2] == ["30000", "10000"]
    await redis.delete(keys.counters, keys.user_money, *(keys.daily_money(d) for d in days))

    await recover(ops, pool, redis, ManualClock(clock.now_ms()), settings, campaign.id)
    after = (
        await redis.hgetall(keys.counters),
        await redis.hgetall(keys.user_money),
        [await redis.get(keys.daily_money(day)) for day in days],
    )
    assert after == before
    assert (await claim(client, "u4", campaign.id, channel="code"))[1]["reason"] == (
        "CHANNEL_SOLD_OUT"
    )
    assert (await claim(client, "u1", campaign.id))[1]["reason"] == "USER_MONEY_LIMIT"
