"""What a worker remembers about published campaigns, to answer without Redis.

A worker keeps, per campaign id, the few facts that let it answer from memory: the keys,
the time zone, the window, and whether the campaign was lately found sold out. Entries
live ``campaign_cache_ms`` at most, and every worker drops an entry at once when an
operator changes the campaign (a message on ``keys.CAMPAIGN_EVENTS``). Unknown ids are
remembered too, so a flood of made-up ids costs one Redis look-up per id per interval.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

from redis.asyncio import Redis, RedisCluster
from redis.exceptions import RedisError

from gateway.infra.clock import Clock, Day, day_of
from gateway.keys import CAMPAIGN_EVENTS, CAMPAIGN_INDEX, CampaignKeys
from gateway.reasons import EXHAUSTED_TODAY, Reason
from gateway.rules.spec import Rules, decode_rules
from gateway.rules.windows import WindowClock
from gateway.shards.stock import shard_of

log = logging.getLogger(__name__)

EVENTS_POLL_S = 0.1


@dataclass(slots=True)
class CampaignView:
    """A worker's short-lived view of one published campaign."""

    keys: CampaignKeys
    zone: ZoneInfo
    start_ms: int
    end_ms: int
    status: str
    exhausted: Reason | None = None
    exhausted_until_ms: int = 0
    rules: Rules | None = None  # decided before Redis (gateway/rules/gate.py)
    channels: frozenset[str] = frozenset()  # listed or given a quota: metric labels
    windows: WindowClock | None = None
    shards: int = 1  # stock shards (gateway/shards/); a user claims on one, by hash
    _day: Day | None = field(default=None, repr=False)

    def keys_for(self, user_id: str) -> CampaignKeys:
        """The keys of the stock shard ``user_id`` claims on (the campaign's own for one)."""
        return self.keys.of_shard(shard_of(user_id, self.shards)) if self.shards > 1 else self.keys

    def day(self, now_ms: int) -> Day:
        """The campaign-zone calendar day containing ``now_ms`` (recomputed at midnight)."""
        day = self._day
        if day is None or not day.contains(now_ms):
            day = self._day = day_of(now_ms, self.zone)
        return day

    def exhausted_at(self, now_ms: int) -> Reason | None:
        """SOLD_OUT, DAILY_SOLD_OUT, BUDGET_EXHAUSTED or ENDED, if lately found so."""
        if self.exhausted is not None and now_ms < self.exhausted_until_ms:
            return self.exhausted
        return None

    def mark_exhausted(self, reason: Reason, now_ms: int, ttl_ms: int) -> None:
        """Remember for ``ttl_ms`` (not past midnight, for the daily kind) that claims are
        refused with ``reason``."""
        until = now_ms + ttl_ms
        if reason in EXHAUSTED_TODAY:
            until = min(until, self.day(now_ms).end_ms)
        self.exhausted, self.exhausted_until_ms = reason, until


@dataclass(slots=True)
class _Entry:
    view: CampaignView | None  # None: not published
    fetched_ms: int


class CampaignCache:
    """Campaign views by id, refreshed at most every ``ttl_ms``, dropped on change."""

    def __init__(self, redis: Redis, clock: Clock, ttl_ms: int, timeout_s: float) -> None:
        self._redis = redis
        self._clock = clock
        self._ttl_ms = ttl_ms
        self._timeout_s = timeout_s  # the claim client has no per-command timer
        self._entries: dict[str, _Entry] = {}
        self._loading: dict[str, asyncio.Future[CampaignView | None]] = {}

    async def get(self, campaign_id: str) -> CampaignView | None:
        """The view of ``campaign_id``, or None if no such campaign is published."""
        entry = self._entries.get(campaign_id)
        if entry is not None and self._clock.now_ms() - entry.fetched_ms < self._ttl_ms:
            return entry.view
        return await self._load_once(campaign_id)

    def invalidate(self, campaign_id: str | None = None) -> None:
        """Forget one campaign (or all), so the next claim reads Redis afresh."""
        if campaign_id is None:
            self._entries.clear()
        else:
            self._entries.pop(campaign_id, None)

    async def _load_once(self, campaign_id: str) -> CampaignView | None:
        """Load, sharing one Redis look-up among all claims that miss at the same time."""
        pending = self._loading.get(campaign_id)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[CampaignView | None] = asyncio.get_running_loop().create_future()
        self._loading[campaign_id] = future
        try:
            async with asyncio.timeout(self._timeout_s):
                view = await self._load(campaign_id)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # mark retrieved: later waiters re-raise it themselves
            raise
        else:
            future.set_result(view)
            self._entries[campaign_id] = _Entry(view, self._clock.now_ms())
            return view
        finally:
            del self._loading[campaign_id]

    async def _load(self, campaign_id: str) -> CampaignView | None:
        group = await self._redis.hget(CAMPAIGN_INDEX, campaign_id)
        if group is None:
            return None
        keys = CampaignKeys(campaign_id, str(group))
        config: dict[str, str] = await self._redis.hgetall(keys.config)  # type: ignore[assignment]
        if not config:
            return None
        previous = self._entries.get(campaign_id)
        zone, start_ms, end_ms = ZoneInfo(config["tz"]), int(config["start"]), int(config["end"])
        rules = decode_rules(config.get("rules"))
        view = CampaignView(
            keys=keys,
            zone=zone,
            start_ms=start_ms,
            end_ms=end_ms,
            status=config["status"],
            rules=rules,
            channels=frozenset(
                [c for c in config.get("channels", "").split(",") if c]
                + [q.split("=")[0] for q in config.get("quotas", "").split(",") if q]
            ),
            windows=(
                WindowClock(rules.windows, zone, start_ms, end_ms)
                if rules is not None and rules.windows is not None
                else None
            ),
            shards=int(config.get("shards") or 1),
        )
        if previous is not None and previous.view is not None:  # keep what was learnt
            view.exhausted = previous.view.exhausted
            view.exhausted_until_ms = previous.view.exhausted_until_ms
        return view


async def follow_campaign_events(
    redis: Redis,
    on_change: Callable[[str | None], None],
    subscribed: asyncio.Event,
    stop: asyncio.Event,
) -> None:
    """Call ``on_change(campaign_id)`` for every announced change until ``stop`` is set.

    After a lost subscription every campaign is treated as changed (``None``): messages
    sent while it was down are gone. The loop polls briefly instead of being cancelled:
    redis-py's pub/sub does not always let go of a cancelled read.
    """
    while not stop.is_set():
        pubsub = redis.pubsub(ignore_subscribe_messages=True)
        try:
            if isinstance(redis, RedisCluster):  # its pub/sub needs the slot map read first
                await redis.initialize()
            await pubsub.subscribe(CAMPAIGN_EVENTS)
            on_change(None)
            subscribed.set()
            while not stop.is_set():
                message = await pubsub.get_message(timeout=EVENTS_POLL_S)
                if message is not None and message["type"] == "message":
                    on_change(message["data"])
        except (RedisError, OSError) as exc:
            subscribed.clear()
            log.warning("campaign events subscription lost (%s); retrying", exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)
        finally:
            await pubsub.aclose()  # type: ignore[no-untyped-call]
