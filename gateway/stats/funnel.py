"""The funnel of a campaign per channel x day (its own time zone): seen, claimed, used.

Figures come from two rollups PostgreSQL keeps, never from a scan of the big tables:
``exposure_daily`` (views and unique viewers, copied from Redis by the exposure rollup)
and ``coupon_daily`` (claims, value drawn, used, refunded, expired; kept by triggers on
``coupons``, migration 0031). So one campaign's funnel reads a row per channel and day,
however many millions of coupons and views lie behind them.

Rates are ratios of the counts (``None`` where the denominator is 0):
领取率 claim rate = claims / views; 核销率 use rate = used / claims. Unique viewers of
several days or channels cannot be added up (a person seen twice is one viewer per day,
not one over the week), so the total row carries the campaign-wide figure only per day
and ``None`` over a range.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated

import asyncpg
import msgspec

from gateway.stats.exposures import ALL_CHANNELS
from gateway.stats.layers import LayerRow, layers
from gateway.stats.usage import UsageReport, rate, usage

IsoDate = Annotated[str, msgspec.Meta(pattern=r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")]


class FunnelRow(msgspec.Struct, rename="camel"):
    """One channel on one day (``day`` None, ``channel`` ``*``: the campaign's total)."""

    day: str | None
    channel: str
    views: int
    unique_viewers: int | None
    claims: int
    claim_rate: float | None
    value_cents: int  # what the claims drew from the budget
    used: int
    use_rate: float | None
    used_value_cents: int
    refunded: int
    expired: int


class FunnelReport(msgspec.Struct, rename="camel"):
    """A campaign's funnel: one row per channel and day, the total, and the budget."""

    campaign_id: str
    time_zone: str
    rows: list[FunnelRow]
    total: FunnelRow
    budget_cents: int | None  # None: the campaign has no money budget
    budget_spent_cents: int  # what all claims drew, over the whole campaign
    budget_left_cents: int | None  # over the whole campaign, whatever the days asked
    usage: UsageReport  # what the coupons did at checkout, by day of use
    layers: list[LayerRow]  # per user layer (overlapping: a user is in several)


_CAMPAIGN = "SELECT spec FROM campaigns WHERE id = $1"
_SPENT = "SELECT coalesce(sum(value_cents), 0) FROM coupon_daily WHERE campaign_id = $1"

_ROWS = """
WITH claims AS (
    SELECT channel, day, claims, value_cents, used, used_value_cents, refunded, expired
    FROM coupon_daily
    WHERE campaign_id = $1 AND day BETWEEN $2 AND $3
), views AS (
    SELECT channel, day, views, unique_viewers
    FROM exposure_daily
    WHERE campaign_id = $1 AND day BETWEEN $2 AND $3
)
SELECT coalesce(c.channel, v.channel) AS channel, coalesce(c.day, v.day) AS day,
       coalesce(v.views, 0) AS views, v.unique_viewers,
       coalesce(c.claims, 0) AS claims, coalesce(c.value_cents, 0) AS value_cents,
       coalesce(c.used, 0) AS used, coalesce(c.used_value_cents, 0) AS used_value_cents,
       coalesce(c.refunded, 0) AS refunded, coalesce(c.expired, 0) AS expired
FROM claims c FULL JOIN views v ON v.channel = c.channel AND v.day = c.day
ORDER BY day, channel
"""


def _row(day: str | None, channel: str, figures: dict[str, int], unique: int | None) -> FunnelRow:
    return FunnelRow(
        day=day,
        channel=channel,
        views=figures["views"],
        unique_viewers=unique,
        claims=figures["claims"],
        claim_rate=rate(figures["claims"], figures["views"]),
        value_cents=figures["value_cents"],
        used=figures["used"],
        use_rate=rate(figures["used"], figures["claims"]),
        used_value_cents=figures["used_value_cents"],
        refunded=figures["refunded"],
        expired=figures["expired"],
    )


_COUNTS = ("views", "claims", "value_cents", "used", "used_value_cents", "refunded", "expired")


async def funnel(
    pool: asyncpg.Pool, campaign_id: str, first: str | None = None, last: str | None = None
) -> FunnelReport | None:
    """The funnel of ``campaign_id`` over days ``first``..``last`` (ISO dates, inclusive;
    all days by default), or None for an unknown campaign. A malformed or impossible date
    raises ``ValueError``."""
    low = date.fromisoformat(first) if first else date.min
    high = date.fromisoformat(last) if last else date.max
    async with pool.acquire() as conn:
        spec_text = await conn.fetchval(_CAMPAIGN, campaign_id)
        if spec_text is None:
            return None
        records = await conn.fetch(_ROWS, campaign_id, low, high)
        spent = int(await conn.fetchval(_SPENT, campaign_id))
        used = await usage(conn, campaign_id, low, high)
        by_layer = await layers(conn, campaign_id, low, high)
    spec = msgspec.json.decode(spec_text) if isinstance(spec_text, str | bytes) else spec_text
    rows: list[FunnelRow] = []
    totals = dict.fromkeys(_COUNTS, 0)
    days_seen: dict[str, int | None] = {}
    for record in records:
        figures = {name: int(record[name]) for name in _COUNTS}
        day = record["day"].isoformat()
        if record["channel"] == ALL_CHANNELS:
            days_seen[day] = record["unique_viewers"]
            continue
        rows.append(_row(day, record["channel"], figures, record["unique_viewers"]))
        for name in _COUNTS:
            totals[name] += figures[name]
    unique = next(iter(days_seen.values())) if len(days_seen) == 1 else None
    budget = spec.get("budgetCents")
    return FunnelReport(
        campaign_id=campaign_id,
        time_zone=spec["timeZone"],
        rows=rows,
        total=_row(None, ALL_CHANNELS, totals, unique),
        budget_cents=budget,
        budget_spent_cents=spent,
        budget_left_cents=None if budget is None else budget - spent,
        usage=used,
        layers=by_layer,
    )
