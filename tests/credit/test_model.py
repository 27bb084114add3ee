"""The ledger held to a plain model, step by step (Hypothesis stateful).

Hypothesis drives top-ups (paid by callback, sometimes twice), grants, locks, confirms,
cancels, refunds (per item), withdrawals, sweeps and the clock for two users against a
real PostgreSQL. The model keeps each user's principal and bonus buckets and each hold's
parts, spending proportionally as the README says; after every step each user's balance
must be the model's, to the cent, and the ledger must reconcile.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import asyncpg
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from gateway.credit.journal import CreditError, HoldClosed, InsufficientCredit
from gateway.credit.ledger import DAY_MS, Ledger
from gateway.credit.plan import decode_plan
from gateway.credit.reconcile import reconcile
from gateway.credit.store import PlanStore
from gateway.credit.sweeper import sweep
from gateway.credit.topups import Topups
from gateway.infra.clock import ManualClock
from tests.credit.conftest import CREDIT_RESET, PLAN
from tests.credit.test_ledger import member
from tests.helpers import T0_MS

USERS = ("u1", "u2")
ORDERS = tuple(f"o{i}" for i in range(6))


@dataclass
class Bucket:
    seq: int
    cents: int
    expires: int


@dataclass
class Hold:
    user: str
    amount: int
    expires: int
    parts: list[tuple[str, int]]  # (source: "p" or a bucket name, cents)
    refunded: list[int]
    status: str = "locked"


@dataclass
class UserModel:
    principal: int = 0
    buckets: dict[str, Bucket] = field(default_factory=dict)


class Model:
    """Proportional spending and exact refunds, written plainly."""

    def __init__(self) -> None:
        self.users = {u: UserModel() for u in USERS}
        self.holds: dict[str, Hold] = {}
        self.seq = 0

    def live(self, user: str, now: int) -> list[tuple[str, Bucket]]:
        found = [(k, b) for k, b in self.users[user].buckets.items() if b.expires > now]
        return sorted(((k, b) for k, b in found if b.cents > 0),
                      key=lambda kb: (kb[1].expires, kb[1].seq))  # fmt: skip

    def credit(self, user: str, principal: int, bucket: str, bonus: int, expires: int) -> None:
        self.users[user].principal += principal
        if bonus:
            self.seq += 1
            self.users[user].buckets[bucket] = Bucket(self.seq, bonus, expires)

    def lock(self, order: str, user: str, amount: int, expires: int, now: int) -> bool:
        u = self.users[user]
        live = self.live(user, now)
        b_total = sum(b.cents for _, b in live)
        if amount > u.principal + b_total:
            return False
        bonus = amount * b_total // (u.principal + b_total)
        parts = [("p", amount - bonus)] if amount - bonus else []
        u.principal -= amount - bonus
        for name, b in live:
            take = min(bonus, b.cents)
            if take:
                parts.append((name, take))
                b.cents -= take
            bonus -= take
        self.holds[order] = Hold(user, amount, expires, parts, [0] * len(parts))
        return True

    def give_back(self, hold: Hold, shares: list[int], now: int) -> None:
        u = self.users[hold.user]
        for (source, _), cents in zip(hold.parts, shares, strict=True):
            if source == "p":
                u.principal += cents
            elif u.buckets[source].expires > now:
                u.buckets[source].cents += cents

    def refund(self, order: str, amount: int, now: int) -> None:
        hold = self.holds[order]
        caps = [c - r for (_, c), r in zip(hold.parts, hold.refunded, strict=True)]
        total = sum(caps)
        shares = [amount * c // total for c in caps]
        ranked = sorted(range(len(caps)), key=lambda i: -(amount * caps[i] % total))
        for i in ranked[: amount - sum(shares)]:
            shares[i] += 1
        hold.refunded = [r + s for r, s in zip(hold.refunded, shares, strict=True)]
        self.give_back(hold, shares, now)

    def withdraw(self, user: str, amount: int, now: int) -> int:
        u = self.users[user]
        live = self.live(user, now)
        b_total = sum(b.cents for _, b in live)
        forfeit = min(b_total, amount * b_total // u.principal)
        u.principal -= amount
        left = forfeit
        for _, b in live:
            take = min(left, b.cents)
            b.cents -= take
            left -= take
        return forfeit

    def expire(self, now: int) -> None:
        for u in self.users.values():
            for b in u.buckets.values():
                if b.expires <= now:
                    b.cents = 0
        for hold in self.holds.values():
            if hold.status == "locked" and hold.expires <= now:
                hold.status = "cancelled"
                self.give_back(hold, [c for _, c in hold.parts], now)


class LedgerMachine(RuleBasedStateMachine):
    database_url = ""

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.clock = ManualClock(T0_MS)
        self.pool: asyncpg.Pool = self.run(self._open())
        self.run(self.pool.execute(CREDIT_RESET))
        self.plans = PlanStore(self.pool)
        self.run(self.plans.create(decode_plan({**PLAN, "bonusValidDays": 2})))
        self.ledger = Ledger(self.pool, self.clock)
        self.topups = Topups(self.pool, self.plans, self.clock)
        self.model = Model()
        self.paid: list[tuple[str, str, int]] = []
        self.n = 0

    async def _open(self) -> asyncpg.Pool:
        return await asyncpg.create_pool(self.database_url, min_size=1, max_size=2)

    def run(self, coroutine):
        return self.loop.run_until_complete(coroutine)

    def teardown(self) -> None:
        self.run(self.pool.close())
        self.loop.close()

    @rule(user=st.sampled_from(USERS), pay=st.sampled_from([100, 999, 10_000, 50_000]))
    def top_up(self, user: str, pay: int) -> None:
        self.n += 1
        topup = self.run(self.topups.create(member(user), "double11", pay, f"req-{self.n:06d}"))
        paid = self.run(self.topups.pay(topup.topup_id, f"pay-{self.n}", pay))
        expires = self.clock.now_ms() + 2 * DAY_MS
        self.model.credit(user, pay, topup.topup_id, paid.bonus_cents + paid.gift_cents, expires)
        self.paid.append((topup.topup_id, f"pay-{self.n}", pay))

    @rule(data=st.data())
    def callback_again(self, data: st.DataObject) -> None:
        if self.paid:
            topup_id, payment_id, pay = data.draw(st.sampled_from(self.paid))
            self.run(self.topups.pay(topup_id, payment_id, pay))  # counted once

    @rule(user=st.sampled_from(USERS), cents=st.integers(1, 3_000), days=st.integers(1, 3))
    def grant(self, user: str, cents: int, days: int) -> None:
        self.n += 1
        self.run(self.ledger.grant(user, cents, days, f"g{self.n}"))
        self.model.credit(user, 0, f"grant:g{self.n}", cents,
                          self.clock.now_ms() + days * DAY_MS)  # fmt: skip

    @rule(order=st.sampled_from(ORDERS), user=st.sampled_from(USERS),
          amount=st.integers(1, 70_000))  # fmt: skip
    def lock(self, order: str, user: str, amount: int) -> None:
        if order in self.model.holds:
            return
        now = self.clock.now_ms()
        try:
            self.run(self.ledger.lock(order, user, amount, ttl_ms=DAY_MS))
            locked = True
        except InsufficientCredit:
            locked = False
        assert locked == self.model.lock(order, user, amount, now + DAY_MS, now)

    @rule(order=st.sampled_from(ORDERS))
    def confirm(self, order: str) -> None:
        hold = self.model.holds.get(order)
        try:
            self.run(self.ledger.confirm(order))
        except CreditError:
            assert hold is None or hold.status == "cancelled"
            return
        assert hold is not None
        assert hold.status in ("locked", "confirmed")
        hold.status = "confirmed"

    @rule(order=st.sampled_from(ORDERS))
    def cancel(self, order: str) -> None:
        hold = self.model.holds.get(order)
        try:
            self.run(self.ledger.cancel(order))
        except CreditError:
            assert hold is None or hold.status == "confirmed"
            return
        assert hold is not None
        if hold.status == "locked":
            hold.status = "cancelled"
            self.model.give_back(hold, [c for _, c in hold.parts], self.clock.now_ms())

    @rule(order=st.sampled_from(ORDERS), share=st.integers(1, 100))
    def refund(self, order: str, share: int) -> None:
        hold = self.model.holds.get(order)
        if hold is None or hold.status != "confirmed":
            return
        left = hold.amount - sum(hold.refunded)
        amount = max(1, left * share // 100)
        self.n += 1
        try:
            self.run(self.ledger.refund(order, amount, f"r{self.n}"))
        except HoldClosed:
            assert left == 0
            return
        self.model.refund(order, amount, self.clock.now_ms())

    @rule(user=st.sampled_from(USERS), share=st.integers(1, 100))
    def withdraw(self, user: str, share: int) -> None:
        principal = self.model.users[user].principal
        if not principal:
            return
        amount = max(1, principal * share // 100)
        self.n += 1
        _, forfeited = self.run(self.ledger.withdraw(user, amount, f"w{self.n}"))
        assert forfeited == self.model.withdraw(user, amount, self.clock.now_ms())

    @rule(hours=st.integers(1, 40))
    def time_passes_and_sweeper_runs(self, hours: int) -> None:
        self.clock.advance(hours * 3_600_000)
        self.run(sweep(self.pool, self.clock))
        self.model.expire(self.clock.now_ms())

    @invariant()
    def balances_match_the_model_and_the_journal(self) -> None:
        now = self.clock.now_ms()
        for user in USERS:
            balance = self.run(self.ledger.balance(user))
            u = self.model.users[user]
            held = sum(h.amount for h in self.model.holds.values()
                       if h.user == user and h.status == "locked")  # fmt: skip
            bonus = sum(b.cents for _, b in self.model.live(user, now))
            assert (balance.principal_cents, balance.bonus_cents, balance.held_cents) == (
                u.principal, bonus, held), user  # fmt: skip
        report = self.run(reconcile(self.pool))
        assert report.ok, report


def test_ledger_matches_the_model(database_url: str) -> None:
    LedgerMachine.database_url = database_url
    machine = settings(
        max_examples=20,
        stateful_step_count=25,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
    )(LedgerMachine)
    machine.TestCase().runTest()
