"""What a campaign's coupons did at checkout, per channel x day of use (its time zone).

Figures come from ``usage_daily``, ``usage_campaigns`` and ``use_failures`` (migration 0033),
which PostgreSQL keeps from the audit trail of use (``coupon_events``): every confirm adds
its order, every refund takes back what it paid back, on the day the order was used. So a
day reads "used that day, net of what came back since".

Definitions (money in integer cents; rates ``None`` where the denominator is 0):

* GMV: the original price (amount) of the orders that used the campaign's coupons;
* 单均实付 average paid per order = paid / orders, rounded half up to the cent;
* 补贴率 subsidy rate = discount / GMV (discount against the original price);
* ROI = (GMV − discount) / discount;
* coupons used per user = uses / users with at least one use (campaign-wide only: users of
  several days cannot be added up).
"""

from __future__ import annotations

from datetime import date

import msgspec

from gateway.redemption.wallet import Conn


class UsageRow(msgspec.Struct, rename="camel"):
    """One channel on one day of use (``day`` None, ``channel`` ``*``: the total)."""

    day: str | None
    channel: str
    uses: int
    orders: int
    discount_cents: int
    gmv_cents: int
    paid_cents: int
    average_paid_cents: int | None
    subsidy_rate: float | None
    roi: float | None


class UsageReport(msgspec.Struct, rename="camel"):
    """A campaign's use: per channel and day, the total, users, refusals by reason."""

    rows: list[UsageRow]
    total: UsageRow
    users: int  # users with a use of the campaign's coupons (whole campaign)
    coupons_per_user: float | None
    failures: dict[str, int]  # refused uses by reason, over the days asked


def rate(part: int, whole: int) -> float | None:
    """``part / whole`` to six decimals, or None when nothing to divide by."""
    return round(part / whole, 6) if whole else None


def average(total: int, count: int) -> int | None:
    """``total / count`` rounded half up in integer arithmetic (cents stay exact)."""
    return (2 * total + count) // (2 * count) if count else None


def usage_row(day: str | None, channel: str, figures: dict[str, int]) -> UsageRow:
    """A row with its derived figures."""
    discount, gmv = figures["discount_cents"], figures["gmv_cents"]
    return UsageRow(
        day=day,
        channel=channel,
        uses=figures["uses"],
        orders=figures["orders"],
        discount_cents=discount,
        gmv_cents=gmv,
        paid_cents=figures["paid_cents"],
        average_paid_cents=average(figures["paid_cents"], figures["orders"]),
        subsidy_rate=rate(discount, gmv),
        roi=rate(gmv - discount, discount),
    )


COUNTS = ("uses", "orders", "discount_cents", "gmv_cents", "paid_cents")

_ROWS = """
SELECT day, channel, uses, orders, discount_cents, gmv_cents, paid_cents FROM usage_daily
WHERE campaign_id = $1 AND day BETWEEN $2 AND $3
  AND (uses, orders, discount_cents, gmv_cents, paid_cents) <> (0, 0, 0, 0, 0)
ORDER BY day, channel
"""
_USERS = """
SELECT coalesce((SELECT users FROM usage_campaigns WHERE campaign_id = $1), 0) AS users,
       (SELECT coalesce(sum(uses), 0) FROM usage_daily WHERE campaign_id = $1) AS uses
"""
_FAILURES = """
SELECT reason, sum(failures) AS failures FROM use_failures
WHERE campaign_id = $1 AND day BETWEEN $2 AND $3 GROUP BY reason ORDER BY reason
"""


async def usage(conn: Conn, campaign_id: str, low: date, high: date) -> UsageReport:
    """The use of ``campaign_id`` over days of use ``low``..``high`` (inclusive)."""
    records = await conn.fetch(_ROWS, campaign_id, low, high)
    users = await conn.fetchrow(_USERS, campaign_id)
    failures = await conn.fetch(_FAILURES, campaign_id, low, high)
    rows, totals = [], dict.fromkeys(COUNTS, 0)
    for record in records:
        figures = {name: int(record[name]) for name in COUNTS}
        rows.append(usage_row(record["day"].isoformat(), record["channel"], figures))
        for name in COUNTS:
            totals[name] += figures[name]
    assert users is not None  # an aggregate answers one row
    return UsageReport(
        rows=rows,
        total=usage_row(None, "*", totals),
        users=int(users["users"]),
        coupons_per_user=rate(int(users["uses"]), int(users["users"])),
        failures={r["reason"]: int(r["failures"]) for r in failures},
    )
