"""Per-item refunds: coupons' discounts and credit come back per item, exact to the cent
(a Hypothesis property of the arithmetic, then an order paid with two coupons and credit
refunded item by item against real PostgreSQL)."""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.credit.ledger import Ledger
from gateway.credit.reconcile import reconcile
from gateway.credit.topups import Topups
from gateway.infra.clock import ManualClock
from gateway.redemption.itemized import Line, returned, step
from tests.credit.test_ledger import funded
from tests.helpers import T0_MS, auth
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
