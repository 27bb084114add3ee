"""What operators do to claimed coupons: void one, void a campaign's unused ones (作废 /
提前终止), and list those about to expire (for the push service's reminders).

A void is a conditional ``UPDATE`` like every transition: only a coupon that is unused
now (never used, not held by a live lock, still valid) is voided, with an audit event
naming the operator's reason. A coupon locked to an order is left to that order.

A campaign's void also reaches coupons whose claims were answered but whose rows are not
stored yet (in the outbox, in Kafka, or retried by the consumer later): it leaves a mark
in ``campaign_voids`` (its instant and reason), and coupons of the campaign claimed by
then arrive voided, with their event (migration 0011's trigger, whichever path stores
them; the wallet and quote read the mark for coupons still on their way). A coupon
claimed after the void is not touched by it: pause or end the campaign to stop claims.
"""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from gateway.redemption.orders import record
from gateway.redemption.wallet import EFFECTIVE, Conn, at, ms

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
        if campaign_id is not None:
            await _mark(conn, campaign_id, reason, now_ms)
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


async def _mark(conn: Conn, campaign_id: str, reason: str, now_ms: int) -> None:
    """Mark the campaign voided as of now, once inserting transactions have committed
    (the advisory lock their trigger shares), so its coupons still on their way arrive
    voided. A later void moves the mark on."""
    await conn.execute(
        "SELECT pg_advisory_xact_lock(hashtext('campaign-void:' || $1))", campaign_id
    )
    await conn.execute(
        "INSERT INTO campaign_voids (campaign_id, reason, voided_at) VALUES ($1, $2, $3)"
        " ON CONFLICT (campaign_id) DO UPDATE SET reason = $2,"
        " voided_at = greatest(campaign_voids.voided_at, $3)",
        campaign_id,
        reason,
        at(now_ms),
    )


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
