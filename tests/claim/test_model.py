"""claim.lua held to a Python model of the rules, step by step (Hypothesis stateful).

Hypothesis drives claims (batches of one to four, as the batcher sends them), retries,
time (across Asia/Shanghai midnights), pauses, top-ups and blocks against a real Redis
through the real ``ClaimService``. After every step Redis's counters must equal the
model's, and every answer must be the one the model predicts.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from dataclasses import dataclass, field

import msgspec
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule
from redis.asyncio import Redis

from gateway.campaigns.ops import keys_of, write_campaign
from gateway.campaigns.spec import (
    Campaign,
    CampaignSpec,
    DaysAfterClaim,
    EndOfClaimDay,
    Status,
    decode_spec,
)
from gateway.claim.script import coupon_id_for
from gateway.claim.service import ClaimRequest, ClaimService
from gateway.infra.auth import Claimant
from gateway.infra.clients import redis_client
from gateway.infra.clock import ManualClock, day_of, iso_ms
from gateway.infra.settings import Settings
from gateway.reasons import Reason
from tests.helpers import ADMIN_TOKEN, DAY_MS, JWT_SECRET, ON_CLUSTER, SHANGHAI, T0_MS, spec

USERS = {  # user -> (new_user, level, tags)
    "u0": (True, 0, ""),
    "u1": (False, 1, ",vip,"),
    "u2": (False, 2, ""),
    "u3": (True, 3, ",vip,gold,"),
}
DEVICES = ["d0", "d1", "d2"]
CAMPAIGNS = [
    decode_spec(
        spec(
            id="solo",
            stock=6,
            dailyStock=3,
            budgetCents=4 * 10_000 + 500,
            perUserLimit=3,
            perUserDailyLimit=2,
            perDeviceLimit=2,
            audience={"minLevel": 1},
            channels=["seckill", "skydrop"],
            validity={"mode": "days_after_claim", "days": 1},
        )
    ),
    decode_spec(
        spec(
            id="group-a",
            stock=4,
            perUserLimit=2,
            exclusionGroup="grp",
            channelQuotas={"skydrop": 2},  # claim rules in claim.lua (gateway/rules/)
            dailyBudgetCents=30_000,
            validity={"mode": "end_of_claim_day"},
        )
    ),
    decode_spec(
        spec(
            id="group-b",
            stock=4,
            perUserLimit=2,
            exclusionGroup="grp",
            perUserMoneyCapCents=10_000,  # one coupon each, by value
            audience={"tags": ["vip"]},
            validity={"mode": "end_of_claim_day"},
        )
    ),
]
CAMPAIGN_IDS = [c.id for c in CAMPAIGNS]


def published(spec: CampaignSpec) -> Campaign:
    """The campaign a spec becomes once published."""
    campaign = msgspec.convert(msgspec.to_builtins(spec), Campaign)
    return msgspec.structs.replace(campaign, status=Status.ACTIVE)


@dataclass
class CampaignModel:
    """What the model knows of one campaign."""

    spec: Campaign
    status: str = "active"
    stock: int = 0
    issued: int = 0
    spent: int = 0
    daily: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    users: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    users_daily: dict[tuple[str, str], int] = field(default_factory=lambda: defaultdict(int))
    devices: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    blocked: set[str] = field(default_factory=set)
    channels: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    user_money: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    day_money: dict[str, int] = field(default_factory=lambda: defaultdict(int))


class Model:
    """The rules of claim.lua, written plainly."""

    def __init__(self) -> None:
        self.campaigns = {c.id: CampaignModel(published(c), stock=c.stock) for c in CAMPAIGNS}
        self.records: dict[tuple[str, str], tuple[str, str, str, int]] = {}
        self.holds: dict[str, tuple[str, int]] = {}  # user -> (campaign, expires), group "grp"
        self.outbox = 0

    def claim(
        self, now: int, user: str, device: str, rid: str, cid: str, channel: str
    ) -> tuple[Reason, str, int]:
        c = self.campaigns[cid]
        s = c.spec
        start, end = int(s.starts_at.timestamp() * 1000), int(s.ends_at.timestamp() * 1000)
        if c.status == "active" and now < start:
            return Reason.NOT_STARTED, "", 0  # answered from memory, nothing bound
        record = self.records.get((cid, rid))  # the binding: per campaign, accepted only
        if record is not None:
            if record[:2] != (user, device):
                return Reason.REQUEST_MISMATCH, "", 0
            return Reason.ACCEPTED, record[2], record[3]
        reason = self._decide(c, now, start, end, user, device, channel)
        if reason is not Reason.ACCEPTED:
            return reason, "", 0
        return Reason.ACCEPTED, *self._accept(c, now, user, device, rid, channel)

    def _decide(
        self, c: CampaignModel, now: int, start: int, end: int, user: str, device: str, channel: str
    ) -> Reason:
        s, today = c.spec, day_of(now, SHANGHAI).label
        new_user, level, tags = USERS[user]
        if c.status == "paused":
            return Reason.PAUSED
        if now < start:
            return Reason.NOT_STARTED
        if now >= end:
            return Reason.ENDED
        if f"u:{user}" in c.blocked or f"d:{device}" in c.blocked:
            return Reason.BLOCKED
        if (
            (s.channels and channel not in s.channels)
            or (s.audience.new_users_only and not new_user)
            or level < s.audience.min_level
            or (s.audience.tags and not any(f",{t}," in tags for t in s.audience.tags))
        ):
            return Reason.NOT_ELIGIBLE
        hold = self.holds.get(user)
        if s.exclusion_group and hold and hold[0] != s.id and hold[1] > now:
            return Reason.EXCLUSIVE_CONFLICT
        checks = [
            (c.users[user] >= s.per_user_limit, Reason.USER_LIMIT),
            (
                bool(s.per_user_daily_limit)
                and c.users_daily[today, user] >= (s.per_user_daily_limit or 0),
                Reason.USER_DAILY_LIMIT,
            ),
            (
                bool(s.per_device_limit) and c.devices[device] >= (s.per_device_limit or 0),
                Reason.DEVICE_LIMIT,
            ),
            (c.issued >= c.stock, Reason.SOLD_OUT),
            (bool(s.daily_stock) and c.daily[today] >= (s.daily_stock or 0), Reason.DAILY_SOLD_OUT),
            (
                bool(s.budget_cents) and c.spent + s.value_cents > (s.budget_cents or 0),
                Reason.BUDGET_EXHAUSTED,
            ),
            (
                channel in s.channel_quotas and c.channels[channel] >= s.channel_quotas[channel],
                Reason.CHANNEL_SOLD_OUT,
            ),
            (
                bool(s.daily_budget_cents)
                and c.day_money[today] + s.value_cents > (s.daily_budget_cents or 0),
                Reason.DAILY_BUDGET_EXHAUSTED,
            ),
            (
                bool(s.per_user_money_cap_cents)
                and c.user_money[user] + s.value_cents > (s.per_user_money_cap_cents or 0),
                Reason.USER_MONEY_LIMIT,
            ),
        ]
        return next((reason for failed, reason in checks if failed), Reason.ACCEPTED)

    def _accept(
        self, c: CampaignModel, now: int, user: str, device: str, rid: str, channel: str
    ) -> tuple[str, int]:
        s, day = c.spec, day_of(now, SHANGHAI)
        if isinstance(s.validity, DaysAfterClaim):
            expires = now + s.validity.days * DAY_MS
        else:
            assert isinstance(s.validity, EndOfClaimDay)
            expires = day.end_ms
        coupon = coupon_id_for(s.id, user, rid)
        c.issued += 1
        c.spent += s.value_cents
        c.daily[day.label] += 1
        c.users[user] += 1
        c.users_daily[day.label, user] += 1
        c.devices[device] += 1
        c.channels[channel] += 1
        c.user_money[user] += s.value_cents
        c.day_money[day.label] += s.value_cents
        if s.exclusion_group:
            self.holds[user] = (s.id, expires)
        self.records[s.id, rid] = (user, device, coupon, expires)
        self.outbox += 1
        return coupon, expires


#: One claim of a batch: a new click, a retry of an earlier click (same user, device,
#: requestId), or an earlier requestId reused by another user or device.
claim_items = st.tuples(
    st.sampled_from(["new"] * 6 + ["retry"] * 3 + ["reuse"]),
    st.sampled_from(sorted(USERS)),
    st.sampled_from(DEVICES),
    st.sampled_from(["seckill", "skydrop"]),
    st.integers(0, 20),
)
claims = st.lists(claim_items, min_size=1, max_size=4)


class ClaimScriptMachine(RuleBasedStateMachine):
    """Real Redis + ClaimService on one side, ``Model`` on the other."""

    server_url = ""
    on_cluster = False

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.clock = ManualClock(T0_MS - 120_000)
        self.settings = Settings.from_env(
            {},
            redis_url=self.server_url,
            redis_cluster=self.on_cluster,
            redis_timeout_ms=5000 if self.on_cluster else 1000,  # 6 nodes on 2 busy cores
            jwt_secret=JWT_SECRET,
            admin_token=ADMIN_TOKEN,
            user_rate=0,
            device_rate=0,
            ip_rate=0,
            sold_out_cache_ms=0,
            campaign_cache_ms=10**12,
        )
        self.redis: Redis = redis_client(self.settings)
        self.service = ClaimService(self.redis, self.clock, self.settings)
        self.run(self.redis.flushall())  # before any invariant looks at Redis
        self.model = Model()
        self.rids = 0
        self.history: list[tuple[str, str, str, str, str]] = []  # user, device, rid, cid, ch

    def run(self, coroutine):
        return self.loop.run_until_complete(coroutine)

    def teardown(self) -> None:
        self.run(self.service.aclose())
        self.run(self.redis.aclose())
        self.loop.close()

    @initialize(started=st.sampled_from([True] * 7 + [False]))
    def publish(self, started: bool) -> None:
        if started:
            self.clock.set(T0_MS + 1000)
        for campaign in CAMPAIGNS:
            self.run(write_campaign(self.redis, self.model.campaigns[campaign.id].spec))

    @rule(cid=st.sampled_from(CAMPAIGN_IDS), batch=claims)
    def claim_batch(self, cid: str, batch: list[tuple[str, str, str, str, int]]) -> None:
        """Several claims to one campaign at once: one script call, decided in order."""
        requests = []
        for kind, user, device, channel, back in batch:
            earlier = [r for r in self.history if r[3] == cid] if kind == "retry" else []
            if earlier:
                user, device, rid, _, channel = earlier[-1 - back % len(earlier)]
            elif kind == "reuse" and self.history:
                rid = self.history[-1 - back % len(self.history)][2]
            else:
                self.rids += 1
                rid = f"rid-{self.rids:05d}"
            requests.append((user, device, rid, channel))
            self.history.append((user, device, rid, cid, channel))
        now = self.clock.now_ms()
        self.run(self.service.campaigns.get(cid))  # warm: the batch keeps its order

        async def send_all():
            return await asyncio.gather(
                *(
                    self.service.claim(
                        Claimant(user, *USERS[user], expires_s=2**40, not_before_s=0),
                        ClaimRequest(cid, rid, device, channel),
                        "127.0.0.1",
                    )
                    for user, device, rid, channel in requests
                )
            )

        outcomes = self.run(send_all())
        for (user, device, rid, channel), outcome in zip(requests, outcomes, strict=True):
            reason, coupon, expires = self.model.claim(now, user, device, rid, cid, channel)
            event(reason.value)
            assert outcome.reason is reason, (user, device, rid, cid, outcome, reason)
            assert outcome.coupon_id == coupon
            assert outcome.expires_at == (iso_ms(expires, SHANGHAI) if coupon else "")

    @rule(minutes=st.sampled_from([1, 17, 60, 6 * 60, 24 * 60]))
    def time_passes(self, minutes: int) -> None:
        self.clock.advance(minutes * 60_000)

    @rule(cid=st.sampled_from(CAMPAIGN_IDS), paused=st.sampled_from([True, False, False]))
    def pause_or_resume(self, cid: str, paused: bool) -> None:
        status = "paused" if paused else "active"
        self.run(self.redis.hset(keys_of(self.model.campaigns[cid].spec).config, "status", status))
        self.model.campaigns[cid].status = status
        self.service.campaigns.invalidate(cid)

    @rule(cid=st.sampled_from(CAMPAIGN_IDS), stock=st.integers(1, 3))
    def top_up(self, cid: str, stock: int) -> None:
        self.run(self.redis.hincrby(keys_of(self.model.campaigns[cid].spec).config, "stock", stock))
        self.model.campaigns[cid].stock += stock

    @rule(cid=st.sampled_from(CAMPAIGN_IDS), member=st.sampled_from(["u:u1", "u:u3", "d:d2"]))
    def block(self, cid: str, member: str) -> None:
        self.run(self.redis.sadd(keys_of(self.model.campaigns[cid].spec).blocked, member))
        self.model.campaigns[cid].blocked.add(member)

    @invariant()
    def counters_match(self) -> None:
        outbox = 0
        for cid, c in self.model.campaigns.items():
            keys = keys_of(c.spec)
            counters = self.run(self.redis.hgetall(keys.counters))
            assert int(counters.get("issued", 0)) == c.issued <= c.stock
            assert int(counters.get("spent", 0)) == c.spent
            users = self.run(self.redis.hgetall(keys.users))
            assert {u: int(n) for u, n in users.items()} == {
                u: n for u, n in c.users.items() if n
            }, cid
            assert all(n <= c.spec.per_user_limit for n in c.users.values())
            if c.spec.channel_quotas:
                channels = {k[3:]: int(n) for k, n in counters.items() if k.startswith("ch:")}
                assert channels == {ch: n for ch, n in c.channels.items() if n}, cid
            if c.spec.per_user_money_cap_cents:
                money = self.run(self.redis.hgetall(keys.user_money))
                assert {u: int(n) for u, n in money.items()} == {
                    u: n for u, n in c.user_money.items() if n
                }, cid
            outbox += self.run(self.redis.xlen(keys.outbox))
        assert outbox == self.model.outbox


def test_claim_script_matches_the_model(redis_server):
    ClaimScriptMachine.server_url = redis_server.url
    ClaimScriptMachine.on_cluster = ON_CLUSTER
    machine = settings(
        max_examples=200,
        stateful_step_count=50,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
    )(ClaimScriptMachine)
    machine.TestCase().runTest()
