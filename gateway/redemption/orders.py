"""Lock, confirm, cancel, refund: each one PostgreSQL transaction per order.

PostgreSQL is the record of use. Every transition takes the order's row first (``FOR
UPDATE``, or the primary key of its first insert), then its coupons' rows in coupon-id
order (so two orders overlapping on coupons cannot deadlock), then changes them with
conditional ``UPDATE``s whose ``WHERE`` restates the state they leave, and writes one
audit event per coupon, all in the same transaction: a transition and its event exist
together or not at all. Nothing is checked outside the transaction it acts in.

Idempotency: the order row is keyed by (user, orderId) and holds a fingerprint of the
lock request; the same request again answers the order as it stands, another request
under the same orderId is refused with ``ORDER_MISMATCH``. Confirm, cancel and refund
(per refundId) answer the same when repeated.

A lock lasts until ``min(now + TTL, the earliest expiry of its coupons)``, so a live
lock never holds an expired coupon. A lock past its time is released exactly once: by
the sweeper, by the order's own confirm or cancel arriving late, or, for one coupon, by
another order locking it (the old order then has one coupon fewer to release).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import asyncpg
import msgspec

from gateway.campaigns.usage import RefundPolicy
from gateway.claim.events import ClaimEvent
from gateway.handoff.persist import insert_claims
from gateway.infra import metrics
from gateway.reasons import Reason
from gateway.redemption import wallet
from gateway.redemption.cart import RefundRequest, UseRequest
from gateway.redemption.pricing import judge, price, stacking_problem
from gateway.redemption.wallet import EFFECTIVE, Conn, at, ms


class Refused(Exception):
    """A transition refused: nothing it did stays (raised inside the transaction)."""

    def __init__(self, reason: Reason, message: str = "", campaign_id: str | None = None) -> None:
        super().__init__(message or reason.message)
        self.reason = reason
        self.message = message or reason.message
        self.campaign_id = campaign_id  # the refused coupon's campaign, for the statistics


@dataclass(frozen=True, slots=True)
class OrderState:
    """An order as it stands after a transition; ``refusal`` when it was refused after a
    change that stays (a late confirm that released the expired lock)."""

    order_id: str
    status: str
    coupon_ids: list[str]
    amount_cents: int
    discount_cents: int
    pay_cents: int
    refunded_cents: int
    locked_until_ms: int
    discounts: dict[str, int] = field(default_factory=dict)
    allocation: dict[str, list[int]] = field(default_factory=dict)
    refusal: Reason | None = None
    replayed: bool = False


def fingerprint(request: UseRequest) -> str:
    """What makes two lock requests the same request."""
    canonical = msgspec.json.encode(
        [
            sorted(request.coupons),
            request.amount_cents,
            request.items,
            request.channel,
            request.city,
        ]
    )
    return hashlib.sha256(canonical).hexdigest()


def _state(row: asyncpg.Record | None, **extra: Any) -> OrderState:
    assert row is not None  # the transaction holds the order's row
    allocation: dict[str, Any] = msgspec.json.decode(row["allocation"])
    return OrderState(
        order_id=row["order_id"],
        status=row["status"],
        coupon_ids=[str(c) for c in row["coupon_ids"]],
        amount_cents=row["amount_cents"],
        discount_cents=row["discount_cents"],
        pay_cents=row["pay_cents"],
        refunded_cents=row["refunded_cents"],
        locked_until_ms=ms(row["locked_until"]),
        discounts=allocation.get("discounts", {}),
        allocation=allocation.get("lines", {}),
        **extra,
    )


_EVENTS = """
INSERT INTO coupon_events (coupon_id, campaign_id, user_id, transition, from_status, to_status,
                           order_id, amount_cents, discount_cents, actor, at)
SELECT u.coupon_id, c.campaign_id, c.user_id, $2, u.from_status, u.to_status, $3, $4,
       u.discount, $5, $6
FROM unnest($1::uuid[], $7::text[], $8::text[], $9::bigint[])
     AS u(coupon_id, from_status, to_status, discount)
JOIN coupons c ON c.coupon_id = u.coupon_id
"""


async def record(
    conn: Conn,
    transition: str,
    changes: list[tuple[str, str, str, int]],  # coupon id, from, to, discount
    *,
    order_id: str | None,
    amount_cents: int | None,
    actor: str,
    now_ms: int,
) -> None:
    """Audit events, one per coupon, in the caller's transaction."""
    if not changes:
        return
    await conn.execute(
        _EVENTS,
        [c[0] for c in changes],
        transition,
        order_id,
        amount_cents,
        actor,
        at(now_ms),
        [c[1] for c in changes],
        [c[2] for c in changes],
        [c[3] for c in changes],
    )


async def _order_for_update(conn: Conn, user: str, order: str) -> asyncpg.Record:
    row = await conn.fetchrow(
        "SELECT * FROM coupon_orders WHERE user_id = $1 AND order_id = $2 FOR UPDATE", user, order
    )
    if row is None:
        raise Refused(Reason.ORDER_NOT_FOUND)
    return row


async def release(
    conn: Conn, row: asyncpg.Record, status: str, actor: str, now_ms: int
) -> asyncpg.Record:
    """Settle a locked order as ``cancelled`` or ``expired``: its coupons it still holds go
    back to unused (or to expired, past their validity). The caller holds the order row."""
    transition = "cancel" if status == "cancelled" else "lock_expire"
    await lock_rows(conn, row["coupon_ids"])
    released = await conn.fetch(
        """
        UPDATE coupons SET status = CASE WHEN expires_at > $3 THEN 'unused' ELSE 'expired' END,
               order_id = NULL, lock_expires_at = NULL, discount_cents = 0,
               expired_at = CASE WHEN expires_at > $3 THEN NULL ELSE expires_at END
        WHERE user_id = $1 AND order_id = $2 AND status = 'locked'
        RETURNING coupon_id, status
        """,
        row["user_id"],
        row["order_id"],
        at(now_ms),
    )
    await record(
        conn,
        transition,
        [(r["coupon_id"], "locked", r["status"], 0) for r in released],
        order_id=row["order_id"],
        amount_cents=None,
        actor=actor,
        now_ms=now_ms,
    )
    settled = await conn.fetchrow(
        "UPDATE coupon_orders SET status = $3, settled_at = $4"
        " WHERE user_id = $1 AND order_id = $2 AND status = 'locked' RETURNING *",
        row["user_id"],
        row["order_id"],
        status,
        at(now_ms),
    )
    assert settled is not None  # the caller holds the row and saw it locked
    if status == "expired":
        metrics.LOCK_EXPIRIES.inc()
    return settled


async def lock_rows(conn: Conn, coupon_ids: Sequence[Any]) -> None:
    """Take the coupons' row locks in coupon-id order, as every transition does, so two
    transitions over overlapping coupons wait for each other instead of deadlocking."""
    await conn.execute(
        "SELECT 1 FROM coupons WHERE coupon_id = ANY($1::uuid[]) ORDER BY coupon_id FOR UPDATE",
        list(coupon_ids),
    )


def _due(row: asyncpg.Record, now_ms: int) -> bool:
    return bool(row["status"] == "locked" and ms(row["locked_until"]) <= now_ms)


async def lock(
    conn: Conn,
    user: str,
    request: UseRequest,
    *,
    now_ms: int,
    ttl_ms: int,
    new_user: bool,
    unstored: Sequence[ClaimEvent] = (),
) -> OrderState:
    """Lock every coupon of the request to its order, or none; raise ``Refused``.

    ``unstored``: the user's recent claims; those the request names are written through
    to PostgreSQL first (the consumer's own insert, so the coupon is stored once)."""
    print_ = fingerprint(request)
    actor = f"user:{user}"
    async with conn.transaction():
        inserted = await conn.fetchrow(
            """
            INSERT INTO coupon_orders (user_id, order_id, fingerprint, coupon_ids, amount_cents,
                discount_cents, pay_cents, allocation, status, locked_at, locked_until)
            VALUES ($1, $2, $3, $4::uuid[], $5, 0, $5, '{}', 'locked', $6, $6)
            ON CONFLICT (user_id, order_id) DO NOTHING RETURNING 1
            """,
            user,
            request.order_id,
            print_,
            request.coupons,
            request.amount_cents,
            at(now_ms),
        )
        if inserted is None:
            return await _replay(conn, user, request.order_id, print_, now_ms)
        named = set(request.coupons)
        through = [e for e in unstored if e.coupon_id in named and e.user_id == user]
        if through:
            stored = await insert_claims(cast(asyncpg.pool.PoolConnectionProxy, conn), through)
            metrics.WRITE_THROUGHS.inc(stored)
        return await _lock_new(conn, user, request, now_ms, ttl_ms, new_user, actor)


async def _replay(conn: Conn, user: str, order: str, print_: str, now_ms: int) -> OrderState:
    row = await _order_for_update(conn, user, order)
    if row["fingerprint"] != print_:
        raise Refused(Reason.ORDER_MISMATCH)
    if _due(row, now_ms):
        row = await release(conn, row, "expired", "sweeper", now_ms)
    if row["status"] == "expired":
        return _state(row, refusal=Reason.LOCK_EXPIRED)
    return _state(row, replayed=True)


async def _lock_new(
    conn: Conn,
    user: str,
    request: UseRequest,
    now_ms: int,
    ttl_ms: int,
    new_user: bool,
    actor: str,
) -> OrderState:
    ids = sorted(request.coupons)
    effective = EFFECTIVE.format(now="$2")
    records = await conn.fetch(
        f"SELECT c.*, {effective} AS effective FROM coupons c"
        " WHERE c.coupon_id = ANY($1::uuid[]) ORDER BY c.coupon_id FOR UPDATE",
        ids,
        at(now_ms),
    )
    mine = {str(r["coupon_id"]): r for r in records if r["user_id"] == user}
    missing = [c for c in ids if c not in mine]
    if missing:
        raise Refused(Reason.COUPON_NOT_FOUND, f"you hold no coupon {missing[0]}")
    known = await wallet.campaigns(conn, {r["campaign_id"] for r in mine.values()})
    verdicts = []
    for coupon_id in ids:
        record_ = mine[coupon_id]
        if record_["campaign_id"] not in known:
            raise Refused(Reason.COUPON_NOT_FOUND, f"you hold no coupon {coupon_id}")
        held = wallet.to_row(record_, known[record_["campaign_id"]]).held
        verdict = judge(held, request.cart, now_ms, new_user=new_user, order=request.order_id)
        if verdict.refusal is not None:
            raise Refused(
                verdict.refusal, f"coupon {coupon_id}: {verdict.message}", record_["campaign_id"]
            )
        verdicts.append(verdict)
    problem = stacking_problem([v.coupon for v in verdicts])
    if problem is not None:
        raise Refused(Reason.NOT_STACKABLE, problem)
    priced = price(verdicts, request.cart)
    useless = [c for c, d in priced.discounts.items() if d == 0]
    if useless:
        raise Refused(
            Reason.NOT_APPLICABLE,
            f"coupon {useless[0]} takes nothing off this order",
            mine[useless[0]]["campaign_id"],
        )
    until = min(now_ms + ttl_ms, *(v.coupon.expires_at_ms for v in verdicts))
    # Locks of other orders past their time are taken over here, one event each.
    for stale in mine.values():
        if stale["status"] == "locked" and stale["effective"] == "unused":
            await record(
                conn,
                "lock_expire",
                [(stale["coupon_id"], "locked", "unused", 0)],
                order_id=stale["order_id"],
                amount_cents=None,
                actor="gateway",
                now_ms=now_ms,
            )
    locked = await conn.fetch(
        """
        UPDATE coupons c SET status = 'locked', order_id = $2, lock_expires_at = $3,
               locked_at = $4, discount_cents = u.discount
        FROM unnest($1::uuid[], $5::bigint[]) AS u(coupon_id, discount)
        WHERE c.coupon_id = u.coupon_id AND c.user_id = $6 AND c.expires_at > $4
          AND (c.status = 'unused' OR (c.status = 'locked' AND c.lock_expires_at <= $4))
        RETURNING c.coupon_id
        """,
        ids,
        request.order_id,
        at(until),
        at(now_ms),
        [priced.discounts[c] for c in ids],
        user,
    )
    if len(locked) != len(ids):  # cannot happen while we hold the rows; never half a lock
        raise Refused(Reason.COUPON_LOCKED)
    await record(
        conn,
        "lock",
        [(c, "unused", "locked", priced.discounts[c]) for c in ids],
        order_id=request.order_id,
        amount_cents=request.amount_cents,
        actor=actor,
        now_ms=now_ms,
    )
    allocation = {"discounts": priced.discounts, "lines": priced.allocation}
    row = await conn.fetchrow(
        "UPDATE coupon_orders SET discount_cents = $3, pay_cents = amount_cents - $3,"
        " allocation = $4::jsonb, locked_until = $5 WHERE user_id = $1 AND order_id = $2"
        " RETURNING *",
        user,
        request.order_id,
        priced.discount_cents,
        msgspec.json.encode(allocation).decode(),
        at(until),
    )
    return _state(row)


async def confirm(conn: Conn, user: str, order: str, now_ms: int) -> OrderState:
    """The order was paid: its coupons are used. A lock past its time is released and the
    confirm refused (``LOCK_EXPIRED``); the release stays."""
    async with conn.transaction():
        row = await _order_for_update(conn, user, order)
        if _due(row, now_ms):
            row = await release(conn, row, "expired", "sweeper", now_ms)
        if row["status"] == "confirmed":
            return _state(row, replayed=True)
        if row["status"] == "expired":
            return _state(row, refusal=Reason.LOCK_EXPIRED)
        if row["status"] != "locked":
            raise Refused(Reason.ORDER_STATE, f"the order is {row['status']}")
        await lock_rows(conn, row["coupon_ids"])
        used = await conn.fetch(
            "UPDATE coupons SET status = 'used', used_at = $3, lock_expires_at = NULL"
            " WHERE user_id = $1 AND order_id = $2 AND status = 'locked'"
            " RETURNING coupon_id, discount_cents",
            user,
            order,
            at(now_ms),
        )
        if len(used) != len(row["coupon_ids"]):  # a coupon left the lock: never half a use
            raise Refused(Reason.LOCK_EXPIRED)
        await record(
            conn,
            "confirm",
            [(r["coupon_id"], "locked", "used", r["discount_cents"]) for r in used],
            order_id=order,
            amount_cents=row["amount_cents"],
            actor=f"user:{user}",
            now_ms=now_ms,
        )
        row = await conn.fetchrow(  # type: ignore[assignment]
            "UPDATE coupon_orders SET status = 'confirmed', settled_at = $3"
            " WHERE user_id = $1 AND order_id = $2 AND status = 'locked' RETURNING *",
            user,
            order,
            at(now_ms),
        )
        return _state(row)


async def cancel(conn: Conn, user: str, order: str, now_ms: int) -> OrderState:
    """The order will not be paid: its coupons go back (or expire). Repeats, and a cancel
    after the lock ran out, answer the order as it stands."""
    async with conn.transaction():
        row = await _order_for_update(conn, user, order)
        if _due(row, now_ms):
            row = await release(conn, row, "expired", "sweeper", now_ms)
        elif row["status"] == "locked":
            row = await release(conn, row, "cancelled", f"user:{user}", now_ms)
        elif row["status"] in ("confirmed", "refunded"):
            raise Refused(Reason.ORDER_STATE, f"the order is {row['status']}: refund it instead")
        else:
            return _state(row, replayed=True)
        return _state(row)


async def refund(
    conn: Conn, user: str, order: str, request: RefundRequest, now_ms: int
) -> OrderState:
    """A confirmed order is refunded, wholly (the refund policy decides each coupon's fate)
    or in part (coupons stay used; the refunded share of each discount is recorded)."""
    async with conn.transaction():
        row = await _order_for_update(conn, user, order)
        if row["status"] not in ("confirmed", "refunded"):
            raise Refused(Reason.ORDER_STATE, f"the order is {row['status']}, not paid")
        refund_id = request.refund_id or "full"
        done = await conn.fetchrow(
            "SELECT amount_cents FROM coupon_refunds"
            " WHERE user_id = $1 AND order_id = $2 AND refund_id = $3",
            user,
            order,
            refund_id,
        )
        if done is not None:
            if request.amount_cents not in (None, done["amount_cents"]):
                raise Refused(Reason.REFUND_MISMATCH)
            return _state(row, replayed=True)
        left = row["pay_cents"] - row["refunded_cents"]
        amount = left if request.amount_cents is None else request.amount_cents
        if request.refund_id is None and amount != left:
            raise Refused(Reason.INVALID_REQUEST, "a partial refund needs its own refundId")
        if amount > left or (request.amount_cents is None and row["status"] == "refunded"):
            raise Refused(Reason.REFUND_TOO_LARGE, f"{left} cents are left to refund")
        refunded = row["refunded_cents"] + amount
        whole = refunded == row["pay_cents"]
        shares = await _refund_coupons(conn, row, refunded, whole, now_ms)
        await conn.execute(
            "INSERT INTO coupon_refunds (user_id, order_id, refund_id, amount_cents,"
            " discount_cents, refunded_at) VALUES ($1, $2, $3, $4, $5, $6)",
            user,
            order,
            refund_id,
            amount,
            shares,
            at(now_ms),
        )
        row = await conn.fetchrow(  # type: ignore[assignment]
            "UPDATE coupon_orders SET refunded_cents = $3, status = $4"
            " WHERE user_id = $1 AND order_id = $2 RETURNING *",
            user,
            order,
            refunded,
            "refunded" if whole else "confirmed",
        )
        return _state(row)


async def _refund_coupons(
    conn: Conn, order: asyncpg.Record, refunded: int, whole: bool, now_ms: int
) -> int:
    """Move the order's coupons for a refund reaching ``refunded`` cents; return the cents
    of discount this refund gives back (each coupon's share, proportional to what is paid
    back, exact at the end: a whole refund gives back every discount)."""
    user, order_id = order["user_id"], order["order_id"]
    coupons = await conn.fetch(
        "SELECT coupon_id, campaign_id, discount_cents, refunded_discount_cents, expires_at"
        " FROM coupons WHERE user_id = $1 AND order_id = $2 AND status = 'used'"
        " ORDER BY coupon_id FOR UPDATE",
        user,
        order_id,
    )
    known = await wallet.campaigns(conn, {c["campaign_id"] for c in coupons})
    pay = order["pay_cents"]
    given = 0
    changes: list[tuple[str, str, str, int]] = []
    for c in coupons:
        target = c["discount_cents"] if whole or pay == 0 else c["discount_cents"] * refunded // pay
        share = target - c["refunded_discount_cents"]
        given += share
        campaign = known.get(c["campaign_id"])
        back = (
            whole
            and campaign is not None
            and campaign.usage.refund is RefundPolicy.RETURN_IF_VALID
            and ms(c["expires_at"]) > now_ms
        )
        if back:
            status = "unused"
            await conn.execute(
                "UPDATE coupons SET status = 'unused', order_id = NULL, used_at = NULL,"
                " discount_cents = 0, refunded_discount_cents = 0, refunded_at = $2"
                " WHERE coupon_id = $1 AND status = 'used'",
                c["coupon_id"],
                at(now_ms),
            )
        else:
            status = "refunded" if whole else "used"
            await conn.execute(
                "UPDATE coupons SET status = $2, refunded_discount_cents = $3, refunded_at = $4"
                " WHERE coupon_id = $1 AND status = 'used'",
                c["coupon_id"],
                status,
                target,
                at(now_ms),
            )
        changes.append((c["coupon_id"], "used", status, share))
    await record(
        conn,
        "refund" if whole else "partial_refund",
        changes,
        order_id=order_id,
        amount_cents=refunded - order["refunded_cents"],
        actor=f"user:{user}",
        now_ms=now_ms,
    )
    return given
