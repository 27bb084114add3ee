"""What operators do to campaigns: create, change, publish, pause, resume, top up, show.

Each operation writes PostgreSQL first (the record), then Redis (the gate), then
announces the campaign id on ``keys.CAMPAIGN_EVENTS`` so every worker drops what it
remembered about it. The admin API and the ``flashclaim campaign`` command both call
this one class.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec
from redis.asyncio import Redis

from gateway.campaigns.spec import Campaign, CampaignSpec, Status, redis_config
from gateway.campaigns.store import CampaignStore
from gateway.infra.clock import Clock, day_of
from gateway.keys import CAMPAIGN_EVENTS, CAMPAIGN_INDEX, CAMPAIGN_SHARDS, CampaignKeys
from gateway.rules.figures import channel_figures
from gateway.shards.stock import all_shards, shard_totals, share_of


class CampaignStateError(ValueError):
    """The operation does not fit the campaign's status (e.g. pausing a draft)."""


def keys_of(campaign: Campaign) -> CampaignKeys:
    """The Redis keys of a campaign."""
    return CampaignKeys(campaign.id, campaign.exclusion_group or "")


class CampaignOps:
    """Campaign operations over the store (PostgreSQL) and the gate (Redis)."""

    def __init__(self, store: CampaignStore, redis: Redis, clock: Clock) -> None:
        self.store = store
        self.redis = redis
        self._clock = clock

    async def create(self, spec: CampaignSpec) -> Campaign:
        """Store a new campaign as a draft (not yet claimable)."""
        return await self.store.create(spec)

    async def update(self, campaign_id: str, changes: dict[str, Any]) -> Campaign:
        """Change a campaign; a published one is republished at once."""
        campaign = await self.store.update(campaign_id, changes)
        if campaign.status is not Status.DRAFT:
            await self._push(campaign)
        return campaign

    async def publish(self, campaign_id: str) -> Campaign:
        """Make a campaign claimable: write it to Redis and mark it active."""
        campaign = await self.store.get(campaign_id)
        if campaign.status is Status.DRAFT:
            campaign = await self.store.set_status(campaign_id, Status.ACTIVE)
        await self._push(campaign)
        return campaign

    async def pause(self, campaign_id: str) -> Campaign:
        """Stop claims (answered PAUSED) until resumed."""
        return await self._move(campaign_id, Status.PAUSED, {Status.ACTIVE, Status.PAUSED})

    async def resume(self, campaign_id: str) -> Campaign:
        """Let claims through again after a pause."""
        return await self._move(campaign_id, Status.ACTIVE, {Status.PAUSED, Status.ACTIVE})

    async def top_up(self, campaign_id: str, stock: int, budget_cents: int) -> Campaign:
        """Add stock and budget; workers that found the campaign sold out forget it."""
        campaign = await self.store.top_up(campaign_id, stock, budget_cents)
        if campaign.status is not Status.DRAFT:
            n, before = campaign.stock_shards, campaign.stock - stock
            for keys in all_shards(keys_of(campaign), n):
                # Each shard's share grows to its share of the new stock, by increments, so
                # concurrent top-ups add up and a republish writes the same figures.
                added = share_of(campaign.stock, n, keys.shard) - share_of(before, n, keys.shard)
                async with self.redis.pipeline(transaction=True) as pipe:
                    pipe.hincrby(keys.config, "stock", added)
                    if campaign.budget_cents is not None:
                        pipe.hincrby(keys.config, "budget", budget_cents)
                    pipe.hset(keys.config, "version", campaign.version)
                    await pipe.execute()
            await self._announce(campaign.id)
        return campaign

    async def block(self, campaign_id: str, users: list[str], devices: list[str]) -> Campaign:
        """Refuse claims from these users and devices (answered BLOCKED)."""
        campaign = await self.store.block(campaign_id, users, devices)
        if campaign.status is not Status.DRAFT:
            await self._push_blocklist(campaign)
        return campaign

    async def live(self, campaign_id: str) -> dict[str, Any]:
        """A campaign with its live counters from Redis (zeros for a draft)."""
        campaign = await self.store.get(campaign_id)
        keys = keys_of(campaign)
        today_key = keys.daily(day_of(self._clock.now_ms(), campaign.zone).label)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hmget(keys.counters, "issued", "spent")
            pipe.hmget(keys.config, "stock", "budget", "status")
            pipe.xlen(keys.outbox)
            pipe.get(today_key)
            (issued, spent), (stock, budget, status), outbox, today = await pipe.execute()
        issued, spent = int(issued or 0), int(spent or 0)
        remaining = max(int(stock or campaign.stock) - issued, 0)
        if campaign.stock_shards > 1:  # the sum over the shards (gateway/shards/)
            shards = await shard_totals(self.redis, keys, campaign.stock_shards, today_key)
            issued, spent, today, outbox, remaining = shards
        live = {
            "publishedStatus": status,
            "issued": issued,
            "issuedToday": int(today or 0),
            "stockRemaining": remaining,
            "spentCents": spent,
            "spentByPayerCents": {  # who bears what was spent (the spec's cost source)
                "platform": campaign.cost.platform_share_cents(spent),
                "merchant": spent - campaign.cost.platform_share_cents(spent),
            },
            "budgetRemainingCents": (
                max(int(budget) - spent, 0) if budget and int(budget) else None
            ),
            "outboxLength": outbox,
        }
        if campaign.channel_quotas:  # figures by channel (gateway/rules/)
            counters: dict[str, str] = await self.redis.hgetall(keys.counters)  # type: ignore[assignment]
            live["channels"] = channel_figures(counters, campaign.channel_quotas)
        return {**msgspec.to_builtins(campaign), "live": live}

    async def _move(self, campaign_id: str, status: Status, allowed: set[Status]) -> Campaign:
        campaign = await self.store.get(campaign_id)
        if campaign.status not in allowed:
            raise CampaignStateError(
                f"campaign {campaign_id} is {campaign.status}; cannot become {status}"
            )
        campaign = await self.store.set_status(campaign_id, status)
        for keys in all_shards(keys_of(campaign), campaign.stock_shards):
            await self.redis.hset(
                keys.config, mapping={"status": status.value, "version": campaign.version}
            )
        await self._announce(campaign_id)
        return campaign

    async def _push(self, campaign: Campaign) -> None:
        await write_campaign(self.redis, campaign)
        await self._push_blocklist(campaign)

    async def _push_blocklist(self, campaign: Campaign) -> None:
        users, devices = await self.store.blocklist(campaign.id)
        members = [f"u:{u}" for u in users] + [f"d:{d}" for d in devices]
        for keys in all_shards(keys_of(campaign), campaign.stock_shards) if members else []:
            await self.redis.sadd(keys.blocked, *members)
        await self._announce(campaign.id)

    async def _announce(self, campaign_id: str) -> None:
        await self.redis.publish(CAMPAIGN_EVENTS, campaign_id)


async def write_campaign(redis: Redis, campaign: Campaign) -> None:
    """Publish a campaign's config to Redis, leaving its counters as they are. A campaign
    over several stock shards gets a copy per shard, each with its share of the stock."""
    n = campaign.stock_shards
    for shard_keys in all_shards(keys_of(campaign), n):
        async with redis.pipeline(transaction=True) as pipe:  # one slot per shard
            config: Mapping[Any, Any] = redis_config(campaign)
            if n > 1:
                config = {**config, "stock": share_of(campaign.stock, n, shard_keys.shard)}
            pipe.hset(shard_keys.config, mapping=config)
            pipe.set(shard_keys.spec, msgspec.json.encode(campaign))
            pipe.hsetnx(shard_keys.counters, "issued", 0)
            pipe.hsetnx(shard_keys.counters, "spent", 0)
            await pipe.execute()
    if n > 1:
        await redis.hset(CAMPAIGN_SHARDS, campaign.id, n)
    await redis.hset(CAMPAIGN_INDEX, campaign.id, campaign.exclusion_group or "")
    await redis.publish(CAMPAIGN_EVENTS, campaign.id)
