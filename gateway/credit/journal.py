"""The double-entry journal: accounts, entries with idempotency keys, balanced lines.

Every movement of credit is one ``credit_entries`` row, keyed by an idempotency key
(UNIQUE), with lines in ``credit_lines`` that sum to zero (PostgreSQL checks that at
commit). A user's accounts carry a running balance that a conditional ``UPDATE`` moves
(``WHERE balance_cents + delta >= 0``, with a CHECK constraint behind it): a balance
cannot go below zero whatever runs at once, and nothing reads a balance to decide and
then writes it. System accounts (payments, promotions, sales, ...) are the other side of
every entry; their balance is the sum of their lines and is not kept in a row, so no
single row is written by every user's payment (no hot row across users).

Errors (all ``CreditError``)::

    CreditError
    ├── InsufficientCredit    a balance would go below zero
    ├── KeyReused             an idempotency key came back with a different request
    ├── HoldNotFound / HoldClosed
    ├── TopupNotFound / PaymentMismatch / TopupOutOfRange
    ├── PlanNotFound / PlanInactive / WithdrawalNotAllowed

Operations that take ``conn`` run inside the caller's transaction when given one (a
savepoint in it): a checkout locks an order's coupons and its credit in one transaction.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import asyncpg
import orjson

from gateway.reasons import Reason

#: A connection of its own or one from a pool: every operation takes either.
Conn = asyncpg.Connection | asyncpg.pool.PoolConnectionProxy

_USER_LOCK = 0x63726564  # "cred": the advisory-lock namespace of credit users

#: System accounts, the other side of every movement, by name: their fixed ids (the
#: migration creates them).
SYSTEM_ACCOUNTS = {"payments": 1, "promotions": 2, "sales": 3, "withdrawals": 4, "expired": 5,
                   "forfeited": 6}  # fmt: skip


class CreditError(Exception):
    """A credit operation was refused; ``reason`` is the public reason."""

    reason = Reason.INVALID_REQUEST


class InsufficientCredit(CreditError):
    reason = Reason.INSUFFICIENT_CREDIT


class KeyReused(CreditError):
    reason = Reason.REQUEST_MISMATCH


class HoldNotFound(CreditError):
    reason = Reason.UNKNOWN_CREDIT_HOLD


class HoldClosed(CreditError):
    reason = Reason.CREDIT_HOLD_CLOSED


class TopupNotFound(CreditError):
    reason = Reason.UNKNOWN_TOPUP


class PaymentMismatch(CreditError):
    reason = Reason.PAYMENT_MISMATCH


class TopupOutOfRange(CreditError):
    reason = Reason.TOPUP_OUT_OF_RANGE


class PlanNotFound(CreditError):
    reason = Reason.UNKNOWN_CREDIT_PLAN


class PlanInactive(CreditError):
    reason = Reason.CREDIT_PLAN_INACTIVE


class WithdrawalNotAllowed(CreditError):
    reason = Reason.WITHDRAWAL_NOT_ALLOWED


def at(ms: int) -> datetime:
    """An epoch-millisecond instant as the timestamptz asyncpg writes."""
    return datetime.fromtimestamp(ms / 1000, UTC)


def ms_of(moment: datetime) -> int:
    """A timestamptz as epoch milliseconds."""
    return int(moment.timestamp() * 1000)


@contextlib.asynccontextmanager
async def transaction(pool: asyncpg.Pool, conn: Conn | None) -> AsyncIterator[Conn]:
    """A transaction on ``conn`` (a savepoint if the caller's is open), else a pooled one."""
    if conn is not None:
        async with conn.transaction():
            yield conn
        return
    async with pool.acquire() as acquired, acquired.transaction():
        yield acquired


async def lock_user(conn: Conn, user_id: str) -> None:
    """Serialize this transaction's work on ``user_id``'s credit with everyone else's.

    One lock per user, taken first: operations on one user queue, others run in
    parallel, and no two transactions can wait on each other in a cycle."""
    await conn.execute("SELECT pg_advisory_xact_lock($1, hashtext($2))", _USER_LOCK, user_id)


async def account(
    conn: Conn,
    owner: str,
    kind: str,
    bucket: str = "",
    expires_at: datetime | None = None,
) -> int:
    """The id of a user's account, created on first use (under the user's lock)."""
    query = "SELECT account_id FROM credit_accounts WHERE owner = $1 AND kind = $2 AND bucket = $3"
    found: int | None = await conn.fetchval(query, owner, kind, bucket)
    if found is None:
        found = await conn.fetchval(
            "INSERT INTO credit_accounts (owner, kind, bucket, expires_at)"
            " VALUES ($1, $2, $3, $4) ON CONFLICT (owner, kind, bucket) DO NOTHING"
            " RETURNING account_id",
            owner, kind, bucket, expires_at,
        )  # fmt: skip
    if found is None:  # created meanwhile by a transaction not holding the user's lock
        found = await conn.fetchval(query, owner, kind, bucket)
    assert found is not None
    return found


class Entry:
    """An entry being written, or the one an earlier call with the same key wrote."""

    def __init__(self, entry_id: int, replayed: bool, row: asyncpg.Record | None) -> None:
        self.entry_id = entry_id
        self.replayed = replayed
        self.row = row


async def begin(
    conn: Conn,
    key: str,
    user_id: str,
    kind: str,
    now_ms: int,
    request: dict[str, Any],
    order_id: str | None = None,
) -> Entry:
    """Start the entry of ``key``, or find the one already written (a replay).

    The INSERT comes first: a second call with the same key waits on the unique index
    until the first commits, then finds its entry. The same key with another request is
    refused (``KeyReused``): a key names one movement, never two.
    """
    payload = orjson.dumps(request).decode()
    entry_id = await conn.fetchval(
        "INSERT INTO credit_entries (idem_key, user_id, kind, order_id, request, created_at)"
        " VALUES ($1, $2, $3, $4, $5::jsonb, $6) ON CONFLICT (idem_key) DO NOTHING"
        " RETURNING entry_id",
        key, user_id, kind, order_id, payload, at(now_ms),
    )  # fmt: skip
    if entry_id is not None:
        return Entry(entry_id, False, None)
    row = await conn.fetchrow(
        "SELECT *, request = $2::jsonb AS same FROM credit_entries WHERE idem_key = $1",
        key, payload,
    )  # fmt: skip
    assert row is not None
    if not row["same"] or row["user_id"] != user_id or row["kind"] != kind:
        raise KeyReused(f"idempotency key {key!r} was used for another {row['kind']}")
    return Entry(row["entry_id"], True, row)


async def post(
    conn: Conn,
    entry: Entry,
    user_lines: list[tuple[int, int]],
    system_lines: list[tuple[int, int]],
    *,
    principal_cents: int = 0,
    bonus_cents: int = 0,
) -> None:
    """Write the lines (account id, signed cents) of ``entry`` and move user balances.

    Each user account moves by one conditional UPDATE; one that would go below zero
    refuses the whole entry (``InsufficientCredit``) and its transaction rolls back.
    System accounts get lines only (their balance is the sum of their lines).
    """
    users = _merged(user_lines)
    system = _merged(system_lines)
    if sum(users.values()) + sum(system.values()) != 0:
        raise AssertionError(f"unbalanced entry {entry.entry_id}: {users} {system}")
    for account_id, cents in sorted(users.items()):
        moved = await conn.fetchval(
            "UPDATE credit_accounts SET balance_cents = balance_cents + $2"
            " WHERE account_id = $1 AND balance_cents + $2 >= 0 RETURNING balance_cents",
            account_id, cents,
        )  # fmt: skip
        if moved is None:
            raise InsufficientCredit("not enough credit")
    rows = [(entry.entry_id, a, c) for a, c in sorted({**users, **system}.items())]
    if rows:
        await conn.executemany(
            "INSERT INTO credit_lines (entry_id, account_id, amount_cents) VALUES ($1, $2, $3)",
            rows,
        )
    await conn.execute(
        "UPDATE credit_entries SET principal_cents = $2, bonus_cents = $3 WHERE entry_id = $1",
        entry.entry_id, principal_cents, bonus_cents,
    )  # fmt: skip


def _merged(lines: list[tuple[int, int]]) -> dict[int, int]:
    merged: dict[int, int] = {}
    for account_id, cents in lines:
        merged[account_id] = merged.get(account_id, 0) + cents
    return {a: c for a, c in merged.items() if c}
