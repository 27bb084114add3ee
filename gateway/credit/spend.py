"""Paying with credit: lock for an order, confirm, cancel (or lock expiry), refund.

**Which credit pays: proportionally.** A spend takes principal and bonus in the ratio of
the user's balances at that moment (bonus share rounded down, principal takes the odd
cent; within the bonus share, the soonest-expiring bucket first). Why not bonus first:
a user could top up 500 → 550, spend the 50 bonus and withdraw the whole 500 principal,
keeping the gift without the commitment it rewards. Why not principal first: the bonus
lingers and then expires, which users read as confiscation. Proportional keeps every
balance in the ratio it was bought at, so refunds, withdrawals (which forfeit the
matching bonus) and expiry all stay consistent with what was paid.

**Refunds return each cent where it came from.** A lock records its parts (principal
account, each bonus bucket); a refund, whole or per item, splits its amount over the
parts still unrefunded in proportion to them (the odd cents to the largest remainders),
so the sum of partial refunds is exactly the spend, part by part. A bonus part whose
bucket has expired meanwhile goes to the system ``expired`` account: it would have
expired had it not been spent.

A hold is released exactly once: ``cancel`` and lock expiry are the same step (the hold's
status decides; the entry key ``release:<order>`` backs it).
"""

from __future__ import annotations

import asyncpg

from gateway.credit import journal
from gateway.credit.journal import (
    Conn,
    HoldClosed,
    HoldNotFound,
    InsufficientCredit,
    at,
)


async def spendable(conn: Conn, user_id: str, now_ms: int) -> list[asyncpg.Record]:
    """The user's principal and live bonus accounts with money (principal first, then
    bonus buckets soonest-expiring first)."""
    return await conn.fetch(
        "SELECT account_id, kind, balance_cents, expires_at FROM credit_accounts"
        " WHERE owner = $1 AND kind IN ('principal', 'bonus') AND balance_cents > 0"
        " AND (expires_at IS NULL OR expires_at > $2)"
        " ORDER BY kind DESC, expires_at, account_id",
        user_id, at(now_ms),
    )  # fmt: skip


def split(amount: int, accounts: list[asyncpg.Record]) -> list[tuple[int, int, str]]:
    """``amount`` over ``accounts`` proportionally (see the module): (account, cents, kind)."""
    principal = [a for a in accounts if a["kind"] == "principal"]
    bonus = [a for a in accounts if a["kind"] == "bonus"]
    p_total = sum(a["balance_cents"] for a in principal)
    b_total = sum(a["balance_cents"] for a in bonus)
    if amount > p_total + b_total:
        raise InsufficientCredit(f"{amount} cents asked, {p_total + b_total} available")
    bonus_part = amount * b_total // (p_total + b_total) if amount else 0
    parts = [(a["account_id"], amount - bonus_part, "principal") for a in principal]
    left = bonus_part
    for bucket in bonus:
        take = min(left, bucket["balance_cents"])
        if take:
            parts.append((bucket["account_id"], take, "bonus"))
        left -= take
    return [p for p in parts if p[1] > 0]


async def lock(
    conn: Conn, order_id: str, user_id: str, amount: int, expires_ms: int,
    now_ms: int,
) -> asyncpg.Record:  # fmt: skip
    """Move ``amount`` of the user's credit into the order's held account."""
    await journal.lock_user(conn, user_id)
    request = {"userId": user_id, "amountCents": amount}
    entry = await journal.begin(conn, f"lock:{order_id}", user_id, "lock", now_ms, request,
                                order_id)  # fmt: skip
    if not entry.replayed:
        parts = split(amount, await spendable(conn, user_id, now_ms))
        held = await journal.account(conn, user_id, "held", order_id)
        await conn.execute(
            "INSERT INTO credit_holds (order_id, user_id, amount_cents, status, expires_at,"
            " created_at) VALUES ($1, $2, $3, 'locked', $4, $5)",
            order_id, user_id, amount, at(expires_ms), at(now_ms),
        )  # fmt: skip
        await conn.executemany(
            "INSERT INTO credit_hold_parts (order_id, account_id, amount_cents)"
            " VALUES ($1, $2, $3)",
            [(order_id, account_id, cents) for account_id, cents, _ in parts],
        )
        await journal.post(
            conn, entry, [*((a, -c) for a, c, _ in parts), (held, amount)], [],
            principal_cents=-sum(c for _, c, k in parts if k == "principal"),
            bonus_cents=-sum(c for _, c, k in parts if k == "bonus"),
        )  # fmt: skip
    return await _hold(conn, order_id)


async def _hold(conn: Conn, order_id: str) -> asyncpg.Record:
    row = await conn.fetchrow("SELECT * FROM credit_holds WHERE order_id = $1", order_id)
    if row is None:
        raise HoldNotFound(f"no credit held for order {order_id}")
    return row


async def _locked_hold(conn: Conn, order_id: str) -> asyncpg.Record:
    """The hold, with its user's lock taken (always the user first: no lock cycles)."""
    hold = await _hold(conn, order_id)
    await journal.lock_user(conn, hold["user_id"])
    return await _hold(conn, order_id)


async def confirm(conn: Conn, order_id: str, now_ms: int) -> asyncpg.Record:
    """The order is paid: its held credit becomes a sale. Again: the same answer."""
    hold = await _locked_hold(conn, order_id)
    if hold["status"] == "confirmed":
        return hold
    if hold["status"] != "locked":
        raise HoldClosed(f"the credit of order {order_id} was released")
    if journal.ms_of(hold["expires_at"]) <= now_ms:  # the sweeper releases it
        raise HoldClosed(f"the credit lock of order {order_id} has expired")
    user = hold["user_id"]
    entry = await journal.begin(conn, f"confirm:{order_id}", user, "confirm", now_ms, {},
                                order_id)  # fmt: skip
    held = await journal.account(conn, user, "held", order_id)
    sales = journal.SYSTEM_ACCOUNTS["sales"]
    await journal.post(conn, entry, [(held, -hold["amount_cents"])],
                       [(sales, hold["amount_cents"])])  # fmt: skip
    await conn.execute("UPDATE credit_holds SET status = 'confirmed' WHERE order_id = $1",
                       order_id)  # fmt: skip
    return await _hold(conn, order_id)


async def release(conn: Conn, order_id: str, now_ms: int) -> asyncpg.Record:
    """Cancel, or lock expiry: held credit goes back where it came from, once."""
    hold = await _locked_hold(conn, order_id)
    if hold["status"] == "cancelled":
        return hold
    if hold["status"] != "locked":
        raise HoldClosed(f"the credit of order {order_id} was already confirmed")
    user = hold["user_id"]
    entry = await journal.begin(conn, f"release:{order_id}", user, "cancel", now_ms, {},
                                order_id)  # fmt: skip
    parts = await _parts(conn, order_id)
    held = await journal.account(conn, user, "held", order_id)
    returned = [(p, p["amount_cents"]) for p in parts]
    await _return(conn, entry, user, returned, (held, -hold["amount_cents"]), now_ms)
    await conn.execute("UPDATE credit_holds SET status = 'cancelled' WHERE order_id = $1",
                       order_id)  # fmt: skip
    return await _hold(conn, order_id)


async def refund(conn: Conn, order_id: str, amount: int, key: str, now_ms: int) -> asyncpg.Record:
    """Give back ``amount`` of a confirmed order's credit in the proportions it was spent."""
    hold = await _locked_hold(conn, order_id)
    user = hold["user_id"]
    request = {"orderId": order_id, "amountCents": amount}
    entry = await journal.begin(conn, f"refund:{key}", user, "refund", now_ms, request,
                                order_id)  # fmt: skip
    if entry.replayed:
        return await _hold(conn, order_id)
    if hold["status"] != "confirmed":
        raise HoldClosed(f"the credit of order {order_id} is {hold['status']}, not confirmed")
    if amount > hold["amount_cents"] - hold["refunded_cents"]:
        raise HoldClosed(f"order {order_id} has {hold['amount_cents'] - hold['refunded_cents']}"
                         " cents of credit left to refund")  # fmt: skip
    parts = await _parts(conn, order_id)
    shares = allocate(amount, [p["amount_cents"] - p["refunded_cents"] for p in parts])
    sales = journal.SYSTEM_ACCOUNTS["sales"]
    returned = [(p, s) for p, s in zip(parts, shares, strict=True) if s]
    await _return(conn, entry, user, returned, (sales, -amount), now_ms, source_is_system=True)
    await conn.executemany(
        "UPDATE credit_hold_parts SET refunded_cents = refunded_cents + $3"
        " WHERE order_id = $1 AND account_id = $2",
        [(order_id, p["account_id"], s) for p, s in returned],
    )
    await conn.execute(
        "UPDATE credit_holds SET refunded_cents = refunded_cents + $2 WHERE order_id = $1",
        order_id, amount,
    )  # fmt: skip
    return await _hold(conn, order_id)


def allocate(amount: int, capacities: list[int]) -> list[int]:
    """``amount`` over ``capacities`` in proportion (largest remainder), none over its own."""
    total = sum(capacities)
    if amount > total:
        raise ValueError(f"{amount} is more than the {total} left")
    if not total:
        return [0 for _ in capacities]
    shares = [amount * c // total for c in capacities]
    order = sorted(range(len(capacities)), key=lambda i: -(amount * capacities[i] % total))
    for i in order[: amount - sum(shares)]:
        shares[i] += 1
    return shares


async def _parts(conn: Conn, order_id: str) -> list[asyncpg.Record]:
    return await conn.fetch(
        "SELECT p.account_id, p.amount_cents, p.refunded_cents, a.kind, a.expires_at"
        " FROM credit_hold_parts p JOIN credit_accounts a USING (account_id)"
        " WHERE p.order_id = $1 ORDER BY p.account_id",
        order_id,
    )


async def _return(
    conn: Conn,
    entry: journal.Entry,
    user: str,
    returned: list[tuple[asyncpg.Record, int]],
    source: tuple[int, int],
    now_ms: int,
    *,
    source_is_system: bool = False,
) -> None:
    """Post cents back to their parts' accounts (expired buckets: to ``expired``)."""
    user_lines: list[tuple[int, int]] = []
    system_lines: list[tuple[int, int]] = [source] if source_is_system else []
    if not source_is_system:
        user_lines.append(source)
    principal = bonus = 0
    expired = journal.SYSTEM_ACCOUNTS["expired"]
    for part, cents in returned:
        if part["kind"] == "bonus" and journal.ms_of(part["expires_at"]) <= now_ms:
            system_lines.append((expired, cents))
            continue
        user_lines.append((part["account_id"], cents))
        if part["kind"] == "principal":
            principal += cents
        else:
            bonus += cents
    await journal.post(conn, entry, user_lines, system_lines, principal_cents=principal,
                       bonus_cents=bonus)  # fmt: skip
