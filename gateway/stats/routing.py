"""The claim path's view of experiments: which campaign a user's claim goes to.

A claim naming any variant's campaign of an experiment is decided on the campaign of the
variant the user is bucketed into (``Experiment.variant_for``: the promoted variant once
there is one), so one user always sees one variant whichever link they came by. The
answer names the experiment and the variant. After a promotion, a user who already holds a
coupon of their old variant stays on it (one read of that campaign's per-user counts, only
for such users): their retry replays their coupon, and they never hold both variants.

Each worker keeps every published experiment in memory and reads them again at most every
``ttl_ms`` (one ``HGETALL`` and one ``MGET``, shared by all claims that find the copy
stale): a claim pays a dictionary look-up, and a campaign in no experiment nothing more.
While Redis cannot be read the last copy is kept (the claim itself then meets Redis).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import msgspec
from redis.asyncio import Redis
from redis.exceptions import RedisError

from gateway import keys
from gateway.infra.clock import Clock
from gateway.keys import CampaignKeys
from gateway.shards.stock import shard_counts, shard_of
from gateway.stats.experiments import Experiment

_decoder = msgspec.json.Decoder(Experiment)


@dataclass(frozen=True, slots=True)
class Route:
    """Where a claim goes: the variant's campaign, and what to tell the client."""

    campaign_id: str
    experiment_id: str
    variant: str


class ExperimentRouter:
    """Experiments by campaign id, from Redis, refreshed at most every ``ttl_ms``."""

    def __init__(self, redis: Redis, clock: Clock, ttl_ms: int, timeout_s: float) -> None:
        self._redis = redis
        self._clock = clock
        self._ttl_ms = ttl_ms
        self._timeout_s = timeout_s
        self._by_campaign: dict[str, Experiment] = {}
        self._groups: dict[str, str] = {}  # campaign id -> exclusion group (for its keys)
        self._shards: dict[str, int] = {}  # campaign id -> stock shards (gateway/shards/)
        self._fetched_ms: int | None = None
        self._loading: asyncio.Task[None] | None = None

    async def route(self, campaign_id: str, user_id: str) -> Route | None:
        """The route of ``user_id``'s claim on ``campaign_id``; None: not in an experiment."""
        fetched = self._fetched_ms
        if fetched is None or self._clock.now_ms() - fetched >= self._ttl_ms:
            await self._refresh()
        experiment = self._by_campaign.get(campaign_id)
        if experiment is None:
            return None
        variant = experiment.variant_for(user_id)
        if experiment.promoted is not None:
            bucketed = experiment.bucketed(user_id)
            if bucketed != variant and await self._holds(bucketed.campaign_id, user_id):
                variant = bucketed
        return Route(variant.campaign_id, experiment.id, variant.name)

    async def _holds(self, campaign_id: str, user_id: str) -> bool:
        """Whether ``user_id`` claimed from ``campaign_id`` (unknown while Redis is away:
        then the promoted variant decides)."""
        shards = self._shards.get(campaign_id, 1)  # a sharded campaign: the user's shard
        users = (
            CampaignKeys(campaign_id, self._groups.get(campaign_id, ""))
            .of_shard(shard_of(user_id, shards))
            .users
        )
        try:
            async with asyncio.timeout(self._timeout_s):
                return bool(await self._redis.hget(users, user_id))
        except (RedisError, OSError, TimeoutError):
            return False

    async def _refresh(self) -> None:
        if self._loading is None:
            self._loading = asyncio.ensure_future(self._load())
        loading = self._loading
        try:
            await asyncio.shield(loading)
        finally:
            if self._loading is loading and loading.done():
                self._loading = None

    async def _load(self) -> None:
        try:
            async with asyncio.timeout(self._timeout_s):
                owners: dict[str, str] = await self._redis.hgetall(  # type: ignore[assignment]
                    keys.EXPERIMENT_OF
                )
                ids = sorted(set(owners.values()))
                texts = await _documents(self._redis, [keys.experiment(i) for i in ids])
                campaigns = sorted(owners)
                groups = await self._redis.hmget(keys.CAMPAIGN_INDEX, campaigns) if owners else []
                shards = await shard_counts(self._redis, campaigns)
        except (RedisError, OSError, TimeoutError):
            self._fetched_ms = self._clock.now_ms()  # keep the last copy for another ttl
            return
        experiments = {i: _decoder.decode(text) for i, text in zip(ids, texts, strict=True) if text}
        self._by_campaign = {
            campaign: experiments[owner]
            for campaign, owner in owners.items()
            if owner in experiments
        }
        self._groups = {c: str(g or "") for c, g in zip(campaigns, groups, strict=True)}
        self._shards = dict(zip(campaigns, shards, strict=True))
        self._fetched_ms = self._clock.now_ms()


async def _documents(redis: Redis, names: list[str]) -> list[str | None]:
    """GET each key in one round trip per node: the keys lie on different slots of a
    Redis Cluster, where one MGET of them is refused (CROSSSLOT)."""
    if not names:
        return []
    async with redis.pipeline(transaction=False) as pipe:
        for name in names:
            pipe.get(name)
        return list(await pipe.execute())
