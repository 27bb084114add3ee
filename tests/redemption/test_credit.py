"""Paying an order with coupons and shopping credit together: the quote applies coupons
first, then credit; the lock holds both in one transaction (or neither); confirm, cancel,
expiry and refunds move both, and the credit ledger stays whole to the cent."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import msgspec
import pytest

from gateway.credit import journal
from gateway.credit.ledger import Ledger
from gateway.credit.plan import decode_plan
from gateway.credit.reconcile import reconcile
from gateway.credit.store import PlanStore
from gateway.credit.topups import Topups
from gateway.infra.clock import ManualClock
from gateway.redemption import orders
from gateway.redemption.cart import Cart, RefundRequest, UseRequest
from gateway.redemption.sweep import sweep
from tests.credit.conftest import PLAN
from tests.credit.test_ledger import funded, member
from tests.helpers import T0_MS, auth
from tests.redemption.conftest import CART, use_body

NOW = T0_MS + 3_600_000
BOOKS_PLAN = {**PLAN, "id": "books", "spendScope": {"everywhere": False, "categories": ["books"]}}


@pytest.fixture
def now(clock: ManualClock) -> ManualClock:
    clock.set(NOW)
    return clock


async def post(client: Any, path: str, body: Any = None, user: str = "u1") -> tuple[int, Any]:
    response = await client.post(path, json=body, headers=auth(user))
    return response.status, await response.json()


async def whole(pool: asyncpg.Pool) -> None:
    report = await reconcile(pool)
    assert report.ok, report


async def coupon_status(pool: asyncpg.Pool, coupon: str) -> str:
    return str(await pool.fetchval("SELECT status FROM coupons WHERE coupon_id = $1", coupon))


async def test_quote_lock_confirm_refund_with_coupons_and_credit(
    client, now, make_campaign, give, orders_pool, topups: Topups, ledger: Ledger
):
    campaign = await make_campaign()  # 满500减100 on everything
    coupon = await give(campaign)
    await funded(topups, "u1", pay=10_000)  # 10 000 principal + 500 bonus
    status, quoted = await post(client, "/api/checkout/quote", CART)
    assert status == 200, quoted
    assert quoted["best"]["payCents"] == 50_000
    assert quoted["credit"] == {"creditCents": 10_500, "principalCents": 10_000,
                                "bonusCents": 500, "payableCents": 39_500,
                                "eligibleCents": 50_000}  # fmt: skip
    status, none = await post(client, "/api/checkout/quote", {**CART, "creditCents": 0})
    assert (none["credit"]["creditCents"], none["credit"]["payableCents"]) == (0, 50_000)

    body = use_body("order-c1", [coupon], creditCents=quoted["credit"]["creditCents"])
    status, locked = await post(client, "/api/coupon/use", body)
    assert (status, locked["reason"]) == (200, "LOCKED"), locked
    assert (locked["creditCents"], locked["creditPrincipalCents"], locked["creditBonusCents"]) == (
        10_500, 10_000, 500)  # fmt: skip
    assert locked["dueCents"] == 39_500
    assert sum(locked["creditAllocation"]) == 10_500
    balance = await ledger.balance("u1")
    assert (balance.available_cents, balance.held_cents) == (0, 10_500)
    status, again = await post(client, "/api/coupon/use", body)
    assert again == locked  # a replay answers the same credit, and holds nothing more
    assert (await ledger.balance("u1")).held_cents == 10_500
    status, other = await post(client, "/api/coupon/use", {**body, "creditCents": 100})
    assert (status, other["reason"]) == (409, "ORDER_MISMATCH")

    status, paid = await post(client, "/api/coupon/use/order-c1/confirm")
    assert (status, paid["reason"], paid["creditCents"]) == (200, "CONFIRMED", 10_500)
    balance = await ledger.balance("u1")
    assert (balance.available_cents, balance.held_cents) == (0, 0)
    await whole(orders_pool)

    status, refunded = await post(client, "/api/coupon/use/order-c1/refund")
    assert (status, refunded["reason"], refunded["refundedCreditCents"]) == (
        200, "REFUNDED", 10_500)  # fmt: skip
    balance = await ledger.balance("u1")
    assert (balance.principal_cents, balance.bonus_cents) == (10_000, 500)
    assert await coupon_status(orders_pool, coupon) == "unused"  # returned while valid
    await whole(orders_pool)


async def test_short_credit_locks_nothing(
    client, now, make_campaign, give, orders_pool, topups: Topups, ledger: Ledger
):
    campaign = await make_campaign()
    coupon = await give(campaign)
    await funded(topups, "u1", pay=10_000)
    before = await ledger.balance("u1")
    status, short = await post(client, "/api/coupon/use",
                               use_body("order-s", [coupon], creditCents=10_501))  # fmt: skip
    assert (status, short["reason"]) == (409, "INSUFFICIENT_CREDIT")
    status, over = await post(client, "/api/coupon/use",
                              use_body("order-s", [coupon], creditCents=50_001))  # fmt: skip
    assert (status, over["reason"]) == (409, "CREDIT_NOT_APPLICABLE")
    assert await coupon_status(orders_pool, coupon) == "unused"
    assert await orders_pool.fetchval("SELECT count(*) FROM coupon_orders") == 0
    assert await orders_pool.fetchval("SELECT count(*) FROM credit_holds") == 0
    assert await ledger.balance("u1") == before
    await whole(orders_pool)
    status, fine = await post(client, "/api/coupon/use",
                              use_body("order-s", [coupon], creditCents=10_500))  # fmt: skip
    assert (status, fine["reason"]) == (200, "LOCKED"), fine


async def test_credit_pays_only_in_its_plans_scope(
    client, now, make_campaign, give, orders_pool, topups: Topups, plans: PlanStore
):
    await plans.create(decode_plan(BOOKS_PLAN))
    topup = await topups.create(member("u1"), "books", 50_000, "req-books-1")
    await topups.pay(topup.topup_id, "wx-books-1", 50_000)
    coupon = await give(await make_campaign())
    status, quoted = await post(client, "/api/checkout/quote", CART)
    book_after_coupon = 10_000 - quoted["best"]["allocation"][coupon][2]
    assert quoted["credit"]["eligibleCents"] == book_after_coupon
    assert quoted["credit"]["creditCents"] == book_after_coupon
    status, over = await post(
        client, "/api/coupon/use", use_body("order-b", [coupon], creditCents=book_after_coupon + 1)
    )
    assert (status, over["reason"]) == (409, "CREDIT_NOT_APPLICABLE")
    status, locked = await post(
        client, "/api/coupon/use", use_body("order-b", [coupon], creditCents=book_after_coupon)
    )
    assert status == 200, locked
    assert locked["creditAllocation"] == [0, 0, book_after_coupon]


async def test_cancel_and_expiry_return_coupons_and_credit(
    client, now, make_campaign, give, orders_pool, topups: Topups, ledger: Ledger
):
    campaign = await make_campaign()
    first, second = await give(campaign), await give(campaign)
    await funded(topups, "u1", pay=10_000)
    full = await ledger.balance("u1")
    status, _ = await post(client, "/api/coupon/use",
                           use_body("order-x", [first], creditCents=6_000))  # fmt: skip
    status, cancelled = await post(client, "/api/coupon/use/order-x/cancel")
    assert (status, cancelled["reason"]) == (200, "CANCELLED")
    assert await ledger.balance("u1") == full
    assert await coupon_status(orders_pool, first) == "unused"
    status, again = await post(client, "/api/coupon/use/order-x/cancel")
    assert (status, again["status"]) == (200, "cancelled")
    assert await ledger.balance("u1") == full

    status, locked = await post(client, "/api/coupon/use",
                                use_body("order-y", [second], creditCents=7_000))  # fmt: skip
    assert status == 200, locked
    hold = await orders_pool.fetchrow("SELECT * FROM credit_holds WHERE order_id LIKE '%order-y'")
    assert int(hold["expires_at"].timestamp() * 1000) == locked["lockedUntilMs"]
    now.set(locked["lockedUntilMs"])
    assert (await sweep(orders_pool, now.now_ms())).locks_expired == 1
    assert await ledger.balance("u1") == full
    assert await coupon_status(orders_pool, second) == "unused"
    status, late = await post(client, "/api/coupon/use/order-y/confirm")
    assert (status, late["reason"]) == (409, "LOCK_EXPIRED")
    await whole(orders_pool)


async def test_a_partial_refund_returns_credit_in_proportion(
    client, now, make_campaign, give, orders_pool, topups: Topups, ledger: Ledger
):
    coupon = await give(await make_campaign())
    await funded(topups, "u1", pay=10_000)
    await post(client, "/api/coupon/use", use_body("order-p", [coupon], creditCents=10_500))
    await post(client, "/api/coupon/use/order-p/confirm")
    status, part = await post(client, "/api/coupon/use/order-p/refund",
                              {"amountCents": 20_000, "refundId": "r1"})  # fmt: skip
    assert status == 200, part
    assert part["refundedCreditCents"] == 10_500 * 20_000 // 50_000
    status, rest = await post(client, "/api/coupon/use/order-p/refund")
    assert rest["refundedCreditCents"] == 10_500
    balance = await ledger.balance("u1")
    assert (balance.principal_cents, balance.bonus_cents) == (10_000, 500)
    await whole(orders_pool)


async def test_concurrent_orders_of_one_user_share_one_balance(
    now, make_campaign, give, orders_pool, topups: Topups, ledger: Ledger
):
    campaign = await make_campaign()  # coupons given directly: no per-user limit applies
    coupons = [await give(campaign) for _ in range(30)]
    await funded(topups, "u1", pay=10_000)  # 10 500 in all
    spend = 1_300  # 8 orders fit (10 400), the 9th does not

    async def one(i: int) -> str:
        request = UseRequest(order_id=f"race-{i}", coupon_ids=[coupons[i]], credit_cents=spend,
                             **_cart())  # fmt: skip
        async with orders_pool.acquire() as conn:
            try:
                state = await orders.lock(conn, "u1", request, now_ms=NOW, ttl_ms=900_000,
                                          new_user=False)  # fmt: skip
            except orders.Refused as exc:
                return exc.reason.value
            return state.status

    results = await asyncio.gather(*(one(i) for i in range(len(coupons))))
    assert results.count("locked") == 10_500 // spend
    assert set(results) == {"locked", "INSUFFICIENT_CREDIT"}
    balance = await ledger.balance("u1")
    assert balance.held_cents == 8 * spend
    assert balance.available_cents == 10_500 - 8 * spend
    locked_coupons = await orders_pool.fetchval(
        "SELECT count(*) FROM coupons WHERE status = 'locked'")  # fmt: skip
    assert locked_coupons == 8  # an order without its credit kept no coupon
    await whole(orders_pool)
    async with orders_pool.acquire() as conn:
        for i, result in enumerate(results):
            if result == "locked":
                await orders.confirm(conn, "u1", f"race-{i}", NOW + 1)
            refund = RefundRequest()
            if result == "locked" and i % 2:
                await orders.refund(conn, "u1", f"race-{i}", refund, NOW + 2)
    balance = await ledger.balance("u1")
    refunded = sum(1 for i, r in enumerate(results) if r == "locked" and i % 2)
    assert balance.available_cents == 10_500 - (8 - refunded) * spend
    await whole(orders_pool)


async def test_the_sweeper_never_deadlocks_with_a_new_lock_of_the_same_user(
    now, make_campaign, give, orders_pool, topups: Topups, ledger: Ledger
):
    """Two expired orders of u1 (both with credit), and a new lock by u1 that has taken the
    second order's coupon over and now asks for u1's credit lock, as ``orders.lock`` does
    (coupons first, then the user's credit). A sweeper releasing both orders in one
    transaction would hold u1's credit lock (from the first order) while waiting on that
    coupon: PostgreSQL would detect a deadlock. One transaction per order never does."""
    campaign = await make_campaign()
    first, second = await give(campaign), await give(campaign)
    await funded(topups, "u1", pay=10_000)
    async with orders_pool.acquire() as conn:
        for i, coupon in enumerate((first, second)):
            request = UseRequest(order_id=f"stale-{i}", coupon_ids=[coupon], credit_cents=1_000,
                                 **_cart())  # fmt: skip
            await orders.lock(conn, "u1", request, now_ms=NOW + i, ttl_ms=60_000,
                              new_user=False)  # fmt: skip
    later = NOW + 120_000
    async with orders_pool.acquire() as new_lock, new_lock.transaction():
        await new_lock.execute("SELECT 1 FROM coupons WHERE coupon_id = $1 FOR UPDATE", second)
        sweeping = asyncio.create_task(sweep(orders_pool, later))
        while not await orders_pool.fetchval(  # the sweeper waits on the second coupon
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
            " AND datname = current_database()"
        ):
            assert not sweeping.done(), sweeping.result()
            await asyncio.sleep(0.05)
        await journal.lock_user(new_lock, "u1")  # granted: the sweeper holds no credit lock
    swept = await sweeping
    assert swept.locks_expired == 2
    assert (await ledger.balance("u1")).held_cents == 0
    await whole(orders_pool)


def _cart() -> dict[str, Any]:
    cart = msgspec.convert(CART, Cart)
    return {"amount_cents": cart.amount_cents, "items": cart.items, "channel": cart.channel,
            "city": cart.city}  # fmt: skip


async def test_the_readme_example_to_the_cent(
    client, now, make_campaign, give, orders_pool, topups: Topups, ledger: Ledger
):
    """README "Shopping credit": 50 000 principal + 5 500 bonus, a 满500减100 coupon."""
    coupon = await give(await make_campaign())
    await funded(topups, "u1", pay=50_000)
    await ledger.grant("u1", 500, 7, "sorry-u1-1")
    cart = {"amountCents": 60_000, "channel": "app", "items": [
        {"sku": "phone", "category": "digital", "priceCents": 40_000, "quantity": 1},
        {"sku": "novel", "category": "books", "priceCents": 10_000, "quantity": 2}]}  # fmt: skip
    status, quoted = await post(client, "/api/checkout/quote", cart)
    assert quoted["credit"] == {"creditCents": 50_000, "principalCents": 45_046,
                                "bonusCents": 4_954, "payableCents": 0,
                                "eligibleCents": 50_000}  # fmt: skip
    body = {**cart, "orderId": "order-7", "couponIds": [coupon], "creditCents": 20_000}
    status, locked = await post(client, "/api/coupon/use", body)
    assert status == 200, locked
    assert (locked["creditPrincipalCents"], locked["creditBonusCents"]) == (18_019, 1_981)
    assert (locked["creditAllocation"], locked["dueCents"]) == ([13_333, 6_667], 30_000)
    await post(client, "/api/coupon/use/order-7/confirm")
    one_novel = {"items": [{"line": 1, "quantity": 1}], "refundId": "rf-7-1"}
    status, part = await post(client, "/api/coupon/use/order-7/refund", one_novel)
    assert (part["reason"], part["refundedCents"], part["refundedCreditCents"]) == (
        "PARTIALLY_REFUNDED", 8_333, 3_333)  # fmt: skip
    status, rest = await post(client, "/api/coupon/use/order-7/refund")
    assert (rest["reason"], rest["refundedCreditCents"]) == ("REFUNDED", 20_000)
    balance = await ledger.balance("u1")
    assert (balance.principal_cents, balance.bonus_cents) == (50_000, 5_500)
    await whole(orders_pool)
