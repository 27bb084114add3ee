"""Top-up orders: created by the user, counted only when their payment callback arrives.

``create`` records what the user will pay and what the plan promises for it (bonus by
tier and member level, fixed at creation, so a plan changed while the user pays does not
change the deal). ``pay`` is the payment provider's callback, authenticated by an HMAC of
its body with a shared secret (``FLASHCLAIM_CREDIT_PAYMENT_SECRET``): once per payment id
(``payment_id`` UNIQUE) and once per top-up (entry key ``topup:<id>``): the principal,
the bonus bucket and the gifts of a first top-up in one entry. A callback repeated is
answered as the first was; another payment for a paid top-up, or a different amount, is
refused (``PAYMENT_MISMATCH``: the provider must return that money).
"""

from __future__ import annotations

import hashlib
import hmac
import uuid

import asyncpg
import msgspec

from gateway.credit import journal
from gateway.credit.journal import (
    Conn,
    PaymentMismatch,
    PlanInactive,
    TopupNotFound,
    TopupOutOfRange,
    at,
    ms_of,
    transaction,
)
from gateway.credit.ledger import DAY_MS
from gateway.credit.store import PlanStore
from gateway.infra.auth import Claimant
from gateway.infra.clock import Clock

_TOPUP_IDS = uuid.UUID("5d3f0c8e-6a4b-4f1e-9b53-63726564697f")


class Topup(msgspec.Struct, rename="camel"):
    """A top-up order and what it earns when paid."""

    topup_id: str
    plan_id: str
    pay_cents: int
    bonus_cents: int
    status: str
    created_at_ms: int
    gift_cents: int = 0
    payment_id: str | None = None


def signature(secret: str, body: bytes) -> str:
    """The callback's ``X-Flashclaim-Signature``: hex HMAC-SHA256 of the body."""
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def signed(secret: str, body: bytes, given: str) -> bool:
    """Whether ``given`` is the body's signature (constant time; no secret: never)."""
    return bool(secret) and hmac.compare_digest(signature(secret, body), given)


def _view(row: asyncpg.Record) -> Topup:
    return Topup(row["topup_id"], row["plan_id"], row["pay_cents"], row["bonus_cents"],
                 row["status"], ms_of(row["created_at"]), row["gift_cents"],
                 row["payment_id"])  # fmt: skip


class Topups:
    """Top-up orders and their payment."""

    def __init__(self, pool: asyncpg.Pool, plans: PlanStore, clock: Clock) -> None:
        self.pool = pool
        self.plans = plans
        self.clock = clock

    async def create(self, user: Claimant, plan_id: str, pay_cents: int, request_id: str) -> Topup:
        """A pending top-up (the same ``request_id`` again: the same order)."""
        plan = await self.plans.get(plan_id)
        if not plan.active:
            raise PlanInactive(f"credit plan {plan_id} is not open for top-ups")
        if not plan.min_pay_cents <= pay_cents <= plan.max_pay_cents:
            raise TopupOutOfRange(
                f"plan {plan_id} takes {plan.min_pay_cents} to {plan.max_pay_cents} cents"
            )
        topup_id = str(uuid.uuid5(_TOPUP_IDS, f"{user.user_id}\n{request_id}"))
        bonus = plan.bonus_for(pay_cents, user.level)
        row = await self.pool.fetchrow(
            "INSERT INTO credit_topups (topup_id, user_id, plan_id, pay_cents, bonus_cents,"
            " level, new_user, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
            " ON CONFLICT (topup_id) DO NOTHING RETURNING *",
            topup_id, user.user_id, plan_id, pay_cents, bonus, user.level, user.new_user,
            at(self.clock.now_ms()),
        )  # fmt: skip
        if row is None:
            row = await self.pool.fetchrow(
                "SELECT * FROM credit_topups WHERE topup_id = $1", topup_id
            )
            assert row is not None
            if row["plan_id"] != plan_id or row["pay_cents"] != pay_cents:
                raise journal.KeyReused("this requestId was used for another top-up")
        return _view(row)

    async def get(self, topup_id: str, user_id: str | None = None) -> Topup:
        """A top-up (of ``user_id`` when given); ``TopupNotFound`` if none."""
        row = await self.pool.fetchrow("SELECT * FROM credit_topups WHERE topup_id = $1",
                                       topup_id)  # fmt: skip
        if row is None or (user_id is not None and row["user_id"] != user_id):
            raise TopupNotFound(f"no top-up {topup_id}")
        return _view(row)

    async def pay(
        self, topup_id: str, payment_id: str, amount_cents: int,
        conn: Conn | None = None,
    ) -> Topup:  # fmt: skip
        """The payment arrived: credit the principal, the bonus and first-top-up gifts."""
        now = self.clock.now_ms()
        async with transaction(self.pool, conn) as c:
            user = await c.fetchval("SELECT user_id FROM credit_topups WHERE topup_id = $1",
                                    topup_id)  # fmt: skip
            if user is None:
                raise TopupNotFound(f"no top-up {topup_id}")
            await journal.lock_user(c, user)
            row = await c.fetchrow("SELECT * FROM credit_topups WHERE topup_id = $1", topup_id)
            assert row is not None
            if row["status"] == "paid":
                if row["payment_id"] == payment_id and row["pay_cents"] == amount_cents:
                    return _view(row)
                raise PaymentMismatch(f"top-up {topup_id} was paid by {row['payment_id']}")
            if amount_cents != row["pay_cents"]:
                raise PaymentMismatch(f"top-up {topup_id} is {row['pay_cents']} cents,"
                                      f" not {amount_cents}")  # fmt: skip
            if await c.fetchval("SELECT 1 FROM credit_topups WHERE payment_id = $1", payment_id):
                raise PaymentMismatch(f"payment {payment_id} paid another top-up")
            plan = await self.plans.get(row["plan_id"], c)
            first = not await c.fetchval(
                "SELECT 1 FROM credit_topups WHERE user_id = $1 AND plan_id = $2"
                " AND status = 'paid'",
                user, row["plan_id"],
            )  # fmt: skip
            gift = plan.gift_for(row["level"], row["new_user"], first)
            entry = await journal.begin(c, f"topup:{topup_id}", user, "topup", now,
                                        {"paymentId": payment_id})  # fmt: skip
            principal = await journal.account(c, user, "principal")
            users = [(principal, row["pay_cents"])]
            bonus = row["bonus_cents"] + gift
            if bonus:
                expires = at(now + plan.bonus_valid_days * DAY_MS)
                bucket = await journal.account(c, user, "bonus", f"topup:{topup_id}", expires)
                users.append((bucket, bonus))
            system = [(journal.SYSTEM_ACCOUNTS["payments"], -row["pay_cents"]),
                      (journal.SYSTEM_ACCOUNTS["promotions"], -bonus)]  # fmt: skip
            await journal.post(c, entry, users, system, principal_cents=row["pay_cents"],
                               bonus_cents=bonus)  # fmt: skip
            try:
                paid = await c.fetchrow(
                    "UPDATE credit_topups SET status = 'paid', payment_id = $2, paid_at = $3,"
                    " gift_cents = $4 WHERE topup_id = $1 RETURNING *",
                    topup_id, payment_id, at(now), gift,
                )  # fmt: skip
            except asyncpg.UniqueViolationError:  # the same payment id, another user, at once
                raise PaymentMismatch(f"payment {payment_id} paid another top-up") from None
            assert paid is not None
            return _view(paid)
