"""Lock, confirm, cancel, refund: each one PostgreSQL transaction per order.

PostgreSQL is the record of use. Every transition takes the order's row first (``FOR
UPDATE``, or the primary key of its first insert), then its coupons' rows in coupon-id
order (so two orders overlapping on coupons cannot deadlock), then changes them with
conditional ``UPDATE``s whose ``WHERE`` restates the state they leave, and writes one
audit event per coupon, all in the same transaction: a transition and its event exist
together or not at all. Nothing is checked outside the transaction it acts in.

Shopping credit (``creditCents`` of the lock) is held in the same transaction, after
the coupons: the order's row, its coupons, then the user's credit lock (``credit/spend``,
under the order's ``hold_id``); refused credit (over the balance, or more than credit may
pay after coupons) refuses the whole lock, so an order holds its coupons and its credit,
or neither. Confirm, cancel, lock expiry and refunds move both in one transaction too.

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
from gateway.credit import quote as credit_quote
from gateway.credit import spend
from gateway.credit.journal import HoldClosed, InsufficientCredit
from gateway.handoff.persist import insert_claims
from gateway.infra import metrics
from gateway.reasons import Reason
from gateway.redemption import itemized, wallet
from gateway.redemption.cart import Item, RefundRequest, UseRequest
from gateway.redemption.pricing import Priced, judge, price, stacking_problem
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
    credit_cents: int = 0
    credit_principal_cents: int = 0
    credit_bonus_cents: int = 0
    refunded_credit_cents: int = 0
    credit_allocation: list[int] = field(default_factory=list)
    refusal: Reason | None = None
    replayed: bool = False


def fingerprint(request: UseRequest) -> str:
    """What makes two lock requests the same request (credit only when some is asked, so
    orders locked before credit existed keep their fingerprints)."""
    fields: list[Any] = [
        sorted(request.coupons),
        request.amount_cents,
        request.items,
        request.channel,
        request.city,
    ]
    if request.credit_cents:
        fields.append({"creditCents": request.credit_cents})
    return hashlib.sha256(msgspec.json.encode(fields)).hexdigest()


def hold_id(user: str, order: str) -> str:
    """The credit hold of an order (``/`` is in neither a user id nor an order id)."""
    return f"use:{user}/{order}"


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
        credit_cents=row["credit_cents"],
        credit_principal_cents=row["credit_principal_cents"],
        credit_bonus_cents=row["credit_bonus_cents"],
        refunded_credit_cents=row["refunded_credit_cents"],
        credit_allocation=allocation.get("credit", []),
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
    if row["credit_cents"]:  # its credit goes back with its coupons (once: see spend)
        await spend.release(conn, hold_id(row["user_id"], row["order_id"]), now_ms)
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
    device: str = "",
    unstored: Sequence[ClaimEvent] = (),
) -> OrderState:
    """Lock every coupon of the request to its order, or none; raise ``Refused``.

    ``device``: the token's verified device (the ``verifiedDevice`` rule);
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
        return await _lock_new(conn, user, request, now_ms, ttl_ms, new_user, actor, device)


async def _replay(conn: Conn, user: str, order: str, print_: str, now_ms: int) -> OrderState:
    row = await _order_for_update(conn, user, order)
    if row["fingerprint"] != print_:
        raise Refused(Reason.ORDER_MISMATCH)
    if _due(row, now_ms):
        row = await release(conn, row, "expired", "sweeper", now_ms)
    if row["status"] == "expired":
        return _state(row, refusal=Reason.LOCK_EXPIRED)
    return _state(row, replayed=True)


# The lock's writes in one statement: the coupons (whose rows the transaction already
# holds) locked to the order with their discounts, one ``lock`` event per coupon, and the
# order row priced; ``locked_count`` lets the caller refuse (and roll back) a short lock.
_LOCK = """
WITH locked AS (
    UPDATE coupons c SET status = 'locked', order_id = $2, lock_expires_at = $3,
           locked_at = $4, discount_cents = u.discount
    FROM unnest($1::uuid[], $5::bigint[]) AS u(coupon_id, discount)
    WHERE c.coupon_id = u.coupon_id AND c.user_id = $6 AND c.expires_at > $4
      AND (c.status = 'unused' OR (c.status = 'locked' AND c.lock_expires_at <= $4))
    RETURNING c.coupon_id, c.campaign_id, c.user_id, c.discount_cents
), events AS (
    INSERT INTO coupon_events (coupon_id, campaign_id, user_id, transition, from_status,
                               to_status, order_id, amount_cents, discount_cents, actor, at)
    SELECT l.coupon_id, l.campaign_id, l.user_id, 'lock', 'unused', 'locked', $2, $7,
           l.discount_cents, $8, $4
    FROM locked l
)
UPDATE coupon_orders SET discount_cents = $9, pay_cents = amount_cents - $9,
       allocation = $10::jsonb, locked_until = $3, credit_cents = $11,
       credit_principal_cents = $12, credit_bonus_cents = $13
WHERE user_id = $6 AND order_id = $2
RETURNING *, (SELECT count(*) FROM locked) AS locked_count
"""


async def _lock_new(
    conn: Conn,
    user: str,
    request: UseRequest,
    now_ms: int,
    ttl_ms: int,
    new_user: bool,
    actor: str,
    device: str,
) -> OrderState:
    ids = sorted(request.coupons)
    effective = EFFECTIVE.format(now="$2")
    records = await conn.fetch(  # with each coupon's campaign: one round trip
        f"SELECT c.*, {effective} AS effective, k.spec AS campaign_spec,"
        " k.status AS campaign_status, k.version AS campaign_version"
        " FROM coupons c LEFT JOIN campaigns k ON k.id = c.campaign_id"
        " WHERE c.coupon_id = ANY($1::uuid[]) ORDER BY c.coupon_id FOR UPDATE OF c",
        ids,
        at(now_ms),
    )
    mine = {str(r["coupon_id"]): r for r in records if r["user_id"] == user}
    missing = [c for c in ids if c not in mine]
    if missing:
        raise Refused(Reason.COUPON_NOT_FOUND, f"you hold no coupon {missing[0]}")
    known = wallet.joined_campaigns(mine.values())
    verdicts = []
    for coupon_id in ids:
        record_ = mine[coupon_id]
        if record_["campaign_id"] not in known:
            raise Refused(Reason.COUPON_NOT_FOUND, f"you hold no coupon {coupon_id}")
        held = wallet.to_row(record_, known[record_["campaign_id"]]).held
        verdict = judge(held, request.cart, now_ms, new_user=new_user, order=request.order_id,
                        device=device)  # fmt: skip
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
    credit = await _hold_credit(conn, user, request, priced, until, now_ms)
    allocation = {"discounts": priced.discounts, "lines": priced.allocation,
                  "credit": credit.per_item,
                  "items": [[i.total_cents, i.quantity] for i in request.items]}  # fmt: skip
    row = await conn.fetchrow(
        _LOCK,
        ids,
        request.order_id,
        at(until),
        at(now_ms),
        [priced.discounts[c] for c in ids],
        user,
        request.amount_cents,
        actor,
        priced.discount_cents,
        msgspec.json.encode(allocation).decode(),
        credit.cents,
        credit.principal_cents,
        credit.bonus_cents,
    )
    if row is None or row["locked_count"] != len(ids):  # cannot happen: we hold the rows
        raise Refused(Reason.COUPON_LOCKED)  # never half a lock (the transaction rolls back)
    return _state(row)


@dataclass(frozen=True, slots=True)
class HeldCredit:
    """The credit an order holds: how much, its principal/bonus split, its share per item."""

    cents: int = 0
    principal_cents: int = 0
    bonus_cents: int = 0
    per_item: list[int] = field(default_factory=list)


def after_coupons(
    items: Sequence[Item], allocation: dict[str, list[int]]
) -> list[credit_quote.Item]:
    """Each cart line at what it costs once the coupons' shares are taken off (the quote
    and the lock both price credit on this)."""
    return [
        credit_quote.Item(
            item.category, item.total_cents - sum(lines[i] for lines in allocation.values())
        )
        for i, item in enumerate(items)
    ]


async def _hold_credit(
    conn: Conn, user: str, request: UseRequest, priced: Priced, until: int, now_ms: int
) -> HeldCredit:
    """Hold ``creditCents`` of the user's credit until the coupons' lock ends, in this
    transaction (after the coupons: the user's credit lock comes last); refuse it all
    when credit may not pay that much or the balance is short."""
    if not request.credit_cents:
        return HeldCredit()
    items = after_coupons(request.items, priced.allocation)
    scope = await credit_quote.user_scope(conn, user)
    can_pay = sum(credit_quote.eligible(scope, items))
    if request.credit_cents > can_pay:
        raise Refused(
            Reason.CREDIT_NOT_APPLICABLE,
            f"credit may pay {can_pay} cents of this order, not {request.credit_cents}",
        )
    hold = hold_id(user, request.order_id)
    try:
        await spend.lock(conn, hold, user, request.credit_cents, until, now_ms)
    except InsufficientCredit as exc:
        raise Refused(Reason.INSUFFICIENT_CREDIT, str(exc)) from None
    rows = await conn.fetch(
        "SELECT a.kind, sum(p.amount_cents)::bigint AS cents FROM credit_hold_parts p"
        " JOIN credit_accounts a USING (account_id) WHERE p.order_id = $1 GROUP BY a.kind",
        hold,
    )
    parts: dict[str, int] = {r["kind"]: r["cents"] for r in rows}
    return HeldCredit(
        request.credit_cents,
        parts.get("principal", 0),
        parts.get("bonus", 0),
        credit_quote.per_item(request.credit_cents, items, scope),
    )


# A confirm in one statement (its own transaction): the order row, then its coupons in
# coupon-id order (as every transition takes them), then the coupons' UPDATE, their events
# and the order's UPDATE, each written only when every coupon of the order is still locked
# to it (``whole``). No row back: the order is not a live lock without credit, or a coupon
# left it; ``confirm_in_transaction`` decides those (and changes nothing here).
_CONFIRM = """
WITH o AS (
    SELECT user_id, order_id, coupon_ids, amount_cents FROM coupon_orders
    WHERE user_id = $1 AND order_id = $2 AND status = 'locked' AND locked_until > $3
      AND credit_cents = 0
    FOR UPDATE
), held AS (
    SELECT c.coupon_id FROM coupons c, o
    WHERE c.coupon_id = ANY(o.coupon_ids) AND c.user_id = $1 AND c.order_id = $2
      AND c.status = 'locked'
    ORDER BY c.coupon_id FOR UPDATE OF c
), whole AS (
    SELECT o.* FROM o WHERE (SELECT count(*) FROM held) = cardinality(o.coupon_ids)
), used AS (
    UPDATE coupons c SET status = 'used', used_at = $3, lock_expires_at = NULL
    FROM whole WHERE c.coupon_id IN (SELECT coupon_id FROM held)
      AND c.user_id = $1 AND c.order_id = $2 AND c.status = 'locked'
    RETURNING c.coupon_id, c.campaign_id, c.user_id, c.discount_cents
), events AS (
    INSERT INTO coupon_events (coupon_id, campaign_id, user_id, transition, from_status,
                               to_status, order_id, amount_cents, discount_cents, actor, at)
    SELECT u.coupon_id, u.campaign_id, u.user_id, 'confirm', 'locked', 'used', $2,
           whole.amount_cents, u.discount_cents, $4, $3
    FROM used u, whole
)
UPDATE coupon_orders co SET status = 'confirmed', settled_at = $3
FROM whole WHERE co.user_id = whole.user_id AND co.order_id = whole.order_id
RETURNING co.*
"""


async def confirm(conn: Conn, user: str, order: str, now_ms: int) -> OrderState:
    """The order was paid: its coupons are used. A lock past its time is released and the
    confirm refused (``LOCK_EXPIRED``); the release stays.

    The common case (a live lock, no credit) is one statement, one round trip; anything
    else (a replay, an expired lock, credit to settle, a refusal) goes through the
    transaction of ``confirm_in_transaction``."""
    row = await conn.fetchrow(_CONFIRM, user, order, at(now_ms), f"user:{user}")
    if row is not None:
        return _state(row)
    return await confirm_in_transaction(conn, user, order, now_ms)


async def confirm_in_transaction(conn: Conn, user: str, order: str, now_ms: int) -> OrderState:
    """``confirm`` step by step in one transaction: every case, the same outcome."""
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
        if row["credit_cents"]:
            try:
                await spend.confirm(conn, hold_id(user, order), now_ms)
            except HoldClosed:  # released by the credit sweeper at its time: never half paid
                raise Refused(Reason.LOCK_EXPIRED) from None
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
    """A confirmed order is refunded: wholly (the refund policy decides each coupon's
    fate), by ``amountCents`` (each coupon's discount and the credit back in proportion to
    the amount) or by ``items`` (each coupon's discount and the credit back per item,
    ``itemized``). The credit returns to principal and bonus as it was spent."""
    async with conn.transaction():
        row = await _order_for_update(conn, user, order)
        if row["status"] not in ("confirmed", "refunded"):
            raise Refused(Reason.ORDER_STATE, f"the order is {row['status']}, not paid")
        refund_id = request.refund_id or "full"
        done = await conn.fetchrow(
            "SELECT amount_cents, units FROM coupon_refunds"
            " WHERE user_id = $1 AND order_id = $2 AND refund_id = $3",
            user,
            order,
            refund_id,
        )
        if done is not None:
            if not _same_refund(done, request):
                raise Refused(Reason.REFUND_MISMATCH)
            return _state(row, replayed=True)
        plan = _by_items(row, request) if request.items else _by_amount(row, request)
        shares = await _refund_coupons(conn, row, plan, now_ms)
        credit_back = await _refund_credit(conn, row, plan.credit_target, refund_id, now_ms)
        await conn.execute(
            "INSERT INTO coupon_refunds (user_id, order_id, refund_id, amount_cents,"
            " discount_cents, refunded_at, credit_cents, units)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            user,
            order,
            refund_id,
            plan.amount,
            shares,
            at(now_ms),
            credit_back,
            plan.units_delta,
        )
        row = await conn.fetchrow(  # type: ignore[assignment]
            "UPDATE coupon_orders SET refunded_cents = refunded_cents + $3, status = $4,"
            " refunded_credit_cents = $5, refunded_units = $6"
            " WHERE user_id = $1 AND order_id = $2 RETURNING *",
            user,
            order,
            plan.amount,
            "refunded" if plan.whole else "confirmed",
            plan.credit_target,
            plan.units_after,
        )
        return _state(row)


@dataclass(frozen=True, slots=True)
class RefundPlan:
    """One refund, decided: the cents of pay it returns, whether it completes the order,
    each coupon's and the credit's refunded totals after it, and the units per line."""

    amount: int
    whole: bool
    discount_targets: dict[str, int]  # coupon id -> discount refunded in all, after it
    credit_target: int
    units_after: list[int] | None = None
    units_delta: list[int] | None = None


def _by_amount(row: asyncpg.Record, request: RefundRequest) -> RefundPlan:
    """All that is left, or ``amountCents`` of it: coupons and credit in proportion."""
    left = row["pay_cents"] - row["refunded_cents"]
    amount = left if request.amount_cents is None else request.amount_cents
    if request.refund_id is None and amount != left:
        raise Refused(Reason.INVALID_REQUEST, "a partial refund needs its own refundId")
    if amount > left or (request.amount_cents is None and row["status"] == "refunded"):
        raise Refused(Reason.REFUND_TOO_LARGE, f"{left} cents are left to refund")
    refunded, pay = row["refunded_cents"] + amount, row["pay_cents"]
    whole = refunded == pay
    if row["refunded_units"] is not None and not whole:
        raise Refused(Reason.INVALID_REQUEST, "this order is refunded by items: give items")

    def part(cents: int) -> int:
        return cents if whole or not pay else cents * refunded // pay

    discounts: dict[str, int] = _allocation(row).get("discounts", {})
    return RefundPlan(amount, whole, {c: part(d) for c, d in discounts.items()},
                      part(row["credit_cents"]), row["refunded_units"])  # fmt: skip


def _by_items(row: asyncpg.Record, request: RefundRequest) -> RefundPlan:
    """The units of ``items`` returned: each coupon's and the credit's share per item."""
    allocation = _allocation(row)
    if "items" not in allocation:
        raise Refused(Reason.INVALID_REQUEST, "this order predates per-item refunds: refund "
                      "by amountCents")  # fmt: skip
    if request.refund_id is None or request.amount_cents is not None:
        raise Refused(Reason.INVALID_REQUEST, "a refund by items needs a refundId and no amount")
    if row["refunded_cents"] and row["refunded_units"] is None:
        raise Refused(Reason.INVALID_REQUEST, "this order is refunded by amount: give amountCents")
    lines = _lines(allocation)
    before = list(row["refunded_units"] or [0] * len(lines))
    delta = _units(request, len(lines))
    after = [b + d for b, d in zip(before, delta, strict=True)]
    if any(a > line.quantity for a, line in zip(after, lines, strict=True)):
        raise Refused(Reason.REFUND_TOO_LARGE, "more units than the order has left to refund")
    shares = itemized.step(lines, before, after)
    total = itemized.returned(lines, after)
    whole = all(a == line.quantity for a, line in zip(after, lines, strict=True))
    return RefundPlan(shares.pay_cents, whole, total.discounts, total.credit_cents, after, delta)


def _units(request: RefundRequest, count: int) -> list[int]:
    delta = [0] * count
    for item in request.items or []:
        if item.line >= count:
            raise Refused(Reason.INVALID_REQUEST, f"the order has no line {item.line}")
        delta[item.line] += item.quantity
    return delta


def _allocation(row: asyncpg.Record) -> dict[str, Any]:
    decoded: dict[str, Any] = msgspec.json.decode(row["allocation"])
    return decoded


def _lines(allocation: dict[str, Any]) -> list[itemized.Line]:
    """The order's lines as the lock priced them (``items``: [total, quantity] per line)."""
    per_coupon: dict[str, list[int]] = allocation.get("lines", {})
    credit: list[int] = allocation.get("credit") or [0] * len(allocation["items"])
    return [
        itemized.Line(total, quantity, {c: cents[i] for c, cents in per_coupon.items()}, credit[i])
        for i, (total, quantity) in enumerate(allocation["items"])
    ]


def _same_refund(done: asyncpg.Record, request: RefundRequest) -> bool:
    """Whether ``request`` is the refund ``done`` recorded (a retry)."""
    if request.items:
        return list(done["units"] or []) == _units(request, len(done["units"] or []))
    return request.amount_cents in (None, done["amount_cents"])


async def _refund_credit(
    conn: Conn, order: asyncpg.Record, target: int, refund_id: str, now_ms: int
) -> int:
    """Give back the order's credit up to ``target`` cents refunded in all (principal and
    bonus in the proportions spent: ``spend.refund``); the cents this refund returns."""
    back: int = target - order["refunded_credit_cents"]
    if back:
        hold = hold_id(order["user_id"], order["order_id"])
        await spend.refund(conn, hold, back, f"{hold}#{refund_id}", now_ms)
    return back


async def _refund_coupons(conn: Conn, order: asyncpg.Record, plan: RefundPlan, now_ms: int) -> int:
    """Move the order's coupons for a refund; return the cents of discount it gives back
    (each coupon up to its target in ``plan``; a whole refund gives back every discount)."""
    whole = plan.whole
    user, order_id = order["user_id"], order["order_id"]
    coupons = await conn.fetch(
        "SELECT coupon_id, campaign_id, discount_cents, refunded_discount_cents, expires_at"
        " FROM coupons WHERE user_id = $1 AND order_id = $2 AND status = 'used'"
        " ORDER BY coupon_id FOR UPDATE",
        user,
        order_id,
    )
    known = await wallet.campaigns(conn, {c["campaign_id"] for c in coupons})
    given = 0
    changes: list[tuple[str, str, str, int]] = []
    for c in coupons:
        target = c["discount_cents"] if whole else plan.discount_targets.get(str(c["coupon_id"]), 0)
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
        amount_cents=plan.amount,
        actor=f"user:{user}",
        now_ms=now_ms,
    )
    return given
