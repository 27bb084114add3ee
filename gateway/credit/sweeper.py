"""The credit sweeper: bonus expiry, reminders before it, and locks past their time.

Run on the one clock (``flashclaim credit sweep``, or ``sweep`` from a job): each bonus
bucket whose validity has ended gives its balance to the system ``expired`` account in one
entry, with a ``bonus_expired`` event; a bucket ending within the reminder window gets
one ``bonus_expiring`` event (the same reminder events as coupons: a notifier reads
``credit_events``); each hold still locked past its time is released exactly as a cancel
would release it (one of the two happens, never both). Safe to run twice at once: every
step takes its user's lock and re-reads what it changes.
"""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from gateway.credit import journal, spend
from gateway.credit.journal import HoldClosed, at
from gateway.infra.clock import Clock


@dataclass
class Swept:
    """What one sweep did."""

    expired_buckets: int = 0
    expired_cents: int = 0
    reminders: int = 0
    released_holds: int = 0


async def sweep(
    pool: asyncpg.Pool, clock: Clock, *, remind_ms: int = 3 * 86_400_000, batch: int = 500
) -> Swept:
    """One pass over what is due now."""
    now = clock.now_ms()
    swept = Swept()
    due = await pool.fetch(
        "SELECT account_id, owner FROM credit_accounts WHERE kind = 'bonus'"
        " AND balance_cents > 0 AND expires_at <= $1 ORDER BY expires_at LIMIT $2",
        at(now), batch,
    )  # fmt: skip
    for row in due:
        cents = await _expire(pool, row["account_id"], row["owner"], now)
        swept.expired_buckets += cents > 0
        swept.expired_cents += cents
    reminded = await pool.fetch(
        "INSERT INTO credit_events (kind, user_id, account_id, amount_cents, due_at, created_at)"
        " SELECT 'bonus_expiring', owner, account_id, balance_cents, expires_at, $2"
        " FROM credit_accounts WHERE kind = 'bonus' AND balance_cents > 0"
        " AND expires_at > $1 AND expires_at <= $3"
        " ON CONFLICT (kind, account_id, due_at) DO NOTHING RETURNING event_id",
        at(now), at(now), at(now + remind_ms),
    )  # fmt: skip
    swept.reminders = len(reminded)
    holds = await pool.fetch(
        "SELECT order_id FROM credit_holds WHERE status = 'locked' AND expires_at <= $1"
        " ORDER BY expires_at LIMIT $2",
        at(now), batch,
    )  # fmt: skip
    for hold in holds:
        try:
            async with pool.acquire() as conn, conn.transaction():
                await spend.release(conn, hold["order_id"], now)
            swept.released_holds += 1
        except HoldClosed:  # confirmed meanwhile: the order was paid in time
            pass
    return swept


async def _expire(pool: asyncpg.Pool, account_id: int, user_id: str, now: int) -> int:
    async with pool.acquire() as conn, conn.transaction():
        await journal.lock_user(conn, user_id)
        row = await conn.fetchrow(
            "SELECT balance_cents, expires_at FROM credit_accounts WHERE account_id = $1",
            account_id,
        )
        if row is None or row["balance_cents"] <= 0:
            return 0  # another sweeper, or a spend, was first
        cents: int = row["balance_cents"]
        key = f"expire:{account_id}:{now}"
        entry = await journal.begin(conn, key, user_id, "expire", now, {"cents": cents})
        if entry.replayed:
            return 0
        expired = journal.SYSTEM_ACCOUNTS["expired"]
        await journal.post(conn, entry, [(account_id, -cents)], [(expired, cents)],
                           bonus_cents=-cents)  # fmt: skip
        await conn.execute(
            "INSERT INTO credit_events (kind, user_id, account_id, amount_cents, due_at,"
            " created_at) VALUES ('bonus_expired', $1, $2, $3, $4, $5)"
            " ON CONFLICT (kind, account_id, due_at) DO NOTHING",
            user_id, account_id, cents, row["expires_at"], at(now),
        )  # fmt: skip
        return cents
