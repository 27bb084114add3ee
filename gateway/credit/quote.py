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

import msgspec

from gateway.credit.ledger import Balance
from gateway.credit.plan import SpendScope


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
    allowed = set(scope.categories)
    eligible = sum(i.cents for i in items if scope.everywhere or i.category in allowed)
    credit = min(eligible, balance.available_cents)
    if wanted_cents is not None:
        credit = min(credit, max(0, wanted_cents))
    bonus = credit * balance.bonus_cents // balance.available_cents if credit else 0
    return CreditQuote(credit, credit - bonus, bonus, due - credit, eligible)
