"""Deciding claims: local guards first, then one script call per batch.

A claim that needs no Redis is answered from memory: over a rate cap, unknown campaign,
before the campaign's start. A campaign lately found sold out (or ended, or out of budget)
costs one read of the batch's replay records, so a retry of an accepted claim still
gets its coupon. Everything else goes through the campaign's batcher: one ``claim.lua``
call decides the whole batch, one round trip. The script's replay record is the
requestId's binding, scoped to its campaign: a retry gets the same answer, a reuse by
another user or device is REQUEST_MISMATCH, and a refused claim binds nothing.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

import msgspec
from redis.asyncio import Redis
from redis.exceptions import RedisError

from gateway.campaigns.cache import CampaignCache, CampaignView
from gateway.claim.batcher import Batcher
from gateway.claim.script import (
    Batch,
    ClaimInput,
    ClaimScript,
    Decided,
    Decision,
    ReplayRecord,
    coupon_id_for,
)
from gateway.claim.winners import Winners
from gateway.claim.wire import ClusterWire, Wire, supports
from gateway.identifiers import CampaignId, DeviceId, Label, RequestId
from gateway.infra import metrics
from gateway.infra.auth import Claimant
from gateway.infra.clock import Clock, iso_ms
from gateway.infra.ratelimit import RateLimiter
from gateway.infra.settings import Settings
from gateway.reasons import EXHAUSTED, Reason
from gateway.rules.figures import count_by_channel
from gateway.rules.gate import ClaimGate, Refusal, window_refusal
from gateway.rules.profiles import CachedProfiles, HttpProfiles
from gateway.shards.stock import ShardedStock

log = logging.getLogger(__name__)

#: Rounds of borrowing a sharded campaign's batch may take before it answers OVERLOADED.
BORROW_ROUNDS = 16


class ClaimRequest(msgspec.Struct, rename="camel", forbid_unknown_fields=True, frozen=True):
    """The body of ``POST /api/coupon/issue``."""

    campaign_id: CampaignId
    request_id: RequestId
    device_id: DeviceId
    channel: Label
    city: Label | None = None  # judged only by campaigns with citySource "request"


@dataclass(frozen=True, slots=True)
class Outcome:
    """The answer to one claim."""

    reason: Reason
    coupon_id: str = ""
    expires_at: str = ""  # RFC 3339, in the campaign's time zone
    replayed: bool = False
    retry_after_s: float = 0.0
    offer: str = ""  # NOT_ELIGIBLE by an offer rule: the campaign offered instead


@dataclass(frozen=True, slots=True)
class _Claim:
    request: ClaimRequest
    claimant: Claimant
    refusal: Outcome | None = None  # a claim rule's answer, unless it replays (gateway/rules/)
    code: str = ""  # a redeem code's keyed hash (gateway/channels/redeem.py), "" for none


class _Runner(Protocol):
    async def __call__(self, campaign_id: str, claims: Sequence[_Claim]) -> list[Outcome]: ...


class ClaimService:
    """Answers claims; one instance per worker process."""

    def __init__(self, redis: Redis, clock: Clock, settings: Settings) -> None:
        self._redis = redis
        self._clock = clock
        self._settings = settings
        self._timeout_s = settings.redis_timeout_ms / 1000
        self._wire = _wire(settings, self._timeout_s)
        self._script = ClaimScript(redis, wire=self._wire)
        self.campaigns = CampaignCache(redis, clock, settings.campaign_cache_ms, self._timeout_s)
        self.profiles = (
            HttpProfiles(settings.profile_url, settings.profile_timeout_ms)
            if settings.profile_url
            else None
        )
        self.gate = ClaimGate(  # claim rules decided before Redis (gateway/rules/)
            redis,
            self.campaigns,
            self.profiles
            and CachedProfiles(
                self.profiles, clock, settings.profile_cache_s * 1000, settings.profile_timeout_ms
            ),
            settings.profile_fallback,
            self._timeout_s,
        )
        self.winners = Winners(redis, settings.sold_out_memory_max, self._timeout_s)
        self.stock = ShardedStock(redis)  # hot campaigns' stock shards (gateway/shards/)
        self._limits = (
            RateLimiter(settings.user_rate, settings.user_burst),
            RateLimiter(settings.device_rate, settings.device_burst),
            RateLimiter(settings.ip_rate, settings.ip_burst),
        )
        self._deciders: dict[str, Batcher[_Claim, Outcome]] = {}
        self._replayers: dict[str, Batcher[_Claim, Outcome]] = {}

    async def detect_server(self) -> None:
        """Speak the Redis that answers: 6.2 (pip-shipped, for local runs) lacks the
        script's ``#!lua`` line."""
        try:
            async with asyncio.timeout(self._timeout_s):
                info: dict[str, Any] = await self._redis.info("server")
        except (RedisError, TimeoutError):
            return  # Redis is away at start: assume a current one, the documented minimum
        major = int(str(info["redis_version"]).split(".")[0])
        self._script = ClaimScript(self._redis, major, self._wire)
        self.stock = ShardedStock(self._redis, major)

    async def aclose(self) -> None:
        """Close the claim path's own connection (the caller closes ``redis``)."""
        if self._wire is not None:
            await self._wire.aclose()
        if self.profiles is not None:
            await self.profiles.aclose()

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
        claim = _Claim(request, claimant, code=code)
        if view.status == "active" and now < view.start_ms:
            metrics.child(metrics.CACHE_ANSWERS, request.campaign_id, Reason.NOT_STARTED).inc()
            return Outcome(Reason.NOT_STARTED, retry_after_s=(view.start_ms - now) / 1000)
        if view.rules is not None:
            refused = await self.gate.check(view, claimant, request.city, now)
            if refused is not None:  # refused, unless it is a retry of an accepted claim
                claim = _Claim(request, claimant, refusal=_refused(refused))
                return await self._batcher(self._replayers, view, self._replay, claim).submit(claim)
        exhausted = view.exhausted_at(now)
        if exhausted is not None:
            metrics.child(metrics.CACHE_ANSWERS, request.campaign_id, exhausted).inc()
            winners = self.winners.of(request.campaign_id, view.keys_for(claimant.user_id).shard)
            if winners is not None and request.request_id not in winners:
                return Outcome(exhausted)  # not a winner's retry: nothing to look up
            return await self._batcher(self._replayers, view, self._replay, claim).submit(claim)
        outcome = await self._batcher(self._deciders, view, self._decide, claim).submit(claim)
        if outcome.reason in EXHAUSTED:
            view.mark_exhausted(outcome.reason, now, self._settings.sold_out_cache_ms)
        return outcome

    def invalidate(self, campaign_id: str | None = None) -> None:
        """A campaign changed (or all did): forget what this worker learnt of it."""
        self.campaigns.invalidate(campaign_id)
        self.winners.invalidate(campaign_id)

    async def ping(self) -> None:
        """Raise if Redis does not answer (TimeoutError if not within the timeout)."""
        async with asyncio.timeout(self._timeout_s):
            await self._redis.ping()

    def _rate_wait(self, user_id: str, device_id: str, ip: str) -> float:
        now = time.monotonic()
        users, devices, ips = self._limits
        return users.check(user_id, now) or devices.check(device_id, now) or ips.check(ip, now)

    def _batcher(
        self,
        batchers: dict[str, Batcher[_Claim, Outcome]],
        view: CampaignView,
        run: _Runner,
        claim: _Claim,
    ) -> Batcher[_Claim, Outcome]:
        """The campaign's batcher (one per stock shard: a batch is one shard's call)."""
        campaign_id = view.keys.campaign_id
        name = view.keys_for(claim.claimant.user_id).base if view.shards > 1 else campaign_id
        batcher = batchers.get(name)
        if batcher is None:
            batcher = batchers[name] = Batcher(
                lambda claims: run(campaign_id, claims), self._settings.batch_max
            )
        return batcher

    async def _decide(self, campaign_id: str, claims: Sequence[_Claim]) -> list[Outcome]:
        """Decide a batch in one ``claim.lua`` call (which also answers retries)."""
        view = await self.campaigns.get(campaign_id)
        if view is None:
            return [Outcome(Reason.UNKNOWN_CAMPAIGN)] * len(claims)
        return await self._run_script(view, claims)

    async def _run_script(self, view: CampaignView, claims: Sequence[_Claim]) -> list[Outcome]:
        now = self._clock.now_ms()
        closed = window_refusal(view, now)  # the script's instant: exact at a window's edge
        if closed is not None:  # answered like the gate's refusals: retries still replay
            refusal = _refused(closed)
            return await self._replay(
                view.keys.campaign_id,
                [_Claim(c.request, c.claimant, refusal=refusal) for c in claims],
            )
        day = view.day(now)
        cid = view.keys.campaign_id
        sharded = view.shards > 1  # every claim of a batch is on one shard: its user's
        batch = Batch(
            keys=view.keys_for(claims[0].claimant.user_id),
            day=day.label,
            now_ms=now,
            day_end_ms=day.end_ms,
            replay_ttl_s=self._settings.replay_ttl_s,
            outbox_max_len=self._settings.outbox_max_len,
            claims=[_script_input(cid, claim) for claim in claims],
            winners_max=self._settings.sold_out_memory_max,
        )
        started = time.perf_counter()
        async with asyncio.timeout(self._timeout_s):
            decided = await self._script(batch)
        if sharded:
            decided = await self._borrowing(view, batch, decided)
        if self._settings.redis_wait_replicas and _accepts(decided.decisions):
            async with asyncio.timeout(self._timeout_s):  # a borrow's claims: the same shard
                await self._replicated(batch.keys.config)
        metrics.child(metrics.SCRIPT_SECONDS, "claim").observe(time.perf_counter() - started)
        metrics.BATCH_SIZE.observe(len(claims))  # the figures per batch, not per claim
        if not sharded:  # a shard's figures are not the campaign's (admin view: the sums)
            metrics.child(metrics.OUTBOX_LENGTH, cid).set(decided.outbox_length)
            metrics.child(metrics.STOCK_REMAINING, cid).set(max(decided.stock - decided.issued, 0))
            metrics.child(metrics.STOCK_TOTAL, cid).set(decided.stock)
        count_by_channel(
            cid,
            view.channels,
            [c.request.channel for c in claims],
            [d.reason for d in decided.decisions],
        )
        exhausted = any(d.reason in EXHAUSTED for d in decided.decisions)
        self.winners.observe(batch.keys, decided.issued, exhausted)  # the shard's issued
        expiries: dict[int, str] = {}  # a batch's coupons share one or two expiry instants
        outcomes = []
        for d in decided.decisions:
            expires = ""
            if d.coupon_id:
                expires = expiries.get(d.expires_at_ms) or expiries.setdefault(
                    d.expires_at_ms, iso_ms(d.expires_at_ms, view.zone)
                )
            outcomes.append(Outcome(d.reason, d.coupon_id, expires, d.replayed))
        return outcomes

    async def _replicated(self, key: str) -> None:
        """``WAIT`` for the configured replicas to hold the batch just decided (on the
        connection that sent it). Past the WAIT timeout the claims are answered as
        decided (they are in the master, its outbox included) and the batch is counted:
        a failover before the replicas catch up loses them, reconcile finds them."""
        wanted = self._settings.redis_wait_replicas
        assert self._wire is not None  # WAIT is sent only over the claim path's own connection
        acked = await self._wire.wait(key, wanted, self._settings.redis_wait_timeout_ms)
        if acked < wanted:
            metrics.UNREPLICATED.inc()
            log.warning("a claim batch was acknowledged by %d of %d replicas", acked, wanted)

    async def _borrowing(self, view: CampaignView, batch: Batch, decided: Decided) -> Decided:
        """A shard's SOLD_OUT is not yet the campaign's: borrow stock from the other shards
        and decide those claims again; answer SOLD_OUT only once no shard holds any
        (``ShardedStock.sold_out``). Stock that keeps moving for ``BORROW_ROUNDS`` rounds
        (shards borrowing from each other at once) is answered OVERLOADED: retry. Redis
        failing meanwhile answers those claims UNAVAILABLE; the batch's accepted claims keep
        their coupons (a lend it left half-done is finished by the replayer)."""
        decisions = list(decided.decisions)
        instead = Reason.OVERLOADED
        try:
            for _ in range(BORROW_ROUNDS):
                short = [i for i, d in enumerate(decisions) if d.reason is Reason.SOLD_OUT]
                if not short:
                    return replace(decided, decisions=decisions)
                async with asyncio.timeout(self._timeout_s):
                    shard, wanted = batch.keys.shard, len(short)
                    got = await self.stock.borrow(view.keys, view.shards, shard, wanted)
                    if not got and await self.stock.sold_out(view.keys, view.shards):
                        return replace(decided, decisions=decisions)
                    decided = await self._script(
                        replace(batch, claims=[batch.claims[i] for i in short])
                    )
                for i, again in zip(short, decided.decisions, strict=True):
                    decisions[i] = again
        except (RedisError, OSError) as exc:  # OSError covers TimeoutError
            log.warning("borrowing stock for %s failed: %r", view.keys.campaign_id, exc)
            instead = Reason.UNAVAILABLE
        busy = Decision(instead, "", 0, False)
        decisions = [busy if d.reason is Reason.SOLD_OUT else d for d in decisions]
        return replace(decided, decisions=decisions)

    async def _replay(self, campaign_id: str, claims: Sequence[_Claim]) -> list[Outcome]:
        """Answer claims to an exhausted campaign: the original answer for a retried
        accepted requestId, the campaign's refusal for everything else."""
        view = await self.campaigns.get(campaign_id)
        if view is None:
            return [Outcome(Reason.UNKNOWN_CAMPAIGN)] * len(claims)
        refusal = Outcome(view.exhausted or Reason.SOLD_OUT)
        started = time.perf_counter()
        keys = [view.keys_for(c.claimant.user_id).request(c.request.request_id) for c in claims]
        async with asyncio.timeout(self._timeout_s):
            records: list[str | None] = await (  # type: ignore[assignment]  # decoded
                self._wire.command("MGET", *keys)
                if self._wire is not None
                else self._redis.mget(keys)
            )
        metrics.child(metrics.SCRIPT_SECONDS, "replay").observe(time.perf_counter() - started)
        return [
            (claim.refusal or refusal) if record is None else _replayed(claim, record, view)
            for claim, record in zip(claims, records, strict=True)
        ]


def _wire(settings: Settings, timeout_s: float) -> Wire | ClusterWire | None:
    """The claim path's own connection: to the one Redis, or to each master of a cluster.
    ``WAIT`` durability needs it (WAIT covers the writes of the connection it is sent on),
    so ``redis_wait_replicas`` turns it on whatever ``claim_lean_redis`` says."""
    lean = settings.claim_lean_redis or settings.redis_wait_replicas > 0
    if not (lean and supports(settings.redis_url)):
        return None
    if settings.redis_cluster:
        return ClusterWire(settings.redis_url, timeout_s)
    return Wire(settings.redis_url, timeout_s)


def _accepts(decisions: Sequence[Decision]) -> bool:
    """Whether a batch accepted a claim just now (a replay wrote nothing new)."""
    return any(d.reason is Reason.ACCEPTED and not d.replayed for d in decisions)


def _refused(refused: Refusal) -> Outcome:
    return Outcome(refused.reason, retry_after_s=refused.retry_after_s, offer=refused.offer)


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
