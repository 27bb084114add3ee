"""Races against a real PostgreSQL: every transition ends in exactly one state, the same for
every reader; no coupon is ever held by two orders, no order discounted twice."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import msgspec
import pytest

from gateway.redemption import orders
from gateway.redemption.cart import RefundRequest, UseRequest
from gateway.redemption.operators import void_coupons
from gateway.redemption.sweep import sweep
from tests.helpers import T0_MS
from tests.redemption.conftest import use_body

NOW = T0_MS + 3_600_000
TTL = 900_000


@pytest.fixture
async def many(database_url: str, orders_pool: asyncpg.Pool) -> AsyncIterator[asyncpg.Pool]:
    """A pool wide enough for real contention."""
    pool = await asyncpg.create_pool(database_url, min_size=20, max_size=20)
    yield pool
    await pool.close()


def request(order: str, coupons: list[str], **overrides: Any) -> UseRequest:
    return msgspec.convert(use_body(order, coupons, **overrides), UseRequest)


async def attempt(pool: asyncpg.Pool, coro_of: Any) -> str:
    """The outcome of one transition: the order's status, or the refusal's reason."""
    async with pool.acquire() as conn:
        try:
            state = await coro_of(conn)
        except orders.Refused as exc:
            return exc.reason.value
    return str(state.refusal.value if state.refusal else state.status)


async def test_a_hundred_orders_for_one_coupon_one_wins(many, make_campaign, give):
    coupon = await give(await make_campaign())

    def lock(i: int) -> Any:
        return lambda conn: orders.lock(
            conn, "u1", request(f"o-{i}", [coupon]), now_ms=NOW, ttl_ms=TTL, new_user=False
        )

    outcomes = Counter(await asyncio.gather(*(attempt(many, lock(i)) for i in range(100))))
    assert outcomes == {"locked": 1, "COUPON_LOCKED": 99}
    assert await many.fetchval("SELECT count(*) FROM coupon_orders") == 1
    assert await many.fetchval("SELECT count(*) FROM coupon_events") == 1


async def test_the_same_order_fifty_times_locks_once(many, make_campaign, give):
    coupon = await give(await make_campaign())

    def lock(conn: Any) -> Any:
        return orders.lock(conn, "u1", request("o-1", [coupon]), now_ms=NOW, ttl_ms=TTL,
                           new_user=False)  # fmt: skip

    outcomes = Counter(await asyncio.gather(*(attempt(many, lock) for _ in range(50))))
    assert outcomes == {"locked": 50}
    assert await many.fetchval("SELECT count(*) FROM coupon_events") == 1


async def test_overlapping_multi_coupon_orders_are_all_or_none(many, make_campaign, give):
    tiers = ["shop", "category", "platform"]
    campaigns = [await make_campaign(usage={"tier": t}, faceValueCents=1_000,
                                     thresholdCents=2_000) for t in tiers]  # fmt: skip
    coupons = [await give(c) for c in campaigns]
    # 60 orders, each on two of the three coupons: every pair overlaps every other.
    pairs = [[coupons[i % 3], coupons[(i + 1) % 3]] for i in range(60)]

    def lock(i: int) -> Any:
        return lambda conn: orders.lock(
            conn, "u1", request(f"o-{i}", pairs[i]), now_ms=NOW, ttl_ms=TTL, new_user=False
        )

    outcomes = await asyncio.gather(*(attempt(many, lock(i)) for i in range(60)))
    assert outcomes.count("locked") == 1
    rows = await many.fetch("SELECT coupon_id::text, order_id FROM coupons WHERE status = 'locked'")
    winner = f"o-{outcomes.index('locked')}"
    assert {r["coupon_id"] for r in rows} == set(pairs[outcomes.index("locked")])
    assert {r["order_id"] for r in rows} == {winner}


async def test_cancel_racing_confirm_ends_in_one_state(many, make_campaign, give):
    for round_ in range(10):
        coupon = await give(await make_campaign())
        order = f"o-{round_}"
        async with many.acquire() as conn:
            await orders.lock(conn, "u1", request(order, [coupon]), now_ms=NOW, ttl_ms=TTL,
                              new_user=False)  # fmt: skip
        confirm = attempt(many, lambda conn, o=order: orders.confirm(conn, "u1", o, NOW))
        cancel = attempt(many, lambda conn, o=order: orders.cancel(conn, "u1", o, NOW))
        outcomes = set(await asyncio.gather(confirm, cancel))
        assert outcomes in ({"confirmed", "ORDER_STATE"}, {"cancelled", "ORDER_STATE"})
        status = await many.fetchval("SELECT status FROM coupons WHERE coupon_id = $1", coupon)
        assert status == ("used" if "confirmed" in outcomes else "unused")


async def test_lock_expiry_racing_confirm_ends_in_one_state(many, make_campaign, give):
    coupon = await give(await make_campaign())
    async with many.acquire() as conn:
        await orders.lock(conn, "u1", request("o-1", [coupon]), now_ms=NOW, ttl_ms=TTL,
                          new_user=False)  # fmt: skip
    late = NOW + TTL
    confirm = attempt(many, lambda conn: orders.confirm(conn, "u1", "o-1", late))
    swept, outcome = await asyncio.gather(sweep(many, late), confirm)
    assert outcome == "LOCK_EXPIRED"
    assert swept.locks_expired in (0, 1)
    assert await many.fetchval("SELECT status FROM coupons") == "unused"
    events = await many.fetch("SELECT transition FROM coupon_events ORDER BY event_id")
    assert [e["transition"] for e in events] == ["lock", "lock_expire"]  # released once


async def test_a_confirm_after_one_of_its_coupons_was_taken_over_uses_none(
    many, make_campaign, give
):
    """Order o-1 holds a and b; its lock runs out and o-2 takes b over. A confirm of o-1
    read on a clock that lags (its lock still live there) finds b gone: it is refused and
    changes nothing (never half a use), on its first try as on a retry; racing the
    takeover, exactly one of the two gets b."""
    shop, platform = await make_campaign(usage={"tier": "shop"}), await make_campaign()
    late, lagging = NOW + TTL, NOW + TTL - 1
    for trial in range(6):
        a, b = await give(shop), await give(platform)
        first, second = f"o-{trial}-1", f"o-{trial}-2"
        async with many.acquire() as conn:
            await orders.lock(conn, "u1", request(first, [a, b]), now_ms=NOW, ttl_ms=TTL,
                              new_user=False)  # fmt: skip

        def take_over(conn: Any, b: str = b, second: str = second) -> Any:
            return orders.lock(conn, "u1", request(second, [b]), now_ms=late, ttl_ms=TTL,
                               new_user=False)  # fmt: skip

        def confirm(conn: Any, first: str = first) -> Any:
            return orders.confirm(conn, "u1", first, lagging)

        if trial == 0:  # in turn: the takeover first
            outcomes = [await attempt(many, take_over), await attempt(many, confirm)]
        else:
            outcomes = list(await asyncio.gather(attempt(many, take_over), attempt(many, confirm)))
        statuses = dict(await many.fetch(
            "SELECT coupon_id::text, status FROM coupons WHERE coupon_id = ANY($1::uuid[])",
            [a, b]))  # fmt: skip
        if outcomes[1] == "confirmed":
            assert outcomes[0] in ("COUPON_USED", "COUPON_LOCKED")
            assert statuses == {a: "used", b: "used"}
        else:
            assert outcomes == ["locked", "LOCK_EXPIRED"]
            assert statuses == {a: "locked", b: "locked"}  # a still o-1's, past its time
            assert await many.fetchval(
                "SELECT count(*) FROM coupon_events WHERE transition = 'confirm'"
                " AND order_id = $1", first) == 0  # fmt: skip
            assert await attempt(many, confirm) == "LOCK_EXPIRED"  # a retry: the same
        if trial == 0:
            assert outcomes[1] == "LOCK_EXPIRED"


async def test_two_refunds_at_once_refund_once(many, make_campaign, give):
    coupon = await give(await make_campaign())
    async with many.acquire() as conn:
        await orders.lock(conn, "u1", request("o-1", [coupon]), now_ms=NOW, ttl_ms=TTL,
                          new_user=False)  # fmt: skip
        await orders.confirm(conn, "u1", "o-1", NOW)

    def whole(conn: Any) -> Any:
        return orders.refund(conn, "u1", "o-1", RefundRequest(), NOW)

    def part(i: int) -> Any:
        return lambda conn: orders.refund(
            conn, "u1", "o-1", RefundRequest(amount_cents=20_000, refund_id=f"r-{i}"), NOW
        )

    outcomes = await asyncio.gather(*(attempt(many, part(i)) for i in range(5)),
                                    attempt(many, whole), attempt(many, whole))  # fmt: skip
    order = await many.fetchrow("SELECT * FROM coupon_orders")
    refunds = await many.fetchval("SELECT sum(amount_cents) FROM coupon_refunds")
    assert refunds == order["refunded_cents"] <= order["pay_cents"]
    assert order["refunded_cents"] == order["pay_cents"]  # the whole refund takes what is left
    assert "refunded" in outcomes
    events = await many.fetch("SELECT transition FROM coupon_events WHERE transition = 'refund'")
    assert len(events) == 1


async def test_confirms_voids_and_locks_over_the_same_coupons_never_deadlock(
    many, make_campaign, give
):
    tiers = ["shop", "category", "platform"]
    late = NOW + TTL  # the first lock ran out: others may take the coupons, in any order
    for round_ in range(8):
        # Fresh campaigns each round: a campaign's void also voids its coupons stored later.
        campaigns = [await make_campaign(usage={"tier": t}, faceValueCents=1_000,
                                         thresholdCents=2_000) for t in tiers]  # fmt: skip
        coupons = [await give(c) for c in campaigns]
        order = f"a-{round_}"
        async with many.acquire() as conn:
            await orders.lock(conn, "u1", request(order, coupons), now_ms=NOW, ttl_ms=TTL,
                              new_user=False)  # fmt: skip
        jobs = [attempt(many, lambda conn, o=order: orders.confirm(conn, "u1", o, late))]
        jobs += [
            attempt(many, lambda conn, i=i, r=round_, c=coupons: orders.lock(
                conn, "u1", request(f"b-{r}-{i}", list(reversed(c[i % 2:]))),
                now_ms=late, ttl_ms=TTL, new_user=False))
            for i in range(6)
        ]  # fmt: skip
        outcomes = await asyncio.gather(
            *jobs, void_coupons(many, late, "race", campaign_id=campaigns[1].id)
        )
        assert outcomes[0] == "LOCK_EXPIRED"
        held = await many.fetch(
            "SELECT order_id, count(*) FROM coupons WHERE coupon_id = ANY($1::uuid[])"
            " AND status = 'locked' GROUP BY order_id", coupons)  # fmt: skip
        assert len(held) <= 1  # one order at most holds any of them
