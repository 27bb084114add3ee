"""What anyone may know about a published campaign, for the H5 page and the herd polling it.

``GET /api/campaigns/{id}/public`` answers from a worker's memory: each worker reads a
campaign from Redis at most once per ``campaign_cache_ms`` (one pipelined round trip,
shared by every request that misses at the same moment), and only the server time is
computed per request. Nothing here touches PostgreSQL: the page works whenever claims do.

Stock is told in bands, never as a count: ``plenty``, ``few`` (a tenth of the stock or
less left) or ``none``. An exact count would tell a bot when to fire and how hard; a band
tells a person what they need to know.
"""

from __future__ import annotations

import asyncio
import enum
from dataclasses import dataclass

import msgspec
from redis.asyncio import Redis
from redis.exceptions import RedisError

from gateway.campaigns.pages import PageCopy
from gateway.campaigns.rule_text import RuleText, rule_text
from gateway.campaigns.spec import Campaign
from gateway.infra.clock import Clock
from gateway.keys import CAMPAIGN_INDEX, CampaignKeys
from gateway.rules.windows import WindowClock
from gateway.shards.stock import stock_figures

MAX_ENTRIES = 4096  # campaigns (and unknown ids) remembered per worker; the oldest go first
FEW_LEFT_SHARE = 10  # "few" when at most 1/10 of the stock is left

#: What reading a campaign may raise: Redis away or slow, a document this worker cannot read.
LOAD_ERRORS = (RedisError, OSError, msgspec.MsgspecError)


class PublicStatus(enum.StrEnum):
    """Where a campaign stands for someone looking at its page."""

    UPCOMING = "upcoming"  # opensAtMs says when
    OPEN = "open"
    PAUSED = "paused"  # paused by an operator (or being recovered)
    ENDED = "ended"
    SOLD_OUT = "sold_out"  # no stock, or the budget cannot cover another coupon


class StockLeft(enum.StrEnum):
    """Stock left, in bands (see the module docstring)."""

    PLENTY = "plenty"
    FEW = "few"
    NONE = "none"


class PublicCampaign(msgspec.Struct, rename="camel", frozen=True):
    """The body of ``GET /api/campaigns/{id}/public``; times are epoch milliseconds.

    ``opensAtMs`` is when claims next open (today: the start, while upcoming; later: the
    next claim window), ``null`` once they are open or will not open again.
    """

    id: str
    name: str
    status: PublicStatus
    starts_at_ms: int
    ends_at_ms: int
    opens_at_ms: int | None
    server_now_ms: int
    stock_left: StockLeft
    channel: str
    page: PageCopy
    rule_text: RuleText


@dataclass(frozen=True, slots=True)
class Snapshot:
    """One campaign as a worker last read it from Redis."""

    campaign: Campaign  # as published: name, kind, validity, pages
    live_status: str  # config's: active, paused, recovering
    start_ms: int
    end_ms: int
    stock: int
    left: int  # coupons that stock and budget still allow
    rule_text: RuleText
    windows: WindowClock | None = None  # claim windows (gateway/rules/), if any

    def status_at(self, now_ms: int) -> PublicStatus:
        """The campaign's status at ``now_ms``."""
        if now_ms >= self.end_ms:
            return PublicStatus.ENDED
        if self.live_status != "active":
            return PublicStatus.PAUSED
        if self.left <= 0:
            return PublicStatus.SOLD_OUT
        if now_ms < self.start_ms:
            return PublicStatus.UPCOMING
        if self.windows is not None and not (window := self.windows.state(now_ms)).open:
            return PublicStatus.UPCOMING if window.opens_ms else PublicStatus.ENDED
        return PublicStatus.OPEN

    def opens_at(self, now_ms: int) -> int:
        """When claims next open, while upcoming: the start, or the next claim window."""
        if now_ms < self.start_ms or self.windows is None:
            return self.start_ms
        return self.windows.state(now_ms).opens_ms

    def stock_left(self) -> StockLeft:
        """The band the stock left falls in."""
        if self.left <= 0:
            return StockLeft.NONE
        return StockLeft.FEW if self.left * FEW_LEFT_SHARE <= self.stock else StockLeft.PLENTY

    def public(self, channel: str, now_ms: int) -> PublicCampaign:
        """The public view for a page opened for ``channel``, at ``now_ms``."""
        status = self.status_at(now_ms)
        page = self.campaign.pages.titled_copy_for(channel, self.campaign.name)
        return PublicCampaign(
            id=self.campaign.id,
            name=self.campaign.name,
            status=status,
            starts_at_ms=self.start_ms,
            ends_at_ms=self.end_ms,
            opens_at_ms=self.opens_at(now_ms) if status is PublicStatus.UPCOMING else None,
            server_now_ms=now_ms,
            stock_left=self.stock_left(),
            channel=channel,
            page=page,
            rule_text=self.rule_text,
        )


@dataclass(frozen=True, slots=True)
class _Entry:
    snapshot: Snapshot | None  # None: no such published campaign
    fetched_ms: int


class PublicViews:
    """Snapshots of published campaigns by id, read from Redis at most every ``ttl_ms``.

    While Redis is away, the last snapshot read is served however old; a campaign never
    read raises the Redis error.
    """

    def __init__(self, redis: Redis, clock: Clock, ttl_ms: int, timeout_s: float) -> None:
        self.clock = clock
        self._redis = redis
        self._ttl_ms = ttl_ms
        self._timeout_s = timeout_s
        self._entries: dict[str, _Entry] = {}
        self._groups: dict[str, str] = {}  # a published campaign's group never changes
        self._loading: dict[str, asyncio.Task[Snapshot | None]] = {}

    async def public(self, campaign_id: str, channel: str) -> PublicCampaign | None:
        """The public view of ``campaign_id`` now, or None if no such campaign is published."""
        snapshot = await self.snapshot(campaign_id)
        return None if snapshot is None else snapshot.public(channel, self.clock.now_ms())

    async def snapshot(self, campaign_id: str) -> Snapshot | None:
        """The campaign as last read, refreshed when older than ``ttl_ms``."""
        entry = self._entries.get(campaign_id)
        now = self.clock.now_ms()
        if entry is not None and 0 <= now - entry.fetched_ms < self._ttl_ms:  # clocks step back
            return entry.snapshot
        try:
            snapshot = await self._shared_load(campaign_id)
        except LOAD_ERRORS:
            if entry is not None:
                return entry.snapshot  # stale beats nothing while Redis is away
            raise
        self._remember(campaign_id, _Entry(snapshot, now))
        return snapshot

    async def _shared_load(self, campaign_id: str) -> Snapshot | None:
        """One Redis read per campaign at a time, however many requests wait for it."""
        task = self._loading.get(campaign_id)
        if task is None:
            task = asyncio.ensure_future(self._load(campaign_id))
            self._loading[campaign_id] = task
            task.add_done_callback(lambda done: self._loaded(campaign_id, done))
        return await asyncio.shield(task)

    def _loaded(self, campaign_id: str, task: asyncio.Task[Snapshot | None]) -> None:
        del self._loading[campaign_id]
        if not task.cancelled():
            task.exception()  # retrieved: each waiter raises it on its own

    def _remember(self, campaign_id: str, entry: _Entry) -> None:
        entries = self._entries
        if campaign_id not in entries and len(entries) >= MAX_ENTRIES:
            del entries[next(iter(entries))]
        entries[campaign_id] = entry

    async def _load(self, campaign_id: str) -> Snapshot | None:
        async with asyncio.timeout(self._timeout_s):
            group = self._groups.get(campaign_id)
            if group is None:
                found = await self._redis.hget(CAMPAIGN_INDEX, campaign_id)
                if found is None:
                    return None
                group = self._groups[campaign_id] = str(found)
            keys = CampaignKeys(campaign_id, group)
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.hmget(keys.config, "status", "start", "end", "stock", "budget", "value")
                pipe.hmget(keys.counters, "issued", "spent")
                pipe.get(keys.spec)
                config, counters, spec = await pipe.execute()
        status, start, end, stock, budget, value = config
        if status in (None, "draft") or spec is None:
            return None
        campaign = msgspec.json.decode(spec, type=Campaign)
        issued, spent = (int(n or 0) for n in counters)
        left = int(stock or 0) - issued
        if campaign.stock_shards > 1:  # the sums over the stock shards (gateway/shards/)
            async with asyncio.timeout(self._timeout_s):
                stock, left = await stock_figures(self._redis, keys, campaign.stock_shards)
        if int(budget or 0) and int(value or 0):
            left = min(left, (int(budget) - spent) // int(value))
        return Snapshot(
            campaign=campaign,
            live_status=status,
            start_ms=int(start),
            end_ms=int(end),
            stock=int(stock or 0),
            left=left,
            rule_text=rule_text(campaign),
            windows=(
                WindowClock(campaign.windows, campaign.zone, int(start), int(end))
                if campaign.windows is not None
                else None
            ),
        )
