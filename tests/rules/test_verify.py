"""``flashclaim verify`` checks the claim rules against PostgreSQL's rows: a channel past its
quota, a user past the money cap, a day past the money budget each fail the verdict."""

from __future__ import annotations

import uuid
from datetime import datetime

from gateway.ops.verify import verify_campaign
from tests.helpers import SHANGHAI, published


async def rows(pool, campaign_id: str, *claims: tuple[str, str, str]) -> None:
    """Store claims (user, channel, Shanghai time) as the consumer would."""
    for user, channel, at in claims:
        claimed = datetime.fromisoformat(at).replace(tzinfo=SHANGHAI)
        await pool.execute(
            "INSERT INTO coupons (coupon_id, campaign_id, user_id, device_id, request_id,"
            " channel, value_cents, claimed_at, expires_at)"
            " VALUES ($1, $2, $3, 'd', $4, $5, 10000, $6, $6)",
            uuid.uuid4(), campaign_id, user, uuid.uuid4().hex, channel, claimed,
        )  # fmt: skip


async def test_the_verdict_holds_the_rules_to_the_rows(ops, pool, redis):
    campaign = await published(
        ops,
        stock=100,
        perUserLimit=9,
        channelQuotas={"code": 2, "seckill": 5},
        perUserMoneyCapCents=20_000,
        dailyBudgetCents=30_000,
    )
    await rows(
        pool, campaign.id,
        ("u1", "code", "2026-11-11 10:00"), ("u2", "code", "2026-11-11 23:59"),
        ("u3", "seckill", "2026-11-12 00:00"), ("u1", "h5", "2026-11-12 08:00"),
    )  # fmt: skip
    clean = await verify_campaign(pool, redis, campaign)
    assert (clean.channels_over_quota, clean.users_over_money_cap, clean.days_over_budget) == (
        0, 0, 0,
    )  # fmt: skip
    await rows(
        pool, campaign.id,
        ("u1", "code", "2026-11-11 12:00"),  # code: 3 > 2; u1: 30000 > 20000
        ("u4", "h5", "2026-11-11 13:00"),  # the 11th: 40000 > 30000
    )  # fmt: skip
    broken = await verify_campaign(pool, redis, campaign)
    assert (broken.channels_over_quota, broken.users_over_money_cap, broken.days_over_budget) == (
        1, 1, 1,
    )  # fmt: skip
    assert {"channels over quota: 1", "users over money cap: 1", "days over budget: 1"} <= set(
        broken.problems
    )
