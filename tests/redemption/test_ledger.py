"""Reconciliation of use: figures per campaign; a row changed outside a transition, or
discount money past the budget, is an alarm."""

from __future__ import annotations

import msgspec

from gateway.ops.reconcile import Figures, reconcile, render
from gateway.redemption import orders
from gateway.redemption.cart import UseRequest
from gateway.redemption.ledger import use_report
from tests.helpers import T0_MS
from tests.redemption.conftest import use_body

NOW = T0_MS + 3_600_000


async def use(pool, order: str, coupon: str) -> None:
    async with pool.acquire() as conn:
        request = msgspec.convert(use_body(order, [coupon]), UseRequest)
        await orders.lock(conn, "u1", request, now_ms=NOW, ttl_ms=900_000, new_user=False)
        await orders.confirm(conn, "u1", order, NOW)


async def test_figures_of_use_and_a_clean_reconcile(orders_pool, redis, make_campaign, give):
    campaign = await make_campaign(budgetCents=1_000_000)
    used = await give(campaign)
    await give(campaign)
    await use(orders_pool, "o-1", used)
    report = await use_report(orders_pool, campaign.id, campaign.budget_cents)
    assert (report.used, report.discount_cents, report.drifted, report.rows) == (1, 10_000, 0, 2)
    assert not report.alarm
    [full] = await reconcile(orders_pool, redis, [campaign], ids=False)
    assert full.use == report
    assert "used 1" in render([full], None)
    figures = Figures()
    figures.update([full], None, 0.0)
    names = {family.name for family in figures.collect()}
    assert {"flashclaim_reconcile_used", "flashclaim_reconcile_discount_cents"} <= names


async def test_a_row_changed_outside_a_transition_is_drift(orders_pool, make_campaign, give):
    campaign = await make_campaign()
    coupon = await give(campaign)
    await orders_pool.execute("UPDATE coupons SET status = 'used' WHERE coupon_id = $1", coupon)
    report = await use_report(orders_pool, campaign.id, None)
    assert report.drifted == 1
    assert report.alarm


async def test_discount_past_the_budget_is_an_alarm(orders_pool, make_campaign, give):
    campaign = await make_campaign(budgetCents=10_000)
    await use(orders_pool, "o-1", await give(campaign))
    assert not (await use_report(orders_pool, campaign.id, 10_000)).alarm
    assert (await use_report(orders_pool, campaign.id, 9_999)).over_budget
