"""Abuse trends: claims refused as abuse, per campaign x hour x reason, kept for the health
report (BLOCKED, DEVICE_LIMIT, RATE_LIMITED and redeem-code guessing).

A bot flood is exactly when these refusals are many, so counting one must cost the claim
path nothing it can feel: each worker adds to a dict in memory (``TALLY.note``), and a task
of the worker adds the dict to Redis every ``FLASHCLAIM_ABUSE_FLUSH_MS`` in one pipeline
(``HINCRBY`` per campaign and reason, hash per UTC hour). The reconciler's round copies
Redis's hours into PostgreSQL (``abuse_hourly``, overwritten, never added to). A worker
killed between flushes loses at most that window's tally: trends, not a ledger.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from datetime import UTC, datetime

import asyncpg
from redis.asyncio import Redis
from redis.exceptions import RedisError

from gateway import keys
from gateway.infra.clock import Clock
from gateway.reasons import Reason

log = logging.getLogger(__name__)

#: The refusals the health report calls abuse.
ABUSE = frozenset({Reason.BLOCKED, Reason.DEVICE_LIMIT, Reason.RATE_LIMITED,
                   Reason.CODE_INVALID, Reason.CODE_MISTYPED, Reason.CODE_LOCKED})  # fmt: skip
_TTL_S = 3 * 86_400  # an hour's hash outlives any rollup schedule


def hour_of(now_ms: int) -> str:
    """``YYYYMMDDHH`` of a UTC hour."""
    return datetime.fromtimestamp(now_ms / 1000, UTC).strftime("%Y%m%d%H")


class AbuseTally:
    """One process's abuse refusals since its last flush."""

    def __init__(self) -> None:
        self._counts: Counter[tuple[str, str]] = Counter()

    def note(self, campaign_id: str, reason: Reason) -> None:
        """Count a refusal if it is abuse (the claim path calls this for every answer)."""
        if reason in ABUSE:
            self._counts[campaign_id, reason.value] += 1

    async def flush(self, redis: Redis, now_ms: int) -> None:
        """Add the tally to Redis's hash of the current hour; kept for the next flush if
        Redis fails."""
        if not self._counts:
            return
        counts, self._counts = self._counts, Counter()
        hour = hour_of(now_ms)
        key = keys.abuse_hour(hour)
        try:
            # The hour is listed first, its counts added after: on a Redis Cluster the two
            # keys lie on different slots, so they cannot share a transaction (a listed hour
            # whose counts failed is read as fewer refusals; the tally retries them).
            await redis.sadd(keys.ABUSE_HOURS, hour)
            async with redis.pipeline(transaction=True) as pipe:
                for (campaign_id, reason), n in counts.items():
                    pipe.hincrby(key, f"{campaign_id}|{reason}", n)
                pipe.expire(key, _TTL_S)
                await pipe.execute()
        except (RedisError, OSError, TimeoutError):
            self._counts.update(counts)
            raise


#: The process's tally (one per worker process, as the Prometheus counters are).
TALLY = AbuseTally()


async def keep_flushing(redis: Redis, clock: Clock, every_s: float, stop: asyncio.Event) -> None:
    """Flush ``TALLY`` every ``every_s`` until ``stop``, and once more at the end."""
    while True:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), every_s)
        try:
            await TALLY.flush(redis, clock.now_ms())
        except (RedisError, OSError, TimeoutError) as exc:
            log.warning("abuse tally not flushed (%s); kept for the next flush", exc)
        if stop.is_set():
            return


_UPSERT = """
INSERT INTO abuse_hourly (campaign_id, hour, reason, refusals)
SELECT * FROM unnest($1::text[], $2::timestamptz[], $3::text[], $4::bigint[])
ON CONFLICT (campaign_id, hour, reason) DO UPDATE SET refusals = EXCLUDED.refusals
"""


async def rollup(redis: Redis, pool: asyncpg.Pool, now_ms: int) -> int:
    """Copy every pending hour into ``abuse_hourly``; hours before the current one are
    final and leave the pending set. Return the rows written."""
    pending: set[str] = await redis.smembers(keys.ABUSE_HOURS)  # type: ignore[assignment]
    current = hour_of(now_ms)
    rows: list[tuple[str, datetime, str, int]] = []
    for hour in sorted(pending):
        start = datetime.strptime(hour, "%Y%m%d%H").replace(tzinfo=UTC)
        counts: dict[str, str] = await redis.hgetall(keys.abuse_hour(hour))  # type: ignore[assignment]
        for field, n in counts.items():
            campaign_id, _, reason = field.rpartition("|")
            rows.append((campaign_id, start, reason, int(n)))
    if rows:
        await pool.execute(_UPSERT, *(list(column) for column in zip(*rows, strict=True)))
    final = [hour for hour in pending if hour < current]
    if final:
        await redis.srem(keys.ABUSE_HOURS, *final)
    return len(rows)
