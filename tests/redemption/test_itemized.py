"""Per-item refunds: coupons' discounts and credit come back per item, exact to the cent
(a Hypothesis property of the arithmetic, then an order paid with two coupons and credit
refunded item by item against real PostgreSQL)."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import asyncpg
import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.campaigns.spec import decode_spec
from gateway.campaigns.store import CampaignStore
from gateway.claim.events import ClaimEvent
from gateway.credit.ledger import Ledger
from gateway.credit.plan import decode_plan
from gateway.credit.reconcile import reconcile
from gateway.credit.store import PlanStore
from gateway.credit.topups import Topups
from gateway.handoff.persist import insert_claims
from gateway.infra.clock import ManualClock
from gateway.redemption import orders
from gateway.redemption.cart import RefundRequest, UseRequest
from gateway.redemption.itemized import Line, returned, step
from tests.credit.conftest import PLAN
from tests.credit.test_ledger import funded, member
from tests.helpers import DAY_MS, T0_MS, auth, spec
from tests.redemption.conftest import use_body

NOW = T0_MS + 3_600_000


@st.composite
def orders_and_refunds(draw: st.DrawFn) -> tuple[list[Line], list[list[int]]]:
    """Lines with coupon and credit shares no larger than they cost, and a random
    sequence of refunds of some units that ends with every unit refunded."""
    lines = []
    for _ in range(draw(st.integers(1, 5))):
        total = draw(st.integers(0, 10**7))
        quantity = draw(st.integers(1, 50))
        first = draw(st.integers(0, total))
        second = draw(st.integers(0, total - first))
        credit = draw(st.integers(0, total - first - second))
        lines.append(Line(total, quantity, {"a": first, "b": second}, credit))
    steps: list[list[int]] = []
    left = [line.quantity for line in lines]
    while any(left):
        units = [draw(st.integers(0, n)) for n in left]
        if not any(units):  # every refund returns something: the rest of the first line
            first = next(i for i, n in enumerate(left) if n)
            units[first] = left[first]
        steps.append(units)
        left = [n - u for n, u in zip(left, units, strict=True)]
    return lines, steps


@given(orders_and_refunds())
def test_item_refunds_sum_exactly_and_never_go_negative(case):
    lines, steps = case
    before = [0] * len(lines)
    pay = credit = 0
    discounts = {"a": 0, "b": 0}
    for units in steps:
        after = [b + u for b, u in zip(before, units, strict=True)]
        shares = step(lines, before, after)
        assert 0 <= shares.credit_cents <= shares.pay_cents
        assert all(cents >= 0 for cents in shares.discounts.values())
        pay += shares.pay_cents
        credit += shares.credit_cents
        for coupon, cents in shares.discounts.items():
            discounts[coupon] += cents
        before = after
    assert pay == sum(li.total_cents - sum(li.discounts.values()) for li in lines)
    assert credit == sum(li.credit_cents for li in lines)
    assert discounts == {c: sum(li.discounts[c] for li in lines) for c in ("a", "b")}
    assert returned(lines, before).pay_cents == pay


@pytest.fixture
def now(clock: ManualClock) -> ManualClock:
    clock.set(NOW)
    return clock


async def post(client: Any, path: str, body: Any = None) -> tuple[int, Any]:
    response = await client.post(path, json=body, headers=auth("u1"))
    return response.status, await response.json()


async def test_an_order_refunded_item_by_item(
    client, now, make_campaign, give, orders_pool: asyncpg.Pool, topups: Topups, ledger: Ledger
):
    shop = await give(await make_campaign(usage={"tier": "shop"}))
    platform = await give(await make_campaign(
        faceValueCents=3_333, thresholdCents=3_334, usage={"tier": "platform"}))  # fmt: skip
    await funded(topups, "u1", pay=10_000)  # 10 000 principal + 500 bonus
    await funded(topups, "u1", pay=777)  # + 777 principal: the bonus ratio is not round
    before = await ledger.balance("u1")
    status, locked = await post(
        client, "/api/coupon/use", use_body("order-i", [shop, platform], creditCents=11_111)
    )
    assert status == 200, locked
    await post(client, "/api/coupon/use/order-i/confirm")
    spent = await ledger.balance("u1")
    # A cable, then the novel, then the other cable and the phone: every cent comes back.
    refunds = [[{"line": 1, "quantity": 1}], [{"line": 2, "quantity": 1}],
               [{"line": 1, "quantity": 1}, {"line": 0, "quantity": 1}]]  # fmt: skip
    answers = []
    for n, items in enumerate(refunds):
        status, answer = await post(client, "/api/coupon/use/order-i/refund",
                                    {"items": items, "refundId": f"ri-{n}"})  # fmt: skip
        assert status == 200, answer
        answers.append(answer)
    status, again = await post(client, "/api/coupon/use/order-i/refund",
                               {"items": refunds[0], "refundId": "ri-0"})  # fmt: skip
    assert (status, again["refundedCents"]) == (200, answers[-1]["refundedCents"])
    status, other = await post(client, "/api/coupon/use/order-i/refund",
                               {"items": refunds[1], "refundId": "ri-0"})  # fmt: skip
    assert (status, other["reason"]) == (409, "REFUND_MISMATCH")
    status, more = await post(client, "/api/coupon/use/order-i/refund",
                              {"items": refunds[1], "refundId": "ri-9"})  # fmt: skip
    assert (status, more["reason"]) == (409, "REFUND_TOO_LARGE")

    assert answers[0]["reason"] == "PARTIALLY_REFUNDED"
    assert answers[-1]["reason"] == "REFUNDED"
    assert answers[-1]["refundedCents"] == locked["payCents"]
    assert answers[-1]["refundedCreditCents"] == 11_111
    after = await ledger.balance("u1")
    assert (after.principal_cents, after.bonus_cents) == (before.principal_cents,
                                                          before.bonus_cents)  # fmt: skip
    assert spent.available_cents == before.available_cents - 11_111
    rows = await orders_pool.fetch(
        "SELECT amount_cents, credit_cents, discount_cents FROM coupon_refunds"
        " WHERE order_id = 'order-i' ORDER BY refunded_at, refund_id")  # fmt: skip
    assert sum(r["amount_cents"] for r in rows) == locked["payCents"]
    assert sum(r["discount_cents"] for r in rows) == locked["discountCents"]
    # The novel's refund gave back its own shares: the lock's allocation for line 2.
    novel = rows[1]
    assert novel["credit_cents"] == locked["creditAllocation"][2]
    assert novel["discount_cents"] == sum(cents[2] for cents in locked["allocation"].values())
    assert novel["amount_cents"] == 10_000 - novel["discount_cents"]
    report = await reconcile(orders_pool)
    assert report.ok, report


@st.composite
def carts_and_refunds(draw: st.DrawFn) -> tuple[list[dict[str, Any]], int, list[list[int]]]:
    """A cart, the share of what is left after the coupon to pay with credit (per mille),
    and refunds by items that end with every unit returned."""
    quantities = draw(st.lists(st.integers(1, 4), min_size=1, max_size=3))
    items: list[dict[str, Any]] = [
        {"sku": f"s{i}", "category": "home", "priceCents": draw(st.integers(401, 20_000)),
         "quantity": q} for i, q in enumerate(quantities)]  # fmt: skip
    steps: list[list[int]] = []
    left = list(quantities)
    while any(left):
        units = [draw(st.integers(0, n)) for n in left]
        if not any(units):
            first = next(i for i, n in enumerate(left) if n)
            units[first] = left[first]
        steps.append(units)
        left = [n - u for n, u in zip(left, units, strict=True)]
    return items, draw(st.integers(0, 1000)), steps


_runs = iter(range(10**6))


@settings(max_examples=15, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip
@given(carts_and_refunds())
def test_credit_comes_back_per_item_exactly_against_postgres(database_url: str, case) -> None:
    """Any cart, any credit, any sequence of per-item refunds: each refund's rows, the
    coupon's discount and the user's principal and bonus come back to the cent."""
    asyncio.run(_refund_all(database_url, *case))


async def _refund_all(url: str, items: list[dict[str, Any]], per_mille: int,
                      steps: list[list[int]]) -> None:  # fmt: skip
    run = next(_runs)
    user, now = f"prop-{run}-{uuid.uuid4().hex[:8]}", NOW
    pool = await asyncpg.create_pool(url, min_size=1, max_size=2)
    try:
        clock = ManualClock(now)
        plans = PlanStore(pool)
        if await pool.fetchval("SELECT 1 FROM credit_plans WHERE id = 'prop'") is None:
            await plans.create(decode_plan({**PLAN, "id": "prop"}))
        campaign = f"prop-{uuid.uuid4().hex[:8]}"
        await CampaignStore(pool).create(decode_spec(spec(
            id=campaign, faceValueCents=333, thresholdCents=400)))  # fmt: skip
        coupon = str(uuid.uuid4())
        async with pool.acquire() as conn:
            await insert_claims(conn, [ClaimEvent(coupon, campaign, user, "d", f"r-{coupon[:8]}",
                                                  "app", 333, T0_MS, NOW + DAY_MS)])  # fmt: skip
        topups = Topups(pool, plans, clock)
        topup = await topups.create(member(user), "prop", 10_000, f"req-{uuid.uuid4().hex}")
        await topups.pay(topup.topup_id, f"wx-{topup.topup_id}", 10_000)
        await Ledger(pool, clock).grant(user, 777, 7, f"gift-{user}")
        ledger = Ledger(pool, clock)
        before = await ledger.balance(user)
        amount = sum(i["priceCents"] * i["quantity"] for i in items)
        credit = min(before.available_cents, (amount - 333) * per_mille // 1000)
        body = {"orderId": "o-1", "amountCents": amount, "items": items, "channel": "app",
                "couponIds": [coupon], "creditCents": credit}  # fmt: skip
        async with pool.acquire() as conn:
            request = msgspec.convert(body, UseRequest)
            await orders.lock(conn, user, request, now_ms=now, ttl_ms=900_000, new_user=False)
            await orders.confirm(conn, user, "o-1", now)
            states = []
            for n, units in enumerate(steps):
                chosen = [{"line": i, "quantity": u} for i, u in enumerate(units) if u]
                refund = msgspec.convert({"items": chosen, "refundId": f"r{n}"}, RefundRequest)
                states.append(await orders.refund(conn, user, "o-1", refund, now))
        last = states[-1]
        assert last.status == "refunded"
        assert (last.refunded_cents, last.refunded_credit_cents) == (last.pay_cents, credit)
        rows = await pool.fetch("SELECT * FROM coupon_refunds WHERE user_id = $1", user)
        assert sum(r["amount_cents"] for r in rows) == last.pay_cents
        assert sum(r["credit_cents"] for r in rows) == credit
        assert sum(r["discount_cents"] for r in rows) == last.discount_cents
        assert all(0 <= r["credit_cents"] <= r["amount_cents"] for r in rows)
        after = await ledger.balance(user)
        assert (after.principal_cents, after.bonus_cents) == (before.principal_cents,
                                                              before.bonus_cents)  # fmt: skip
        report = await reconcile(pool)
        assert report.ok, report
    finally:
        await pool.close()
