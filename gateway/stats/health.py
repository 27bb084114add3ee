"""A campaign's health check (健康度检查): budget burn against plan, swings in use rate,
coupons running out unused.

* **Budget burn.** The plan spreads the budget evenly over the campaign's days (its time
  zone); each day shows what claims drew, the running total against the running plan,
  and how far ahead (+) or behind (−) of plan that is.
* **Use-rate swings.** The use rate of each claim day (used / claims, from
  ``coupon_daily``); a day whose rate moved more than ``swing`` (10 points) from the day
  before is flagged.
* **Expiring unused.** Coupons still unused whose validity ends within ``soon_days`` (3) of
  ``now``, and those already past it but never used (nobody marked them expired).

* **Abuse trends.** Claims of the campaign refused BLOCKED, DEVICE_LIMIT or RATE_LIMITED,
  and redeem-code guessing (CODE_INVALID, CODE_MISTYPED, CODE_LOCKED: a refused code names
  no campaign, so these are every campaign's), per day of the campaign's zone, from
  ``abuse_hourly`` (gateway/stats/abuse.py; as fresh as the reconciler's last round).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import asyncpg
import msgspec

from gateway.stats.usage import rate


class BurnDay(msgspec.Struct, rename="camel"):
    """One campaign day of budget burn."""

    day: str
    drawn_cents: int
    cumulative_cents: int
    planned_cumulative_cents: int
    ahead_of_plan: float | None  # cumulative / planned - 1


class UseDay(msgspec.Struct, rename="camel"):
    """One claim day's use rate and its change from the day before."""

    day: str
    claims: int
    used: int
    use_rate: float | None
    change: float | None
    swing: bool


class AbuseDay(msgspec.Struct, rename="camel"):
    """One day's abuse refusals by reason (campaign zone)."""

    day: str
    refusals: dict[str, int]


class HealthReport(msgspec.Struct, rename="camel"):
    """The health check of one campaign."""

    campaign_id: str
    budget_cents: int | None
    burn: list[BurnDay]
    use: list[UseDay]
    expiring_soon: int
    expired_unused: int
    abuse: list[AbuseDay]


_DAYS = """SELECT day, sum(claims) AS claims, sum(value_cents) AS drawn, sum(used) AS used
FROM coupon_daily WHERE campaign_id = $1 GROUP BY day ORDER BY day"""
_EXPIRING = """SELECT
    count(*) FILTER (WHERE expires_at >= $2 AND expires_at < $3) AS soon,
    count(*) FILTER (WHERE expires_at < $2) AS past
FROM coupons WHERE campaign_id = $1 AND status = 'unused'"""
_ABUSE = """SELECT (hour AT TIME ZONE $2)::date AS day, reason, sum(refusals) AS refusals
FROM abuse_hourly WHERE campaign_id = $1 OR (campaign_id = '' AND reason LIKE 'CODE%')
GROUP BY 1, 2 ORDER BY 1, 2"""


def _days(start: datetime, end: datetime, zone: ZoneInfo) -> list[date]:
    first = start.astimezone(zone).date()
    last = (end - timedelta(microseconds=1)).astimezone(zone).date()
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]


async def health(
    pool: asyncpg.Pool,
    campaign_id: str,
    now_ms: int,
    *,
    swing: float = 0.10,
    soon_days: int = 3,
) -> HealthReport | None:
    """The health check of ``campaign_id`` at ``now_ms``, or None for an unknown one."""
    now = datetime.fromtimestamp(now_ms / 1000, UTC)
    async with pool.acquire() as conn:
        spec_text = await conn.fetchval("SELECT spec FROM campaigns WHERE id = $1", campaign_id)
        if spec_text is None:
            return None
        days = await conn.fetch(_DAYS, campaign_id)
        expiring = await conn.fetchrow(_EXPIRING, campaign_id, now, now + timedelta(days=soon_days))
        spec = msgspec.json.decode(spec_text)
        abuse_rows = await conn.fetch(_ABUSE, campaign_id, spec["timeZone"])
    zone = ZoneInfo(spec["timeZone"])
    abuse: dict[str, dict[str, int]] = {}
    for row in abuse_rows:
        abuse.setdefault(row["day"].isoformat(), {})[row["reason"]] = int(row["refusals"])
    budget: int | None = spec.get("budgetCents")
    by_day = {row["day"]: row for row in days}
    calendar = _days(
        datetime.fromisoformat(spec["startsAt"]), datetime.fromisoformat(spec["endsAt"]), zone
    )
    burn: list[BurnDay] = []
    running = 0
    for index, day in enumerate(calendar):
        drawn = int(by_day[day]["drawn"]) if day in by_day else 0
        running += drawn
        planned = budget * (index + 1) // len(calendar) if budget is not None else 0
        burn.append(BurnDay(day.isoformat(), drawn, running, planned,
                            round(running / planned - 1, 6) if planned else None))  # fmt: skip
    use: list[UseDay] = []
    previous: float | None = None
    for row in days:
        use_rate = rate(int(row["used"]), int(row["claims"]))
        change = None if use_rate is None or previous is None else round(use_rate - previous, 6)
        swung = change is not None and abs(change) > swing
        claims, used = int(row["claims"]), int(row["used"])
        use.append(UseDay(row["day"].isoformat(), claims, used, use_rate, change, swung))
        previous = use_rate if use_rate is not None else previous
    return HealthReport(
        campaign_id=campaign_id,
        budget_cents=budget,
        burn=burn,
        use=use,
        expiring_soon=int(expiring["soon"]) if expiring is not None else 0,
        expired_unused=int(expiring["past"]) if expiring is not None else 0,
        abuse=[AbuseDay(day, refusals) for day, refusals in abuse.items()],
    )
