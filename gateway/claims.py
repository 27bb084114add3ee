"""Deciding claims: local guards first, then one script call per batch.

A claim that needs no Redis is answered from memory: over a rate cap, unknown campaign,
before the campaign's start. A campaign lately found sold out (or ended, or out of budget)
costs one read of the batch's replay records, so a retry of an accepted claim still
gets its coupon. Everything else goes through the campaign's batcher: bind each
requestId to its claim, then one ``claim.lua`` call decides the whole batch.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Protocol

import msgspec
from redis.asyncio import Redis
from redis.exceptions import RedisError

from gateway import metrics
from gateway.auth import Claimant
from gateway.batcher import Batcher
from gateway.campaign import CampaignId, Label
from gateway.campaign_cache import CampaignCache, CampaignView
from gateway.clock import Clock, iso_ms
from gateway.keys import request_binding
from gateway.ratelimit import RateLimiter
from gateway.reasons import Reason
from gateway.scripts import Scripts
from gateway.settings import Settings

REQUEST_ID_PATTERN = r"^[A-Za-z0-9_-]{8,64}$"
DEVICE_ID_PATTERN = r"^[A-Za-z0-9_.:-]{1,128}$"

#: Refusals after which a campaign is answered from memory for a while.
EXHAUSTED = frozenset(
    {Reason.SOLD_OUT, Reason.DAILY_SOLD_OUT, Reason.BUDGET_EXHAUSTED, Reason.ENDED}
)


class ClaimRequest(msgspec.Struct, rename="camel", forbid_unknown_fields=True, frozen=True):
    """The body of ``POST /api/coupon/issue``."""

    campaign_id: CampaignId
    request_id: Annotated[str, msgspec.Meta(pattern=REQUEST_ID_PATTERN)]
    device_id: Annotated[str, msgspec.Meta(pattern=DEVICE_ID_PATTERN)]
    channel: Label


@dataclass(frozen=True, slots=True)
class Outcome:
    """The answer to one claim."""

    reason: Reason
    coupon_id: str = ""
    expires_at: str = ""  # RFC 3339, in the campaign's time zone
    replayed: bool = False
    retry_after_s: float = 0.0


@dataclass(frozen=True, slots=True)
class _Claim:
    request: ClaimRequest
    claimant: Claimant

    @property
    def binding(self) -> str:
        return f"{self.claimant.user_id}|{self.request.campaign_id}|{self.request.device_id}"


class _Runner(Protocol):
    async def __call__(self, campaign_id: str, claims: Sequence[_Claim]) -> list[Outcome]: ...


def coupon_id_for(campaign_id: str, user_id: str, request_id: str) -> str:
    """The coupon a claim issues: the same claim always names the same coupon, end to end,
    so a replay after any loss lands on the same database row."""
    digest = hashlib.blake2b(
        f"{campaign_id}\x00{user_id}\x00{request_id}".encode(), digest_size=16
    ).digest()
    return str(uuid.UUID(bytes=digest))


class ClaimService:
    """Answers claims; one instance per worker process."""

    def __init__(self, redis: Redis, clock: Clock, settings: Settings) -> None:
        self._redis = redis
        self._clock = clock
        self._settings = settings
        self._timeout_s = settings.redis_timeout_ms / 1000
        self._scripts = Scripts(redis)
        self.campaigns = CampaignCache(redis, clock, settings.campaign_cache_ms, self._timeout_s)
        self._limits = (
            RateLimiter(settings.user_rate, settings.user_burst),
            RateLimiter(settings.device_rate, settings.device_burst),
            RateLimiter(settings.ip_rate, settings.ip_burst),
        )
        self._deciders: dict[str, Batcher[_Claim, Outcome]] = {}
        self._replayers: dict[str, Batcher[_Claim, Outcome]] = {}
        self.set_get = True  # Redis >= 7 binds with one SET ... NX GET; see detect_server

    async def detect_server(self) -> None:
        """Speak the Redis that answers: 6.2 (pip-shipped, for local runs) lacks ``SET ... NX
        GET`` and the script's ``#!lua`` line."""
        try:
            async with asyncio.timeout(self._timeout_s):
                info: dict[str, Any] = await self._redis.info("server")
        except (RedisError, TimeoutError):
            return  # Redis is away at start: assume a current one, the documented minimum
        major = int(str(info["redis_version"]).split(".")[0])
        self.set_get = major >= 7
        self._scripts = Scripts(self._redis, major)

    async def claim(self, claimant: Claimant, request: ClaimRequest, ip: str) -> Outcome:
        """Decide one claim (the caller has verified ``claimant`` and ``request``)."""
        wait = self._rate_wait(claimant.user_id, request.device_id, ip)
        if wait:
            return Outcome(Reason.RATE_LIMITED, retry_after_s=wait)
        view = await self.campaigns.get(request.campaign_id)
        if view is None:
            return Outcome(Reason.UNKNOWN_CAMPAIGN)
        now = self._clock.now_ms()
        claim = _Claim(request, claimant)
        if view.status == "active" and now < view.start_ms:
            metrics.child(metrics.CACHE_ANSWERS, request.campaign_id, Reason.NOT_STARTED).inc()
            return Outcome(Reason.NOT_STARTED, retry_after_s=(view.start_ms - now) / 1000)
        exhausted = view.exhausted_at(now)
        if exhausted is not None:
            metrics.child(metrics.CACHE_ANSWERS, request.campaign_id, exhausted).inc()
            return await self._batcher(self._replayers, view, self._replay).submit(claim)
        outcome = await self._batcher(self._deciders, view, self._decide).submit(claim)
        if outcome.reason in EXHAUSTED:
            view.mark_exhausted(outcome.reason, now, self._settings.sold_out_cache_ms)
        return outcome

    async def ping(self) -> None:
        """Raise if Redis does not answer (TimeoutError if not within the timeout)."""
        async with asyncio.timeout(self._timeout_s):
            await self._redis.ping()

    def _rate_wait(self, user_id: str, device_id: str, ip: str) -> float:
        now = time.monotonic()
        users, devices, ips = self._limits
        return users.check(user_id, now) or devices.check(device_id, now) or ips.check(ip, now)

    def _batcher(
        self, batchers: dict[str, Batcher[_Claim, Outcome]], view: CampaignView, run: _Runner
    ) -> Batcher[_Claim, Outcome]:
        campaign_id = view.keys.campaign_id
        batcher = batchers.get(campaign_id)
        if batcher is None:
            batcher = batchers[campaign_id] = Batcher(
                lambda claims: run(campaign_id, claims), self._settings.batch_max
            )
        return batcher

    async def _decide(self, campaign_id: str, claims: Sequence[_Claim]) -> list[Outcome]:
        """Bind each requestId to its claim, then decide all bound claims in one call."""
        view = await self.campaigns.get(campaign_id)
        if view is None:
            return [Outcome(Reason.UNKNOWN_CAMPAIGN)] * len(claims)
        outcomes: list[Outcome | None] = [None] * len(claims)
        started = time.perf_counter()
        async with asyncio.timeout(self._timeout_s):
            bound = await self._bind(claims)
        metrics.SCRIPT_SECONDS.labels("bind").observe(time.perf_counter() - started)
        todo = []
        for i, (claim, previous) in enumerate(zip(claims, bound, strict=True)):
            if previous is None or previous == claim.binding:
                todo.append(i)
            else:
                outcomes[i] = Outcome(Reason.REQUEST_MISMATCH)
        if todo:
            decided = await self._run_script(view, [claims[i] for i in todo])
            for i, outcome in zip(todo, decided, strict=True):
                outcomes[i] = outcome
        return [outcome for outcome in outcomes if outcome is not None]

    async def _bind(self, claims: Sequence[_Claim]) -> list[str | None]:
        """The requestIds' bindings before this call (None where we bound it just now)."""
        ttl = self._settings.replay_ttl_s
        async with self._redis.pipeline(transaction=False) as pipe:
            for claim in claims:  # raw SET: redis-py's keyword checks cost more than the call
                key = request_binding(claim.request.request_id)
                if self.set_get:  # get=True: redis-py's parser hands back the old value
                    pipe.execute_command(
                        "SET", key, claim.binding, "NX", "GET", "EX", ttl, get=True
                    )
                else:  # Redis < 7 refuses NX with GET: set if absent, then read what is bound
                    pipe.execute_command("SET", key, claim.binding, "NX", "EX", ttl)
                    pipe.execute_command("GET", key)
            replies: list[str | None] = await pipe.execute()
        return replies if self.set_get else replies[1::2]

    async def _run_script(self, view: CampaignView, claims: Sequence[_Claim]) -> list[Outcome]:
        now = self._clock.now_ms()
        day = view.day(now)
        keys = view.keys
        names = [
            keys.config,
            keys.counters,
            keys.users,
            keys.devices,
            keys.blocked,
            keys.holds,
            keys.outbox,
            keys.daily(day.label),
            keys.users_daily(day.label),
        ]
        args: list[str | int] = [
            now,
            day.end_ms,
            self._settings.replay_ttl_s,
            self._settings.outbox_max_len,
            len(claims),
        ]
        for claim in claims:
            names.append(keys.request(claim.request.request_id))
            who = claim.claimant
            args += [
                who.user_id,
                claim.request.device_id,
                claim.request.request_id,
                coupon_id_for(keys.campaign_id, who.user_id, claim.request.request_id),
                int(who.new_user),
                who.level,
                who.tags,
                claim.request.channel,
            ]
        started = time.perf_counter()
        async with asyncio.timeout(self._timeout_s):
            results, outbox_len, issued, stock = await self._scripts.claim(names, args)
        metrics.SCRIPT_SECONDS.labels("claim").observe(time.perf_counter() - started)
        metrics.BATCH_SIZE.observe(len(claims))
        cid = keys.campaign_id
        metrics.OUTBOX_LENGTH.labels(cid).set(outbox_len)
        metrics.STOCK_REMAINING.labels(cid).set(max(int(stock) - int(issued), 0))
        metrics.STOCK_TOTAL.labels(cid).set(int(stock))
        return [
            Outcome(
                Reason.from_code(code),
                coupon,
                iso_ms(int(expires), view.zone) if coupon else "",
                bool(replayed),
            )
            for code, coupon, expires, replayed in results
        ]

    async def _replay(self, campaign_id: str, claims: Sequence[_Claim]) -> list[Outcome]:
        """Answer claims to an exhausted campaign: the original answer for a retried
        accepted requestId, the campaign's refusal for everything else."""
        view = await self.campaigns.get(campaign_id)
        if view is None:
            return [Outcome(Reason.UNKNOWN_CAMPAIGN)] * len(claims)
        refusal = Outcome(view.exhausted or Reason.SOLD_OUT)
        started = time.perf_counter()
        async with asyncio.timeout(self._timeout_s):
            records: list[str | None] = await self._redis.mget(  # type: ignore[assignment]
                [view.keys.request(c.request.request_id) for c in claims]
            )
        metrics.SCRIPT_SECONDS.labels("replay").observe(time.perf_counter() - started)
        return [
            refusal if record is None else _replayed(claim, record, view)
            for claim, record in zip(claims, records, strict=True)
        ]


def _replayed(claim: _Claim, record: str, view: CampaignView) -> Outcome:
    """Read a replay record written by claim.lua: user, device, coupon, expiry."""
    user, device, coupon, expires = record.split("\t")
    if user != claim.claimant.user_id or device != claim.request.device_id:
        return Outcome(Reason.REQUEST_MISMATCH)
    return Outcome(Reason.ACCEPTED, coupon, iso_ms(int(expires), view.zone), replayed=True)
