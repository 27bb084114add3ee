"""A Hypothesis state machine holds the real coupon life (PostgreSQL, the real transitions)
to a model: lock, confirm, cancel, refund, sweep, void and the clock moving, in any order.

After every step each coupon's status now, and the order holding it, must be the model's,
and each row must agree with its last audit event (no transition without its event).
"""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import msgspec
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from gateway.campaigns.spec import decode_spec
from gateway.campaigns.store import CampaignStore
from gateway.claim.events import ClaimEvent
from gateway.handoff.persist import insert_claims
from gateway.redemption import orders
from gateway.redemption.cart import RefundRequest, UseRequest
from gateway.redemption.ledger import use_report
from gateway.redemption.operators import void_coupons
from gateway.redemption.sweep import sweep
from gateway.redemption.wallet import EFFECTIVE, at
from tests.helpers import T0_MS, spec
from tests.redemption.conftest import use_body

TTL = 900_000
TIERS = ("shop", "category", "platform")
COUPONS = 6
_runs = itertools.count()


@dataclass
class Order:
    coupons: list[int]
    until: int
    status: str = "locked"


@dataclass
class Coupon:
    expires: int
    status: str = "unused"  # as stored: unused, locked, used, refunded, expired, voided
    order: str | None = None


@dataclass
class Model:
    now: int
    coupons: list[Coupon] = field(default_factory=list)
    orders: dict[str, Order] = field(default_factory=dict)

    def effective(self, c: Coupon) -> str:
        if c.status in ("unused", "locked") and c.expires <= self.now:
            return "expired"
        if c.status == "locked" and self.orders[c.order or ""].until <= self.now:
            return "unused"
        return c.status

    def release(self, name: str, status: str) -> None:
        order = self.orders[name]
        order.status = status
        for i in order.coupons:
            c = self.coupons[i]
            if c.status == "locked" and c.order == name:
                c.status, c.order = ("unused" if c.expires > self.now else "expired"), None


class CouponLife(RuleBasedStateMachine):
    """One user's six coupons (two per tier: one per tier stacks) and their orders."""

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.run_id = next(_runs)
        self.pool: asyncpg.Pool = self.run(self._open())
        self.ids: list[str] = []
        self.model = Model(now=T0_MS + 3_600_000)
        self.orders = itertools.count()

    @staticmethod
    async def _open() -> asyncpg.Pool:
        return await asyncpg.create_pool(DATABASE_URL[0], min_size=1, max_size=2)

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    @initialize(lives=st.lists(st.integers(10, 240), min_size=COUPONS, max_size=COUPONS))
    def coupons(self, lives: list[int]) -> None:
        store = CampaignStore(self.pool)
        for n, minutes in enumerate(lives):
            tier = TIERS[n % 3]
            campaign_id = f"model-{self.run_id}-{n}"
            self.run(store.create(decode_spec(spec(
                id=campaign_id, faceValueCents=1_000, thresholdCents=2_000,
                usage={"tier": tier}))))  # fmt: skip
            expires = self.model.now + minutes * 60_000
            coupon_id = f"00000000-0000-0000-{self.run_id:04d}-{n:012d}"
            event = ClaimEvent(coupon_id, campaign_id, "model-user", "d", f"r-{self.run_id}-{n}",
                               "seckill", 1_000, T0_MS, expires)  # fmt: skip
            self.run(self._insert(event))
            self.ids.append(coupon_id)
            self.model.coupons.append(Coupon(expires))

    async def _insert(self, event: ClaimEvent) -> None:
        async with self.pool.acquire() as conn:
            await insert_claims(conn, [event])

    async def _call(self, fn: Any, *args: Any, **kwargs: Any) -> str:
        async with self.pool.acquire() as conn:
            try:
                state = await fn(conn, "model-user", *args, **kwargs)
            except orders.Refused as exc:
                return exc.reason.value
        return str(state.refusal.value if state.refusal else state.status)

    @rule(chosen=st.sets(st.integers(0, COUPONS - 1), min_size=1, max_size=3))
    def lock(self, chosen: set[int]) -> None:
        name = f"m{self.run_id}-{next(self.orders)}"
        picked = sorted(chosen)
        request = msgspec.convert(use_body(name, [self.ids[i] for i in picked]), UseRequest)
        got = self.run(self._call(orders.lock, request, now_ms=self.model.now, ttl_ms=TTL,
                                  new_user=False))  # fmt: skip
        m = self.model
        tiers = [i % 3 for i in picked]
        usable = all(m.effective(m.coupons[i]) == "unused" for i in picked)
        usable = usable and len(set(tiers)) == len(tiers)
        assert (got == "locked") == usable, (got, [m.effective(m.coupons[i]) for i in picked])
        if usable:
            until = min(m.now + TTL, *(m.coupons[i].expires for i in picked))
            m.orders[name] = Order(picked, until)
            for i in picked:
                m.coupons[i].status, m.coupons[i].order = "locked", name

    def _due(self, name: str) -> bool:
        order = self.model.orders[name]
        return order.status == "locked" and order.until <= self.model.now

    @precondition(lambda self: self.model.orders)
    @rule(data=st.data())
    def confirm(self, data: st.DataObject) -> None:
        name = data.draw(st.sampled_from(list(self.model.orders)[-3:]))  # recent ones
        got = self.run(self._call(orders.confirm, name, self.model.now))
        order = self.model.orders[name]
        if self._due(name):
            self.model.release(name, "expired")
        if order.status == "locked":
            order.status = "confirmed"
            for i in order.coupons:
                self.model.coupons[i].status = "used"
        expected = {"confirmed": "confirmed", "expired": "LOCK_EXPIRED"}.get(
            order.status, "ORDER_STATE"
        )
        assert got == expected

    @precondition(lambda self: self.model.orders)
    @rule(data=st.data())
    def cancel(self, data: st.DataObject) -> None:
        name = data.draw(st.sampled_from(list(self.model.orders)[-3:]))  # recent ones
        got = self.run(self._call(orders.cancel, name, self.model.now))
        order = self.model.orders[name]
        if self._due(name):
            self.model.release(name, "expired")
        elif order.status == "locked":
            self.model.release(name, "cancelled")
        expected = order.status if order.status in ("cancelled", "expired") else "ORDER_STATE"
        assert got == expected

    @precondition(lambda self: self.model.orders)
    @rule(data=st.data())
    def refund(self, data: st.DataObject) -> None:
        name = data.draw(st.sampled_from(list(self.model.orders)[-3:]))  # recent ones
        got = self.run(self._call(orders.refund, name, RefundRequest(), self.model.now))
        order = self.model.orders[name]
        if order.status == "confirmed":
            order.status = "refunded"
            for i in order.coupons:
                c = self.model.coupons[i]
                c.status = "unused" if c.expires > self.model.now else "refunded"
                c.order = None if c.status == "unused" else name
        assert got == ("refunded" if order.status == "refunded" else "ORDER_STATE")

    @rule(minutes=st.integers(1, 30))
    def clock_moves(self, minutes: int) -> None:
        self.model.now += minutes * 60_000

    @rule()
    def sweeper(self) -> None:
        self.run(sweep(self.pool, self.model.now))
        for name, order in self.model.orders.items():
            if order.status == "locked" and order.until <= self.model.now:
                self.model.release(name, "expired")
        for c in self.model.coupons:
            if c.status == "unused" and c.expires <= self.model.now:
                c.status = "expired"

    @rule(i=st.integers(0, COUPONS - 1), now=st.integers(0, 5))
    def void(self, i: int, now: int) -> None:
        if now:  # voids end a coupon's story: one draw in six
            return
        voided = self.run(void_coupons(self.pool, self.model.now, "model",
                                       coupon_id=self.ids[i]))  # fmt: skip
        c = self.model.coupons[i]
        should = self.model.effective(c) == "unused"
        assert voided == int(should)
        if should:
            c.status, c.order = "voided", None

    @invariant()
    def database_agrees(self) -> None:
        if not self.ids:
            return
        rows = self.run(self.pool.fetch(
            f"SELECT c.coupon_id::text, c.order_id, {EFFECTIVE.format(now='$2')} AS effective"
            " FROM coupons c WHERE c.coupon_id = ANY($1::uuid[]) ORDER BY 1",
            self.ids, at(self.model.now)))  # fmt: skip
        m = self.model
        for row, c in zip(rows, m.coupons, strict=True):
            assert row["effective"] == m.effective(c), (row, c, m.now)
            if c.status in ("locked", "used"):
                assert row["order_id"] == c.order
        stored = dict(self.run(self.pool.fetch(
            "SELECT order_id, status FROM coupon_orders WHERE user_id = 'model-user'"
            " AND order_id LIKE $1", f"m{self.run_id}-%")))  # fmt: skip
        assert stored == {name: o.status for name, o in m.orders.items()}
        for n in range(COUPONS):
            report = self.run(use_report(self.pool, f"model-{self.run_id}-{n}", None))
            assert report.drifted == 0

    def teardown(self) -> None:
        self.run(self.pool.close())
        self.loop.close()


DATABASE_URL: list[str] = []


@pytest.fixture
def _database(database_url: str, orders_pool: asyncpg.Pool) -> None:
    DATABASE_URL[:] = [database_url]


@pytest.mark.usefixtures("_database")
def test_the_coupon_life_matches_its_model() -> None:
    CouponLife.TestCase.settings = settings(
        max_examples=20, stateful_step_count=25, deadline=None, derandomize=True,
        suppress_health_check=[HealthCheck.too_slow],
    )  # fmt: skip
    CouponLife.TestCase().runTest()
