"""The ledger against a real PostgreSQL: top-ups, spends, refunds, withdrawals, expiry,
each leaving balances equal to the journal to the cent."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from gateway.credit.journal import (
    CreditError,
    HoldClosed,
    InsufficientCredit,
    KeyReused,
    PaymentMismatch,
)
from gateway.credit.ledger import DAY_MS, Ledger
from gateway.credit.reconcile import reconcile
from gateway.credit.sweeper import sweep
from gateway.credit.topups import Topups
from gateway.infra.auth import Claimant
from gateway.infra.clock import ManualClock


def member(user_id: str, level: int = 0, new_user: bool = False) -> Claimant:
    return Claimant(user_id, new_user, level, "", 2**40, 0)


async def funded(topups: Topups, user: str, pay: int = 50_000, level: int = 0) -> None:
    topup = await topups.create(member(user, level), "double11", pay, f"req-{user}-{pay}")
    await topups.pay(topup.topup_id, f"pay-{topup.topup_id}", pay)


async def assert_whole(pool: asyncpg.Pool) -> None:
    report = await reconcile(pool)
    assert report.ok, report


async def test_pay_500_get_550_counts_when_the_payment_arrives(
    topups: Topups, ledger: Ledger, credit_pool: asyncpg.Pool
) -> None:
    topup = await topups.create(member("ann"), "double11", 50_000, "req-00000001")
    assert (topup.bonus_cents, topup.status) == (5_000, "pending")
    assert (await ledger.balance("ann")).available_cents == 0
    paid = await topups.pay(topup.topup_id, "wx-1", 50_000)
    again = await topups.pay(topup.topup_id, "wx-1", 50_000)  # the provider retries
    assert paid == again
    assert paid.status == "paid"
    balance = await ledger.balance("ann")
    assert (balance.principal_cents, balance.bonus_cents) == (50_000, 5_000)
    with pytest.raises(PaymentMismatch):
        await topups.pay(topup.topup_id, "wx-2", 50_000)  # a second payment of one order
    other = await topups.create(member("ann"), "double11", 10_000, "req-00000002")
    with pytest.raises(PaymentMismatch):
        await topups.pay(other.topup_id, "wx-3", 9_999)  # not the amount ordered
    with pytest.raises(PaymentMismatch):
        await topups.pay(other.topup_id, "wx-1", 10_000)  # a payment id already used
    assert (await ledger.balance("ann")).available_cents == 55_000
    await assert_whole(credit_pool)


async def test_level_bonus_and_first_top_up_gifts(topups: Topups, ledger: Ledger) -> None:
    first = await topups.create(member("vip", level=5, new_user=True), "double11", 50_000,
                                "req-vip-0001")  # fmt: skip
    assert first.bonus_cents == 5_000 + 1_000  # tier + 2 % for level 3 and above
    paid = await topups.pay(first.topup_id, "wx-vip-1", 50_000)
    assert paid.gift_cents == 1_000 + 2_000  # new user + level 5, with the first top-up only
    second = await topups.create(member("vip", level=5), "double11", 10_000, "req-vip-0002")
    assert (await topups.pay(second.topup_id, "wx-vip-2", 10_000)).gift_cents == 0
    assert (await ledger.balance("vip")).bonus_cents == 6_000 + 3_000 + 500 + 200


async def test_lock_confirm_cancel_and_lock_expiry(
    topups: Topups, ledger: Ledger, clock: ManualClock, credit_pool: asyncpg.Pool
) -> None:
    await funded(topups, "bob")  # 50 000 principal + 5 000 bonus
    hold = await ledger.lock("o-1", "bob", 11_000, ttl_ms=60_000)
    assert hold["status"] == "locked"
    assert await ledger.lock("o-1", "bob", 11_000, ttl_ms=60_000) == hold  # replayed
    with pytest.raises(KeyReused):
        await ledger.lock("o-1", "bob", 12_000, ttl_ms=60_000)
    balance = await ledger.balance("bob")
    assert (balance.principal_cents, balance.bonus_cents, balance.held_cents) == (
        40_000,
        4_000,
        11_000,
    )  # proportional: 10/11 principal, 1/11 bonus
    assert (await ledger.confirm("o-1"))["status"] == "confirmed"
    assert (await ledger.confirm("o-1"))["status"] == "confirmed"
    with pytest.raises(HoldClosed):
        await ledger.cancel("o-1")
    await ledger.lock("o-2", "bob", 1_100, ttl_ms=60_000)
    await ledger.cancel("o-2")
    await ledger.cancel("o-2")
    with pytest.raises(HoldClosed):
        await ledger.confirm("o-2")
    await ledger.lock("o-3", "bob", 1_100, ttl_ms=60_000)
    clock.advance(60_000)
    with pytest.raises(HoldClosed):
        await ledger.confirm("o-3")  # past its time: not spent, even before the sweeper runs
    assert (await sweep(credit_pool, clock)).released_holds == 1
    assert (await sweep(credit_pool, clock)).released_holds == 0
    with pytest.raises(HoldClosed):
        await ledger.confirm("o-3")
    assert (await ledger.balance("bob")).available_cents == 44_000
    with pytest.raises(InsufficientCredit):
        await ledger.lock("o-4", "bob", 44_001, ttl_ms=60_000)
    await assert_whole(credit_pool)


async def test_refunds_return_credit_in_the_proportions_it_was_spent(
    topups: Topups, ledger: Ledger, credit_pool: asyncpg.Pool
) -> None:
    await funded(topups, "cat")  # 50 000 + 5 000
    await ledger.lock("o-9", "cat", 33_001, ttl_ms=60_000)
    await ledger.confirm("o-9")
    parts = await credit_pool.fetch(
        "SELECT amount_cents FROM credit_hold_parts WHERE order_id = 'o-9' ORDER BY account_id"
    )
    spent = [p["amount_cents"] for p in parts]
    assert sum(spent) == 33_001
    assert spent[1] == 33_001 * 5_000 // 55_000
    for i, item in enumerate([10_000, 7, 22_992, 1, 1]):  # per item, odd cents included
        await ledger.refund("o-9", item, f"r-9-{i}")
        await ledger.refund("o-9", item, f"r-9-{i}")  # replayed: nothing twice
    with pytest.raises(HoldClosed):
        await ledger.refund("o-9", 1, "r-9-x")
    returned = await credit_pool.fetch(
        "SELECT refunded_cents FROM credit_hold_parts WHERE order_id = 'o-9' ORDER BY account_id"
    )
    assert [r["refunded_cents"] for r in returned] == spent
    balance = await ledger.balance("cat")
    assert (balance.principal_cents, balance.bonus_cents) == (50_000, 5_000)
    await assert_whole(credit_pool)


async def test_withdrawal_forfeits_the_matching_bonus(
    topups: Topups, ledger: Ledger, credit_pool: asyncpg.Pool
) -> None:
    await funded(topups, "dan")
    assert await ledger.withdraw("dan", 25_000, "w-1") == (25_000, 2_500)
    assert await ledger.withdraw("dan", 25_000, "w-1") == (25_000, 2_500)
    balance = await ledger.balance("dan")
    assert (balance.principal_cents, balance.bonus_cents) == (25_000, 2_500)
    with pytest.raises(InsufficientCredit):
        await ledger.withdraw("dan", 25_001, "w-2")
    await assert_whole(credit_pool)


async def test_bonus_expires_once_with_a_reminder_before(
    topups: Topups, ledger: Ledger, clock: ManualClock, credit_pool: asyncpg.Pool
) -> None:
    await funded(topups, "eve")
    await ledger.grant("eve", 300, valid_days=1, key="sorry-eve")
    clock.advance(DAY_MS - 1)
    first = await sweep(credit_pool, clock)
    assert (first.reminders, first.expired_buckets) == (1, 0)  # the grant, soon due
    clock.advance(1)
    swept = await sweep(credit_pool, clock)
    assert (swept.expired_buckets, swept.expired_cents) == (1, 300)
    assert (await sweep(credit_pool, clock)).expired_buckets == 0
    clock.advance(30 * DAY_MS)
    assert (await sweep(credit_pool, clock)).expired_cents == 5_000
    balance = await ledger.balance("eve")
    assert (balance.principal_cents, balance.bonus_cents) == (50_000, 0)
    kinds = await credit_pool.fetch("SELECT kind FROM credit_events ORDER BY event_id")
    assert [k["kind"] for k in kinds].count("bonus_expired") == 2
    await assert_whole(credit_pool)


async def test_a_hundred_concurrent_spends_never_go_below_zero(
    topups: Topups, ledger: Ledger, credit_pool: asyncpg.Pool
) -> None:
    await funded(topups, "herd", pay=10_000)  # 10 000 + 500 bonus = 10 500
    results = await asyncio.gather(
        *(ledger.lock(f"h-{i}", "herd", 137, ttl_ms=60_000) for i in range(100)),
        return_exceptions=True,
    )
    won = [r for r in results if not isinstance(r, BaseException)]
    refused = [r for r in results if isinstance(r, BaseException)]
    assert all(isinstance(r, InsufficientCredit) for r in refused), refused
    assert len(won) == 10_500 // 137  # 76: every cent accounted for, none twice
    balance = await ledger.balance("herd")
    assert balance.held_cents == 137 * len(won)
    assert balance.available_cents == 10_500 - 137 * len(won) >= 0
    await assert_whole(credit_pool)


async def test_a_lock_joins_the_callers_transaction(
    topups: Topups, ledger: Ledger, credit_pool: asyncpg.Pool
) -> None:
    await funded(topups, "fay")

    async def checkout() -> None:
        async with credit_pool.acquire() as conn, conn.transaction():
            await ledger.lock("o-tx", "fay", 5_000, ttl_ms=60_000, conn=conn)
            raise RuntimeError("the coupons of this order could not be locked")

    with pytest.raises(RuntimeError):
        await checkout()
    assert (await ledger.balance("fay")).held_cents == 0  # both or neither
    with pytest.raises(CreditError):
        await ledger.confirm("o-tx")
    await assert_whole(credit_pool)
