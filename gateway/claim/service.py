"""Deciding claims: local guards first, then one script call per batch.

A claim that needs no Redis is answered from memory: over a rate cap, unknown campaign,
before the campaign's start. A campaign lately found sold out (or ended, or out of budget)
costs one read of the batch's replay records, so a retry of an accepted claim still
gets its coupon. Everything else goes through the campaign's batcher: bind each
requestId to its claim, then one ``claim.lua`` call decides the whole batch.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import msgspec
from redis.asyncio import Redis
from redis.exceptions import RedisError

from gateway.campaigns.cache import CampaignCache, CampaignView
from gateway.claim.batcher import Batcher
from gateway.claim.script import Batch, ClaimInput, ClaimScript, ReplayRecord, coupon_id_for
from gateway.identifiers import CampaignId, DeviceId, Label, RequestId
from gateway.infra import metrics
from gateway.infra.auth import Claimant
from gateway.infra.clock import Clock, iso_ms
from gateway.infra.ratelimit import RateLimiter
from gateway.infra.settings import Settings
from gateway.keys import request_binding
from gateway.reasons import EXHAUSTED, Reason


class ClaimRequest(msgspec.Struct, rename="camel", forbid_unknown_fields=True, frozen=True):
    """The body of ``POST /api/coupon/issue``."""

    campaign_id: CampaignId
    request_id: RequestId
    device_id: DeviceId
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
    code: str = ""  # a redeem code's keyed hash (gateway/channels/redeem.py), "" for none

    @property
    def binding(self) -> str:
        return f"{self.claimant.user_id}|{self.request.campaign_id}|{self.request.device_id}"


class _Runner(Protocol):
    async def __call__(self, campaign_id: str, claims: Sequence[_Claim]) -> list[Outcome]: ...


class ClaimService:
    """Answers claims; one instance per worker process."""

    def __init__(self, redis: Redis, clock: Clock, settings: Settings) -> None:
        self._redis = redis
        self._clock = clock
        self._settings = settings
        self._timeout_s = settings.redis_timeout_ms / 1000
        self._script = ClaimScript(redis)
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
        self._script = ClaimScript(self._redis, major)

    async def claim(
        self, claimant: Claimant, request: ClaimRequest, ip: str, code: str = ""
    ) -> Outcome:
        """Decide one claim (the caller has verified ``claimant`` and ``request``);
        ``code`` is a redeem code's keyed hash, checked and used in the claim's step."""
        wait = self._rate_wait(claimant.user_id, request.device_id, ip)
        if wait:
            return Outcome(Reason.RATE_LIMITED, retry_after_s=wait)
        return await self.grant(claimant, request, code)

    async def grant(self, claimant: Claimant, request: ClaimRequest, code: str = "") -> Outcome:
        """Decide a claim the gateway makes for a user (bind jobs, triggers): every rule
        of the campaign holds, only the per-client request rate caps do not apply."""
        view = await self.campaigns.get(request.campaign_id)
        if view is None:
            return Outcome(Reason.UNKNOWN_CAMPAIGN)
        now = self._clock.now_ms()
        claim = _Claim(request, claimant, code)
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
        cid = view.keys.campaign_id
        batch = Batch(
            keys=view.keys,
            day=day.label,
            now_ms=now,
            day_end_ms=day.end_ms,
            replay_ttl_s=self._settings.replay_ttl_s,
            outbox_max_len=self._settings.outbox_max_len,
            claims=[_script_input(cid, claim) for claim in claims],
        )
        started = time.perf_counter()
        async with asyncio.timeout(self._timeout_s):
            decided = await self._script(batch)
        metrics.SCRIPT_SECONDS.labels("claim").observe(time.perf_counter() - started)
        metrics.BATCH_SIZE.observe(len(claims))
        metrics.OUTBOX_LENGTH.labels(cid).set(decided.outbox_length)
        metrics.STOCK_REMAINING.labels(cid).set(max(decided.stock - decided.issued, 0))
        metrics.STOCK_TOTAL.labels(cid).set(decided.stock)
        return [
            Outcome(
                d.reason,
                d.coupon_id,
                iso_ms(d.expires_at_ms, view.zone) if d.coupon_id else "",
                d.replayed,
            )
            for d in decided.decisions
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


def _script_input(campaign_id: str, claim: _Claim) -> ClaimInput:
    who, request = claim.claimant, claim.request
    return ClaimInput(
        user_id=who.user_id,
        device_id=request.device_id,
        request_id=request.request_id,
        coupon_id=coupon_id_for(campaign_id, who.user_id, request.request_id),
        new_user=who.new_user,
        level=who.level,
        tags=who.tags,
        channel=request.channel,
        code=claim.code,
    )


def _replayed(claim: _Claim, text: str, view: CampaignView) -> Outcome:
    """The original answer to a retried claim, from the replay record claim.lua wrote."""
    record = ReplayRecord.parse(text)
    if record.user_id != claim.claimant.user_id or record.device_id != claim.request.device_id:
        return Outcome(Reason.REQUEST_MISMATCH)
    return Outcome(
        Reason.ACCEPTED, record.coupon_id, iso_ms(record.expires_at_ms, view.zone), replayed=True
    )
