"""What operators do to claimed coupons: void one, void a campaign's unused ones (作废 /
提前终止), and list those about to expire (for the push service's reminders).

A void is a conditional ``UPDATE`` like every transition: only a coupon that is unused
now (never used, not held by a live lock, still valid) is voided, with an audit event
naming the operator's reason. A coupon locked to an order is left to that order.
"""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from gateway.redemption.orders import record
from gateway.redemption.wallet import EFFECTIVE, at, ms

_VOID = f"""
UPDATE coupons c SET status = 'voided', voided_at = $2, void_reason = $3,
       order_id = NULL, lock_expires_at = NULL, discount_cents = 0
WHERE {{where}} AND ({EFFECTIVE.format(now="$2")}) = 'unused'
RETURNING c.coupon_id
"""


async def void_coupons(
    pool: asyncpg.Pool,
    now_ms: int,
    reason: str,
    *,
    coupon_id: str | None = None,
    campaign_id: str | None = None,
) -> int:
    """Void one coupon or every unused coupon of a campaign; return how many."""
    if (coupon_id is None) == (campaign_id is None):
        raise ValueError("name a coupon or a campaign")
    where = "c.coupon_id = $1::uuid" if coupon_id else "c.campaign_id = $1"
    async with pool.acquire() as conn, conn.transaction():
        # Row locks in coupon-id order first, as every transition takes them.
        await conn.execute(
            f"SELECT 1 FROM coupons c WHERE {where} ORDER BY c.coupon_id FOR UPDATE",
            coupon_id or campaign_id,
        )
        voided = await conn.fetch(
            _VOID.format(where=where), coupon_id or campaign_id, at(now_ms), reason
        )
        await record(
            conn,
            "void",
            [(r["coupon_id"], "unused", "voided", 0) for r in voided],
            order_id=None,
            amount_cents=None,
            actor="operator",
            now_ms=now_ms,
        )
    return len(voided)


@dataclass(frozen=True, slots=True)
class Expiring:
    """A coupon about to expire, unused."""

    coupon_id: str
    campaign_id: str
    user_id: str
    expires_at_ms: int


async def expiring(pool: asyncpg.Pool, now_ms: int, within_ms: int) -> list[Expiring]:
    """Unused coupons expiring within ``within_ms`` from now, soonest first."""
    rows = await pool.fetch(
        f"SELECT c.coupon_id, c.campaign_id, c.user_id, c.expires_at FROM coupons c"
        f" WHERE c.expires_at > $1 AND c.expires_at <= $2"
        f" AND ({EFFECTIVE.format(now='$1')}) = 'unused' ORDER BY c.expires_at, c.coupon_id",
        at(now_ms),
        at(now_ms + within_ms),
    )
    return [
        Expiring(str(r["coupon_id"]), r["campaign_id"], r["user_id"], ms(r["expires_at"]))
        for r in rows
    ]
