"""The funnel per user layer: new vs returning users, member level, tags.

A claim carries the claimant's facts as its token stated them (``claim.lua`` writes them
into the outbox entry, the consumer onto the coupon row, migration 0032); triggers keep
``layer_daily`` (claims and those now used, by claim day) and ``layer_usage_daily``
(orders, GMV, discount, paid, by day of use, net of refunds; migration 0033). A coupon is
in several layers at once ('returning', 'level:3', 'tag:student'), so layers overlap and do
not add up to the campaign. Views have no layer: pages report them before anyone logs in.
"""

from __future__ import annotations

from datetime import date

import msgspec

from gateway.redemption.wallet import Conn
from gateway.stats.usage import COUNTS, average, rate


class LayerRow(msgspec.Struct, rename="camel"):
    """One layer of a campaign over the days asked."""

    layer: str  # new, returning, level:<n>, tag:<t>
    claims: int
    used: int
    use_rate: float | None
    uses: int
    orders: int
    discount_cents: int
    gmv_cents: int
    paid_cents: int
    average_paid_cents: int | None
    subsidy_rate: float | None
    roi: float | None


_LAYERS = """
WITH claimed AS (
    SELECT layer, sum(claims) AS claims, sum(used) AS used FROM layer_daily
    WHERE campaign_id = $1 AND day BETWEEN $2 AND $3 GROUP BY layer
), spent AS (
    SELECT layer, sum(uses) AS uses, sum(orders) AS orders,
           sum(discount_cents) AS discount_cents, sum(gmv_cents) AS gmv_cents,
           sum(paid_cents) AS paid_cents
    FROM layer_usage_daily
    WHERE campaign_id = $1 AND day BETWEEN $2 AND $3 GROUP BY layer
)
SELECT coalesce(c.layer, s.layer) AS layer, coalesce(c.claims, 0) AS claims,
       coalesce(c.used, 0) AS used, coalesce(s.uses, 0) AS uses, coalesce(s.orders, 0) AS orders,
       coalesce(s.discount_cents, 0) AS discount_cents, coalesce(s.gmv_cents, 0) AS gmv_cents,
       coalesce(s.paid_cents, 0) AS paid_cents
FROM claimed c FULL JOIN spent s ON s.layer = c.layer
ORDER BY 1
"""


async def layers(conn: Conn, campaign_id: str, low: date, high: date) -> list[LayerRow]:
    """Each layer's claims (by claim day) and use (by day of use) over ``low``..``high``."""
    rows = []
    for r in await conn.fetch(_LAYERS, campaign_id, low, high):
        figures = {name: int(r[name]) for name in COUNTS}
        claims, used = int(r["claims"]), int(r["used"])
        discount, gmv = figures["discount_cents"], figures["gmv_cents"]
        rows.append(
            LayerRow(
                layer=r["layer"],
                claims=claims,
                used=used,
                use_rate=rate(used, claims),
                average_paid_cents=average(figures["paid_cents"], figures["orders"]),
                subsidy_rate=rate(discount, gmv),
                roi=rate(gmv - discount, discount),
                **figures,
            )
        )
    return rows
