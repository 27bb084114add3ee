"""The sweeper: records lock expiries and coupon expiries that have already happened.

Correctness needs no job (every reader computes a coupon's status from the one clock);
the sweeper writes the transitions down, with their audit events, so PostgreSQL, the
reconciliation and the dashboards see them. Each batch is one transaction; orders are
taken with ``FOR UPDATE SKIP LOCKED``, so several sweepers (one per consumer process, or
``flashclaim redemption sweep``) share the work and a lock is released exactly once
even if a late confirm or cancel of the same order races the sweeper.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass

import asyncpg

from gateway.infra.clock import Clock
from gateway.redemption.orders import record, release
from gateway.redemption.wallet import at

log = logging.getLogger(__name__)
BATCH = 500


@dataclass(frozen=True, slots=True)
class Swept:
    """What one pass recorded."""

    locks_expired: int
    coupons_expired: int


async def expire_locks(pool: asyncpg.Pool, now_ms: int, batch: int = BATCH) -> int:
    """Release the orders whose lock ran out (one batch, one transaction per order);
    return how many this call released (an order another session holds is skipped)."""
    released = 0
    async with pool.acquire() as conn:
        due = await conn.fetch(
            "SELECT user_id, order_id FROM coupon_orders WHERE status = 'locked'"
            " AND locked_until <= $1 ORDER BY locked_until LIMIT $2",
            at(now_ms),
            batch,
        )
        for key in due:
            async with conn.transaction():
                row = await conn.fetchrow(
                    "SELECT * FROM coupon_orders WHERE user_id = $1 AND order_id = $2"
                    " AND status = 'locked' AND locked_until <= $3 FOR UPDATE SKIP LOCKED",
                    key["user_id"],
                    key["order_id"],
                    at(now_ms),
                )
                if row is not None:
                    await release(conn, row, "expired", "sweeper", now_ms)
                    released += 1
    return released


async def expire_coupons(pool: asyncpg.Pool, now_ms: int, batch: int = BATCH) -> int:
    """Record the expiry of unused coupons past their validity (one batch)."""
    async with pool.acquire() as conn, conn.transaction():
        expired = await conn.fetch(
            """
            UPDATE coupons SET status = 'expired', expired_at = expires_at
            WHERE coupon_id IN (
                SELECT coupon_id FROM coupons WHERE status = 'unused' AND expires_at <= $1
                ORDER BY expires_at LIMIT $2 FOR UPDATE SKIP LOCKED)
            AND status = 'unused'
            RETURNING coupon_id
            """,
            at(now_ms),
            batch,
        )
        await record(
            conn,
            "expire",
            [(r["coupon_id"], "unused", "expired", 0) for r in expired],
            order_id=None,
            amount_cents=None,
            actor="sweeper",
            now_ms=now_ms,
        )
    return len(expired)


async def sweep(pool: asyncpg.Pool, now_ms: int) -> Swept:
    """Locks first (a released coupon past its validity expires with it), then coupons;
    batch after batch until nothing is due."""
    locks = coupons = 0
    while (n := await expire_locks(pool, now_ms)) > 0:
        locks += n
    while (n := await expire_coupons(pool, now_ms)) > 0:
        coupons += n
    return Swept(locks, coupons)


async def run_sweeper(
    pool: asyncpg.Pool, clock: Clock, every_s: float, stop: asyncio.Event
) -> None:
    """Sweep every ``every_s`` seconds until ``stop``; a failed pass is logged and retried."""
    while not stop.is_set():
        try:
            await sweep(pool, clock.now_ms())
        except (asyncpg.PostgresError, OSError) as exc:
            log.warning("redemption sweep failed, retrying: %s", exc)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), every_s)
