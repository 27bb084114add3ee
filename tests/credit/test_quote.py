"""The credit part of a quote: after coupons, within the plan's scope, and the preview of
principal and bonus is what the lock then takes."""

from __future__ import annotations

import asyncpg

from gateway.credit.ledger import Ledger
from gateway.credit.plan import SpendScope
from gateway.credit.quote import Item, quote_credit
from gateway.credit.topups import Topups
from tests.credit.test_ledger import funded


async def test_credit_pays_what_coupons_leave_within_scope(
    topups: Topups, ledger: Ledger, credit_pool: asyncpg.Pool
) -> None:
    await funded(topups, "gus", pay=10_000)  # 10 000 principal + 500 bonus
    balance = await ledger.balance("gus")
    # A 满399减50 order: 39 900 of goods, the coupon took 5 000, spread over the items.
    items = [Item("food", 30_000), Item("gift-cards", 4_900)]
    scoped = quote_credit(balance, SpendScope(everywhere=False, categories=["food"]), items)
    assert (scoped.eligible_cents, scoped.credit_cents) == (30_000, 10_500)
    assert scoped.payable_cents == 34_900 - 10_500
    small = quote_credit(balance, SpendScope(), [Item("food", 2_100)])
    assert (small.credit_cents, small.payable_cents) == (2_100, 0)
    asked = quote_credit(balance, SpendScope(), items, wanted_cents=1_050)
    hold = await ledger.lock("o-quote", "gus", asked.credit_cents, ttl_ms=60_000)
    parts = await credit_pool.fetch(
        "SELECT a.kind, p.amount_cents FROM credit_hold_parts p JOIN credit_accounts a"
        " USING (account_id) WHERE p.order_id = $1 ORDER BY a.kind DESC",
        hold["order_id"],
    )
    assert [(p["kind"], p["amount_cents"]) for p in parts] == [
        ("principal", asked.principal_cents), ("bonus", asked.bonus_cents)]  # fmt: skip
