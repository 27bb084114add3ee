"""The sold-out herd from memory: which requestIds won a campaign's coupons.

Once a campaign is exhausted, almost every claim to it is a loser, yet each one used to
cost a read of its replay record, just in case it was a winner's retry. ``claim.lua``
appends every accepted requestId to the campaign's winners list while the stock is at
most ``sold_out_memory_max``; the list is complete while its length equals ``issued``.
When a batch finds the campaign exhausted, the worker loads that list once into a set
(in the background; claims meanwhile take the replay read), and from then on only a
requestId in the set (a winner's real retry) touches Redis.

The set is exact for the ``issued`` it was read at. New winners need more stock, so the
set is dropped when a batch reports another ``issued`` and when the campaign changes (a
top-up or any other operator change announces itself; ``invalidate``), the same events
that end the worker's "exhausted" memory.

A campaign over stock shards (gateway/shards/) has a list per shard, of the claims of the
users routed there; a retry goes to its user's shard, so that shard's set answers it.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from redis.asyncio import Redis
from redis.exceptions import RedisError

from gateway.keys import CampaignKeys

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class _Known:
    issued: int
    rids: frozenset[str] | None  # None: the list is incomplete (or too long): no shortcut


class Winners:
    """Per campaign, the accepted requestIds as of one ``issued`` figure (one worker)."""

    def __init__(self, redis: Redis, max_size: int, timeout_s: float) -> None:
        self._redis = redis
        self._max_size = max_size
        self._timeout_s = timeout_s
        self._known: dict[tuple[str, int], _Known] = {}  # by (campaign, stock shard)
        self._loading: dict[tuple[str, int], asyncio.Task[None]] = {}

    def of(self, campaign_id: str, shard: int = 0) -> frozenset[str] | None:
        """The campaign's (shard's) winners if known to be complete, else None (ask Redis)."""
        known = self._known.get((campaign_id, shard))
        return None if known is None else known.rids

    def observe(self, keys: CampaignKeys, issued: int, exhausted: bool) -> None:
        """After a script call: drop a set another ``issued`` made stale; load one when
        the campaign is exhausted and none is known."""
        cid = (keys.campaign_id, keys.shard)
        known = self._known.get(cid)
        if known is not None and known.issued != issued:
            del self._known[cid]
            known = None
        if exhausted and known is None and cid not in self._loading and self._max_size > 0:
            self._loading[cid] = asyncio.get_running_loop().create_task(self._load(keys))

    def invalidate(self, campaign_id: str | None = None) -> None:
        """Forget one campaign's winners (or all): it changed."""
        for cid in [k for k in self._known if campaign_id in (None, k[0])]:
            del self._known[cid]
        for cid in [k for k in self._loading if campaign_id in (None, k[0])]:
            task = self._loading.pop(cid, None)
            if task is not None:
                task.cancel()

    async def _load(self, keys: CampaignKeys) -> None:
        cid = (keys.campaign_id, keys.shard)
        try:
            async with asyncio.timeout(self._timeout_s * 5):
                async with self._redis.pipeline(transaction=True) as pipe:
                    pipe.hget(keys.counters, "issued")
                    pipe.llen(keys.winners)
                    issued_text, length = await pipe.execute()
                issued = int(issued_text or 0)
                rids = None
                if length == issued <= self._max_size:  # the list only grows: its head is it
                    listed: list[str] = await self._redis.lrange(  # type: ignore[assignment]
                        keys.winners, 0, issued - 1
                    )  # decoded: the claim path's clients decode replies
                    rids = frozenset(listed)
            self._known[cid] = _Known(issued, rids)
        except (RedisError, OSError) as exc:  # the replay read answers meanwhile
            log.warning("loading the winners of %s failed: %r", cid, exc)
        finally:
            if self._loading.get(cid) is asyncio.current_task():
                del self._loading[cid]
