"""Keeping the statistics fresh: one round of the reconciler (``flashclaim reconcile
--every``, a Deployment of its own) also rolls exposures up from Redis into PostgreSQL and
copies the workers' abuse tallies (gateway/stats/abuse.py), and sets each campaign's use
and budget gauges for the statistics dashboard.

The claim and use rollups (``coupon_daily``, ``usage_daily``) need no schedule: triggers
keep them as the rows change. Exposures live in Redis until rolled up, so this round is
what keeps ``exposure_daily`` (and so the funnel's views) at most one round behind.
"""

from __future__ import annotations

import logging

import asyncpg
from redis.asyncio import Redis
from redis.exceptions import RedisError

from gateway.campaigns.cache import CampaignCache
from gateway.infra import metrics
from gateway.infra.clock import Clock
from gateway.stats import abuse
from gateway.stats.exposures import rollup

log = logging.getLogger(__name__)

_USE = """
SELECT campaign_id, sum(uses) AS uses, sum(orders) AS orders,
       sum(discount_cents) AS discount_cents, sum(gmv_cents) AS gmv_cents,
       sum(paid_cents) AS paid_cents
FROM usage_daily GROUP BY campaign_id
"""
_BUDGET = """
SELECT c.id, (c.spec->>'budgetCents')::bigint AS planned, coalesce(d.spent, 0) AS spent
FROM campaigns c
LEFT JOIN (SELECT campaign_id, sum(value_cents) AS spent FROM coupon_daily
           GROUP BY campaign_id) d ON d.campaign_id = c.id
WHERE c.spec ? 'budgetCents' AND c.spec->>'budgetCents' IS NOT NULL
"""
FIGURES = ("uses", "orders", "discount_cents", "gmv_cents", "paid_cents")


async def publish(pool: asyncpg.Pool) -> None:
    """Set the use and budget gauges of every campaign from the rollups."""
    async with pool.acquire() as conn:
        use = await conn.fetch(_USE)
        budgets = await conn.fetch(_BUDGET)
    for row in use:
        for figure in FIGURES:
            metrics.STATS_USE.labels(row["campaign_id"], figure).set(int(row[figure]))
    for row in budgets:
        planned, spent = int(row["planned"]), int(row["spent"])
        for state, cents in (("planned", planned), ("spent", spent), ("left", planned - spent)):
            metrics.STATS_BUDGET.labels(row["id"], state).set(cents)


async def refresh(pool: asyncpg.Pool, redis: Redis, clock: Clock, timeout_s: float) -> None:
    """One round: roll exposures up, then publish the gauges; a failure is logged and the
    next round tries again (the figures keep their last values)."""
    try:
        await rollup(redis, pool, CampaignCache(redis, clock, 0, timeout_s), clock.now_ms())
        await abuse.rollup(redis, pool, clock.now_ms())
        await publish(pool)
    except (RedisError, asyncpg.PostgresError, OSError, TimeoutError) as exc:
        log.warning("statistics round failed (%s)", exc)
