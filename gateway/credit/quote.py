"""The credit part of a checkout quote: coupons first, then credit, for what is left.

Coupons are applied first: a "满399减50" coupon's threshold is judged on the goods, and
credit is a way to pay, not a discount, so it pays only what the order still costs after
its coupons (a user may still use credit to reach the amount due on a coupon-discounted
order). Credit pays at most the part of that remainder the plan's spend scope allows
(items of its categories, each item's price after its share of the coupon discount),
at most what the user asks for, at most the balance. The preview splits the amount into
principal and bonus the way ``spend.split`` will (proportionally), so the page shows what
the lock will take.
"""

from __future__ import annotations

import asyncpg
import msgspec

from gateway.credit.journal import Conn
from gateway.credit.ledger import Balance
from gateway.credit.plan import SpendScope
from gateway.credit.spend import allocate


class Item(msgspec.Struct, rename="camel", frozen=True):
    """One line of an order: its category and what it costs after coupons."""

    category: str
    cents: int


class CreditQuote(msgspec.Struct, rename="camel"):
    """What credit would pay for an order, and what is left to pay by other means."""

    credit_cents: int
    principal_cents: int
    bonus_cents: int
    payable_cents: int  # still due after coupons and credit
    eligible_cents: int  # what the plan's scope lets credit pay


def quote_credit(
    balance: Balance, scope: SpendScope, items: list[Item], wanted_cents: int | None = None
) -> CreditQuote:
    """Credit for ``items`` (prices after coupons) from ``balance`` within ``scope``."""
    due = sum(item.cents for item in items)
    can_pay = sum(eligible(scope, items))
    credit = min(can_pay, balance.available_cents)
    if wanted_cents is not None:
        credit = min(credit, max(0, wanted_cents))
    bonus = credit * balance.bonus_cents // balance.available_cents if credit else 0
    return CreditQuote(credit, credit - bonus, bonus, due - credit, can_pay)


async def user_scope(conn: Conn | asyncpg.Pool, user_id: str) -> SpendScope:
    """Where the user's credit may pay: the scope every plan they topped up under allows.

    A user's principal is one account whatever plan it came through, so a cent cannot be
    traced to its plan; the strictest reading keeps every plan's promise (credit bought
    for food never pays for phones): the categories all category-scoped plans share, or
    everywhere when every plan is unscoped (or the user has only gifts)."""
    rows = await conn.fetch(
        "SELECT DISTINCT p.spec->'spendScope' AS scope FROM credit_topups t"
        " JOIN credit_plans p ON p.id = t.plan_id WHERE t.user_id = $1 AND t.status = 'paid'",
        user_id,
    )
    scopes = [_SCOPE.decode(r["scope"]) for r in rows if r["scope"] is not None]
    scoped = [set(s.categories) for s in scopes if not s.everywhere]
    if not scoped:
        return SpendScope()
    shared = set.intersection(*scoped)
    return SpendScope(everywhere=False, categories=sorted(shared))


def eligible(scope: SpendScope, items: list[Item]) -> list[int]:
    """Per item, the cents credit may pay (its price after coupons if in scope, else 0)."""
    allowed = set(scope.categories)
    return [i.cents if scope.everywhere or i.category in allowed else 0 for i in items]


def per_item(credit_cents: int, items: list[Item], scope: SpendScope) -> list[int]:
    """``credit_cents`` over the items credit may pay, in proportion to what each costs
    after coupons (largest remainder): a partial refund returns exactly an item's share."""
    return allocate(credit_cents, eligible(scope, items))


_SCOPE = msgspec.json.Decoder(SpendScope)
