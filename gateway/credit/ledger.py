"""``Ledger``: every credit operation, on the one clock, each one transaction.

Balances and statements for the user endpoints; grants, locks, confirms, releases,
refunds and withdrawals for the checkout and the operators; the sweeper's expiry of
bonus buckets and of locks past their time. Each method opens its own transaction, or
joins the caller's when given ``conn`` (checkout: an order's coupons and credit are
locked in one PostgreSQL transaction, so it holds both or neither).
"""

from __future__ import annotations

import asyncpg
import msgspec

from gateway.credit import journal, spend
from gateway.credit.journal import Conn, InsufficientCredit, at, ms_of, transaction
from gateway.infra.clock import Clock

DAY_MS = 86_400_000


class Bucket(msgspec.Struct, rename="camel"):
    """Bonus credit granted together, valid until ``expiresAtMs``."""

    bonus_cents: int
    expires_at_ms: int


class Balance(msgspec.Struct, rename="camel"):
    """A user's credit: spendable principal and bonus, and what orders hold."""

    available_cents: int
    principal_cents: int
    bonus_cents: int
    held_cents: int
    buckets: list[Bucket]


class EntryView(msgspec.Struct, rename="camel"):
    """One line of a statement: how a movement changed the user's principal and bonus."""

    entry_id: int
    kind: str
    principal_cents: int
    bonus_cents: int
    order_id: str | None
    created_at_ms: int


class Statement(msgspec.Struct, rename="camel"):
    """A page of entries, newest first; ``nextBefore`` asks for the next page."""

    entries: list[EntryView]
    next_before: int | None


class Ledger:
    """The credit ledger in PostgreSQL (see ``journal`` for how it stays balanced)."""

    def __init__(self, pool: asyncpg.Pool, clock: Clock) -> None:
        self.pool = pool
        self.clock = clock

    async def balance(self, user_id: str) -> Balance:
        """What the user can spend now (expired buckets not counted) and what is held."""
        now = self.clock.now_ms()
        rows = await self.pool.fetch(
            "SELECT kind, balance_cents, expires_at FROM credit_accounts WHERE owner = $1"
            " AND balance_cents > 0 ORDER BY expires_at, account_id",
            user_id,
        )
        principal = sum(r["balance_cents"] for r in rows if r["kind"] == "principal")
        held = sum(r["balance_cents"] for r in rows if r["kind"] == "held")
        buckets = [
            Bucket(r["balance_cents"], ms_of(r["expires_at"]))
            for r in rows
            if r["kind"] == "bonus" and ms_of(r["expires_at"]) > now
        ]
        bonus = sum(b.bonus_cents for b in buckets)
        return Balance(principal + bonus, principal, bonus, held, buckets)

    async def statement(self, user_id: str, before: int | None, limit: int) -> Statement:
        """The user's entries, newest first, ``limit`` at a time (keyset paging)."""
        rows = await self.pool.fetch(
            "SELECT entry_id, kind, principal_cents, bonus_cents, order_id, created_at"
            " FROM credit_entries WHERE user_id = $1 AND ($2::bigint IS NULL OR entry_id < $2)"
            " ORDER BY entry_id DESC LIMIT $3",
            user_id, before, limit + 1,
        )  # fmt: skip
        views = [
            EntryView(r["entry_id"], r["kind"], r["principal_cents"], r["bonus_cents"],
                      r["order_id"], ms_of(r["created_at"]))
            for r in rows[:limit]
        ]  # fmt: skip
        more = len(rows) > limit
        return Statement(views, views[-1].entry_id if more and views else None)

    async def grant(
        self, user_id: str, bonus_cents: int, valid_days: int, key: str,
        conn: Conn | None = None,
    ) -> int:  # fmt: skip
        """Give bonus credit (a gift, a compensation), valid ``valid_days``; the entry id."""
        now = self.clock.now_ms()
        async with transaction(self.pool, conn) as c:
            await journal.lock_user(c, user_id)
            request = {"bonusCents": bonus_cents, "validDays": valid_days}
            entry = await journal.begin(c, f"grant:{key}", user_id, "grant", now, request)
            if not entry.replayed:
                bucket = await journal.account(c, user_id, "bonus", f"grant:{key}",
                                               at(now + valid_days * DAY_MS))  # fmt: skip
                promotions = journal.SYSTEM_ACCOUNTS["promotions"]
                lines = [(bucket, bonus_cents)]
                await journal.post(c, entry, lines, [(promotions, -bonus_cents)],
                                   bonus_cents=bonus_cents)  # fmt: skip
            return entry.entry_id

    async def lock(
        self, order_id: str, user_id: str, amount_cents: int, ttl_ms: int,
        conn: Conn | None = None,
    ) -> asyncpg.Record:  # fmt: skip
        """Hold ``amount_cents`` of the user's credit for an order until confirmed, cancelled
        or ``ttl_ms`` passes. Again with the same order: the same hold."""
        now = self.clock.now_ms()
        async with transaction(self.pool, conn) as c:
            return await spend.lock(c, order_id, user_id, amount_cents, now + ttl_ms, now)

    async def confirm(self, order_id: str, conn: Conn | None = None) -> asyncpg.Record:
        """The order is paid: its held credit is spent."""
        async with transaction(self.pool, conn) as c:
            return await spend.confirm(c, order_id, self.clock.now_ms())

    async def cancel(self, order_id: str, conn: Conn | None = None) -> asyncpg.Record:
        """The order is off: its held credit goes back (once, whether by cancel or time)."""
        async with transaction(self.pool, conn) as c:
            return await spend.release(c, order_id, self.clock.now_ms())

    async def refund(
        self, order_id: str, amount_cents: int, key: str, conn: Conn | None = None
    ) -> asyncpg.Record:
        """Return ``amount_cents`` of a paid order's credit (``key`` names this refund)."""
        async with transaction(self.pool, conn) as c:
            return await spend.refund(c, order_id, amount_cents, key, self.clock.now_ms())

    async def withdraw(self, user_id: str, amount_cents: int, key: str) -> tuple[int, int]:
        """Pay principal back out, forfeiting the matching bonus: (withdrawn, forfeited).

        The bonus forfeited is the withdrawn share of the principal applied to the bonus
        (withdraw half the principal, lose half the bonus), soonest-expiring first."""
        now = self.clock.now_ms()
        async with transaction(self.pool, None) as c:
            await journal.lock_user(c, user_id)
            entry = await journal.begin(c, f"withdraw:{key}", user_id, "withdraw", now,
                                        {"amountCents": amount_cents})  # fmt: skip
            if entry.replayed:
                assert entry.row is not None
                return -entry.row["principal_cents"], -entry.row["bonus_cents"]
            accounts = await spend.spendable(c, user_id, now)
            principal = [a for a in accounts if a["kind"] == "principal"]
            p_total = sum(a["balance_cents"] for a in principal)
            if amount_cents > p_total or not principal:
                raise InsufficientCredit(f"{p_total} cents of principal to withdraw")
            b_total = sum(a["balance_cents"] for a in accounts if a["kind"] == "bonus")
            forfeit = min(b_total, amount_cents * b_total // p_total)
            lines = [(principal[0]["account_id"], -amount_cents)]
            left = forfeit
            for bucket in (a for a in accounts if a["kind"] == "bonus"):
                take = min(left, bucket["balance_cents"])
                if take:
                    lines.append((bucket["account_id"], -take))
                left -= take
            system = [(journal.SYSTEM_ACCOUNTS["withdrawals"], amount_cents),
                      (journal.SYSTEM_ACCOUNTS["forfeited"], forfeit)]  # fmt: skip
            await journal.post(c, entry, lines, system, principal_cents=-amount_cents,
                               bonus_cents=-forfeit)  # fmt: skip
            return amount_cents, forfeit
