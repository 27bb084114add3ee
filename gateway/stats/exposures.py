"""Exposures (曝光): how often a campaign was seen, and by how many people, per day.

Front-ends report views in batches (``POST /api/exposures``); each view is counted on the
campaign's own calendar day (its time zone, like per-day claim limits), on the gateway's
clock, never the client's. Per campaign x day, Redis keeps

* a hash channel -> views (``HINCRBY``: exact, a few bytes per channel);
* a HyperLogLog of viewers per channel and one for all channels (``PFADD``): unique viewers
  in at most 12 KB each whatever the crowd, with a standard error of 0.81 %. Unique counts
  cannot be added up across channels, hence the campaign-wide one.

A batch may carry a ``batchId``: a resent batch (the page retried after a lost answer) is
then counted once. Views of campaigns that are not published are ignored (and said so), so
made-up ids cannot grow Redis. ``rollup`` copies the day's figures into PostgreSQL
(``exposure_daily``); it writes values, not increments, so running it again, or twice at
once, is harmless.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date
from typing import Annotated

import asyncpg
import msgspec
from redis.asyncio import Redis

from gateway import keys
from gateway.campaigns.cache import CampaignCache
from gateway.identifiers import CampaignId, DeviceId, Label, RequestId
from gateway.infra import metrics
from gateway.infra.clock import Clock

#: The ``channel`` of ``exposure_daily`` rows holding a campaign's figures over every
#: channel (channels are labels, which never contain ``*``).
ALL_CHANNELS = "*"

#: How long past its end a day's Redis keys are kept (the rollup copies them long before).
DAY_KEY_TTL_S = 8 * 86_400

#: Channels a worker counts per campaign-day at most. A campaign open to every channel
#: would otherwise let made-up channel names grow Redis without bound; views on channels
#: past the cap are ignored (a real campaign has a handful of channels).
MAX_CHANNELS_PER_DAY = 64


class View(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    """One campaign seen once on one channel."""

    campaign_id: CampaignId
    channel: Label = "h5"


class ExposureBatch(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    """Body of ``POST /api/exposures``: views one viewer had since the last report."""

    viewer_id: DeviceId  # the app's device id (the H5 page: the one it claims with)
    views: Annotated[list[View], msgspec.Meta(min_length=1)]
    batch_id: RequestId | None = None  # the same id again counts nothing


class ExposureAnswer(msgspec.Struct, rename="camel"):
    """What was counted: views of published campaigns; the rest ignored."""

    counted: int
    ignored: int
    replayed: bool = False  # this batchId was counted before; nothing counted now


@dataclass(frozen=True, slots=True)
class _DayKey:
    campaign_id: str
    day: str  # YYYYMMDD in the campaign's zone


class ExposureCounter:
    """Counts batches of views in Redis (one pipelined round trip per batch)."""

    def __init__(
        self, redis: Redis, campaigns: CampaignCache, clock: Clock, batch_ttl_s: int
    ) -> None:
        self._redis = redis
        self._campaigns = campaigns
        self._clock = clock
        self._batch_ttl_s = batch_ttl_s
        self._channels: dict[_DayKey, set[str]] = {}  # seen by this worker, for the cap

    async def count(self, batch: ExposureBatch) -> ExposureAnswer:
        """Count ``batch``'s views of published campaigns on each campaign's today."""
        now_ms = self._clock.now_ms()
        views: dict[_DayKey, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        ends: dict[_DayKey, int] = {}
        ignored = 0
        for view in batch.views:
            campaign = await self._campaigns.get(view.campaign_id)
            if campaign is None:
                ignored += 1
                continue
            day = campaign.day(now_ms)
            key = _DayKey(view.campaign_id, day.label)
            if not self._admit(key, view.channel):
                ignored += 1
                continue
            views[key][view.channel] += 1
            ends[key] = day.end_ms
        if batch.batch_id is not None and views:
            first = await self._redis.set(
                keys.exposure_batch(batch.batch_id), 1, nx=True, ex=self._batch_ttl_s
            )
            if not first:
                return ExposureAnswer(counted=0, ignored=ignored, replayed=True)
        if views:
            await self._write(batch.viewer_id, views, ends, now_ms)
            for key, channels in views.items():
                metrics.child(metrics.EXPOSURES, key.campaign_id).inc(sum(channels.values()))
        return ExposureAnswer(counted=len(batch.views) - ignored, ignored=ignored)

    def _admit(self, key: _DayKey, channel: str) -> bool:
        """Whether views on ``channel`` are counted (the first 64 channels of a day are)."""
        seen = self._channels.get(key)
        if seen is None:
            if len(self._channels) >= 10_000:  # old days: forget them all, cheaply
                self._channels.clear()
            seen = self._channels[key] = set()
        if channel in seen:
            return True
        if len(seen) >= MAX_CHANNELS_PER_DAY:
            return False
        seen.add(channel)
        return True

    async def _write(
        self,
        viewer: str,
        views: dict[_DayKey, dict[str, int]],
        ends: dict[_DayKey, int],
        now_ms: int,
    ) -> None:
        pipe = self._redis.pipeline(transaction=False)
        for key, channels in views.items():
            # Relative to the gateway's clock (Redis's own may disagree with an injected one).
            ttl_s = (ends[key] - now_ms) // 1000 + DAY_KEY_TTL_S
            counts = keys.exposure_views(key.campaign_id, key.day)
            everyone = keys.exposure_viewers(key.campaign_id, key.day)
            for channel, n in channels.items():
                pipe.hincrby(counts, channel, n)
                per_channel = keys.exposure_viewers(key.campaign_id, key.day, channel)
                pipe.pfadd(per_channel, viewer)
                pipe.expire(per_channel, ttl_s)
            pipe.pfadd(everyone, viewer)
            pipe.expire(counts, ttl_s)
            pipe.expire(everyone, ttl_s)
            pipe.sadd(keys.EXPOSURE_DAYS, f"{key.campaign_id}|{key.day}")
        await pipe.execute()


class DayFigures(msgspec.Struct):
    """One campaign-day's exposures as rolled up (``channel`` ``*``: all channels)."""

    campaign_id: str
    channel: str
    day: date
    views: int
    unique_viewers: int


UPSERT = """
INSERT INTO exposure_daily (campaign_id, channel, day, views, unique_viewers, rolled_up_at)
SELECT c, ch, d, v, u, now()
FROM unnest($1::text[], $2::text[], $3::date[], $4::bigint[], $5::bigint[]) AS t(c, ch, d, v, u)
ON CONFLICT (campaign_id, channel, day) DO UPDATE
SET views = EXCLUDED.views, unique_viewers = EXCLUDED.unique_viewers,
    rolled_up_at = EXCLUDED.rolled_up_at
"""


async def read_day(redis: Redis, campaign_id: str, day: str) -> list[DayFigures]:
    """A campaign-day's figures as Redis holds them now (per channel, then ``*``)."""
    counts: dict[str, str] = await redis.hgetall(keys.exposure_views(campaign_id, day))  # type: ignore[assignment]
    channels = sorted(counts)
    pipe = redis.pipeline(transaction=False)
    # PFCOUNT by name: redis-py's cluster pipeline refuses its pfcount() (a multi-key
    # command there); each of these counts one key, routed to that key's node.
    for channel in channels:
        pipe.execute_command("PFCOUNT", keys.exposure_viewers(campaign_id, day, channel))
    pipe.execute_command("PFCOUNT", keys.exposure_viewers(campaign_id, day))
    uniques = await pipe.execute()
    when = date(int(day[:4]), int(day[4:6]), int(day[6:]))
    rows = [
        DayFigures(campaign_id, channel, when, int(counts[channel]), int(unique))
        for channel, unique in zip(channels, uniques[:-1], strict=True)
    ]
    if rows:
        total = sum(row.views for row in rows)
        rows.append(DayFigures(campaign_id, ALL_CHANNELS, when, total, int(uniques[-1])))
    return rows


async def rollup(redis: Redis, pool: asyncpg.Pool, campaigns: CampaignCache, now_ms: int) -> int:
    """Copy every pending campaign-day's exposures into ``exposure_daily``; return rows.

    Days before the campaign's today are final: once stored they leave the pending set.
    Today's stay pending for the next rollup. A campaign no longer published counts as over.
    """
    pending: set[str] = await redis.smembers(keys.EXPOSURE_DAYS)  # type: ignore[assignment]
    figures: list[DayFigures] = []
    final: list[str] = []
    for member in sorted(pending):
        campaign_id, _, day = member.rpartition("|")
        figures.extend(await read_day(redis, campaign_id, day))
        campaign = await campaigns.get(campaign_id)
        if campaign is None or day < campaign.day(now_ms).label:
            final.append(member)
    if figures:
        await pool.execute(
            UPSERT,
            [f.campaign_id for f in figures],
            [f.channel for f in figures],
            [f.day for f in figures],
            [f.views for f in figures],
            [f.unique_viewers for f in figures],
        )
    if final:
        await redis.srem(keys.EXPOSURE_DAYS, *final)
    return len(figures)
