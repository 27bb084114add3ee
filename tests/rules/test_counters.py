"""Channel quotas of one stock, a per-user money cap and a per-day money budget: decided
in claim.lua with the stock, exact under a herd, and a refusal writes nothing."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from typing import Any

import pytest

from gateway.campaigns.ops import keys_of
from tests.helpers import DAY_MS, T0_MS, auth, claim, published, snapshot

CHANNELS = ["code", "seckill", "h5"]


@pytest.fixture(autouse=True)
def opened(clock):
    clock.set(T0_MS + 1000)


async def herd(gateways, sends) -> list[tuple[str, str, int, dict[str, Any]]]:
    """Send every (gateway, user, campaign, channel, requestId) at once."""

    async def send(gateway, user, campaign_id, channel, rid):
        response = await gateway.post(
            "/api/coupon/issue",
            json={
                "campaignId": campaign_id,
                "requestId": rid,
                "deviceId": f"d-{user}",
                "channel": channel,
            },
            headers=auth(user),
        )
        return user, channel, response.status, await response.json()

    return list(await asyncio.gather(*(send(*s) for s in sends)))


async def test_channel_quotas_hold_under_a_herd(make_client, ops, redis):
    exact = await published(
        ops, stock=100, perUserLimit=1, channelQuotas={"code": 30, "seckill": 50, "h5": 20}
    )
    shared = await published(
        ops, stock=60, perUserLimit=1, channelQuotas={"code": 40, "seckill": 40}
    )
    gateways = [await make_client(batch_max=32, redis_timeout_ms=10_000) for _ in range(3)]
    rng = random.Random(6)
    sends = [
        (rng.choice(gateways), f"user-{n}", campaign.id, CHANNELS[n % 3], f"rid-{campaign.id}-{n}")
        for campaign in (exact, shared)
        for n in range(450)
    ]
    rng.shuffle(sends)
    answers = await herd(gateways, sends)
    by_campaign: dict[str, Counter[str]] = {exact.id: Counter(), shared.id: Counter()}
    for (_, _, campaign_id, *_), (_, channel, status, data) in zip(sends, answers, strict=True):
        if status == 200:
            by_campaign[campaign_id][channel] += 1
        else:
            assert (status, data["reason"]) in {(409, "CHANNEL_SOLD_OUT"), (409, "SOLD_OUT")}
    assert by_campaign[exact.id] == Counter({"code": 30, "seckill": 50, "h5": 20})
    got = by_campaign[shared.id]
    assert sum(got.values()) == 60
    assert got["code"] <= 40, got
    assert got["seckill"] <= 40, got
    for campaign in (exact, shared):
        counters = await redis.hgetall(keys_of(campaign).counters)
        entries = await redis.xrange(keys_of(campaign).outbox)
        in_outbox = Counter(fields["channel"] for _, fields in entries)
        assert in_outbox == by_campaign[campaign.id]
        figures = {k[3:]: int(v) for k, v in counters.items() if k.startswith("ch:")}
        assert figures == in_outbox


async def test_money_caps_hold_under_a_herd(make_client, ops, redis, clock):
    capped = await published(ops, stock=1000, perUserLimit=5, perUserMoneyCapCents=25_000)
    daily = await published(
        ops, stock=1000, perUserLimit=5, dailyBudgetCents=300_000, budgetCents=1_000_000
    )
    gateways = [await make_client(batch_max=32, redis_timeout_ms=10_000) for _ in range(3)]
    rng = random.Random(7)
    sends = [
        (rng.choice(gateways), f"user-{n}", campaign.id, "seckill", f"rid-{campaign.id}-{n}-{k}")
        for campaign in (capped, daily)
        for n in range(60)
        for k in range(4)
    ]
    rng.shuffle(sends)
    answers = await herd(gateways, sends)
    per_user: Counter[tuple[str, str]] = Counter()
    for (_, _, campaign_id, *_), (user, _, status, data) in zip(sends, answers, strict=True):
        if status == 200:
            per_user[campaign_id, user] += 1
        else:
            assert data["reason"] in {"USER_MONEY_LIMIT", "DAILY_BUDGET_EXHAUSTED"}, data
    assert all(per_user[capped.id, f"user-{n}"] == 2 for n in range(60))  # 2 x 100 <= 250
    assert sum(n for (cid, _), n in per_user.items() if cid == daily.id) == 30
    money = await redis.hgetall(keys_of(capped).user_money)
    assert set(money.values()) == {"20000"}
    day_key = keys_of(daily).daily_money("20261111")
    assert await redis.get(day_key) == "300000"
    clock.advance(DAY_MS)  # a new day in Shanghai: a new day's budget
    assert (await claim(gateways[0], "late-1", daily.id))[0] == 200


async def test_rule_refusals_write_nothing(client, ops, redis, clock):
    cases: list[tuple[dict[str, Any], str, str]] = [
        ({"channelQuotas": {"seckill": 1}}, "u1", "CHANNEL_SOLD_OUT"),
        ({"dailyBudgetCents": 10_000, "budgetCents": 50_000}, "u1", "DAILY_BUDGET_EXHAUSTED"),
        ({"perUserMoneyCapCents": 15_000, "perUserLimit": 3}, "u2", "USER_MONEY_LIMIT"),
    ]
    for overrides, first, reason in cases:
        campaign = await published(ops, **overrides)
        assert (await claim(client, first, campaign.id))[0] == 200
        before = await snapshot(redis, campaign)
        status, data = await claim(client, "u2", campaign.id)
        assert (status, data["reason"]) == (409, reason)
        assert await snapshot(redis, campaign) == before
    quota = await published(ops, channelQuotas={"seckill": 1})
    assert (await claim(client, "u1", quota.id))[0] == 200
    assert (await claim(client, "u2", quota.id, channel="code"))[0] == 200  # no quota there


async def test_the_daily_budget_turns_over_at_shanghai_midnight(client, ops, clock):
    campaign = await published(ops, dailyBudgetCents=10_000, perUserLimit=5, stock=10)
    clock.set(T0_MS + DAY_MS - 1)  # 23:59:59.999 on the 11th
    assert (await claim(client, "u1", campaign.id))[0] == 200
    assert (await claim(client, "u2", campaign.id))[1]["reason"] == "DAILY_BUDGET_EXHAUSTED"
    clock.set(T0_MS + DAY_MS)
    assert (await claim(client, "u2", campaign.id))[0] == 200


async def test_figures_by_channel(client, ops):
    from prometheus_client import REGISTRY

    from tests.helpers import ADMIN_TOKEN

    campaign = await published(ops, stock=10, channelQuotas={"code": 1, "seckill": 5})
    for user, channel in [("u1", "code"), ("u2", "code"), ("u3", "seckill"), ("u4", "app")]:
        await claim(client, user, campaign.id, channel=channel)
    response = await client.get(
        f"/admin/campaigns/{campaign.id}", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
    )
    live = (await response.json())["live"]
    assert live["channels"] == {
        "app": {"issued": 1},
        "code": {"issued": 1, "quota": 1},
        "seckill": {"issued": 1, "quota": 5},
    }

    def counted(channel: str, reason: str) -> float | None:
        labels = {"campaign": campaign.id, "channel": channel, "reason": reason}
        return REGISTRY.get_sample_value("flashclaim_channel_claims_total", labels)

    assert counted("code", "ACCEPTED") == 1
    assert counted("code", "CHANNEL_SOLD_OUT") == 1
    assert counted("other", "ACCEPTED") == 1  # "app" is not one of its channels
    assert counted("app", "ACCEPTED") is None


async def test_spending_is_split_by_the_cost_source(client, ops):
    from tests.helpers import ADMIN_TOKEN

    campaign = await published(
        ops, stock=10, perUserLimit=5, faceValueCents=999, thresholdCents=5000,
        cost={"source": "shared", "platformPercent": 30},
    )  # fmt: skip
    for _ in range(3):
        assert (await claim(client, "u1", campaign.id))[0] == 200
    response = await client.get(
        f"/admin/campaigns/{campaign.id}", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
    )
    shown = await response.json()
    assert shown["cost"] == {"source": "shared", "platformPercent": 30}
    assert shown["live"]["spentByPayerCents"] == {"platform": 899, "merchant": 2098}
