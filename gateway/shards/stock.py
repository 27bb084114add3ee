"""A hot campaign's stock over N shards: routing users, borrowing, finishing transfers.

One Redis master decides one campaign's claims one at a time; a campaign hotter than
that spreads its stock over ``stockShards`` shards, each with its own hash-slot tag
(``CampaignKeys.of_shard``), so a cluster puts them on different masters. A user always
claims on the same shard (a stable hash of the user id), so per-user limits and replays
stay exact on that one shard. A shard that runs dry borrows from the others
(``lua/transfer.lua``: lend on the donor with a durable log, credit on the recipient once
per transfer id, settle). A claim is answered SOLD_OUT only when two reads of every shard
in a row find no stock and no transfer in flight anywhere, and no shard credited in
between: then there was an instant, between the two reads, with no stock anywhere.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence
from typing import Any

from redis.asyncio import Redis

from gateway.keys import CAMPAIGN_INDEX, CAMPAIGN_SHARDS, CampaignKeys
from gateway.shards.transfer import ShardFigures, TransferScript


def shard_of(user_id: str, shards: int) -> int:
    """The stock shard a user claims on: stable across processes, restarts and hosts."""
    if shards <= 1:
        return 0
    digest = hashlib.blake2b(user_id.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % shards


def share_of(stock: int, shards: int, shard: int) -> int:
    """Shard ``shard``'s share of ``stock``: equal parts, the first shards one more."""
    return stock // shards + (1 if shard < stock % shards else 0)


def all_shards(keys: CampaignKeys, shards: int) -> list[CampaignKeys]:
    """The keys of every stock shard of a campaign (just its own for one shard)."""
    return [keys.of_shard(s) for s in range(max(shards, 1))]


async def shard_counts(redis: Redis, campaign_ids: Sequence[str]) -> list[int]:
    """How many stock shards each campaign has (1 for a campaign not sharded)."""
    if not campaign_ids:
        return []
    found: list[str | None] = await redis.hmget(CAMPAIGN_SHARDS, list(campaign_ids))  # type: ignore[assignment]
    return [int(n) if n else 1 for n in found]


class ShardedStock:
    """Borrowing between a campaign's shards and proving a campaign sold out."""

    def __init__(self, redis: Redis, major_version: int = 7) -> None:
        self._redis = redis
        self.script = TransferScript(redis, major_version)

    async def borrow(self, keys: CampaignKeys, shards: int, recipient: int, wanted: int) -> int:
        """Move up to ``wanted`` stock to shard ``recipient`` from the others, the next
        shards first (so recipients spread their asks); the amount moved."""
        got = 0
        for step in range(1, shards):
            donor = (recipient + step) % shards
            transfer_id = secrets.token_hex(8)
            lent = await self.script.lend(
                keys.of_shard(donor), transfer_id, recipient, wanted - got
            )
            if lent.amount:
                await self._finish(keys, donor, transfer_id, recipient, lent.amount)
                got += lent.amount
                if got >= wanted:
                    break
        return got

    async def finish_pending(self, keys: CampaignKeys, shards: int) -> int:
        """Credit and settle every transfer lent and not settled (after a crash between a
        lend and its credit); the number finished. Safe to run at any time, anywhere."""
        finished = 0
        for donor in range(shards):
            log: dict[str, str] = await self._redis.hgetall(keys.of_shard(donor).transfers)  # type: ignore[assignment]
            for transfer_id, entry in log.items():
                recipient, amount = entry.split("\t")
                await self._finish(keys, donor, transfer_id, int(recipient), int(amount))
                finished += 1
        return finished

    async def sold_out(self, keys: CampaignKeys, shards: int) -> bool:
        """True if there was an instant, during this call, with no stock on any shard and
        none in flight. Finishes transfers it finds in flight (and answers False)."""
        first = await self.figures(keys, shards)
        if any(f.pending for f in first):
            await self.finish_pending(keys, shards)
            return False
        if any(f.left for f in first):
            return False
        second = await self.figures(keys, shards)
        # Between the reads no shard was credited (received unchanged) or topped up (share
        # unchanged), so none gained stock: each shard's stock at the instant between the
        # reads was at most what the first read found, zero; nothing was lent meanwhile.
        return all(
            not b.left and not b.pending and (a.received, a.share) == (b.received, b.share)
            for a, b in zip(first, second, strict=True)
        )

    async def figures(self, keys: CampaignKeys, shards: int) -> list[ShardFigures]:
        """Every shard's figures, read one shard after another."""
        return [await self.script.peek(shard) for shard in all_shards(keys, shards)]

    async def _finish(
        self, keys: CampaignKeys, donor: int, transfer_id: str, recipient: int, amount: int
    ) -> None:
        await self.script.credit(keys.of_shard(recipient), transfer_id, amount)
        await self._redis.hdel(keys.of_shard(donor).transfers, transfer_id)


async def shard_totals(
    redis: Redis, keys: CampaignKeys, shards: int, today_key: str
) -> tuple[int, int, int, int, int]:
    """A sharded campaign's issued, spent, issued today, outbox length and stock left, each
    summed over its shards. Stock left leaves out a transfer in flight (lent, its credit not
    yet applied: milliseconds, or until ``finish_pending`` after a crash)."""
    issued = spent = today = outbox = left = 0
    day_suffix = today_key.removeprefix(keys.base)
    for shard in all_shards(keys, shards):
        async with redis.pipeline(transaction=True) as pipe:
            pipe.hmget(shard.counters, "issued", "spent", "moved")
            pipe.hget(shard.config, "stock")
            pipe.get(shard.base + day_suffix)
            pipe.xlen(shard.outbox)
            (i, s, m), share, d, o = await pipe.execute()
        issued, spent, outbox = issued + int(i or 0), spent + int(s or 0), outbox + o
        today += int(d or 0)
        left += max(int(share or 0) + int(m or 0) - int(i or 0), 0)
    return issued, spent, today, outbox, left


async def finish_transfers(redis: Redis) -> int:
    """The replayer: finish every transfer lent and not settled, of every sharded campaign
    (the relay runs it on each pass); the number finished."""
    sharded: dict[str, str] = await redis.hgetall(CAMPAIGN_SHARDS)  # type: ignore[assignment]
    if not sharded:
        return 0
    groups: list[str | None] = await redis.hmget(CAMPAIGN_INDEX, list(sharded))  # type: ignore[assignment]
    info: dict[str, Any] = await redis.info("server")  # 6.2 runs local stacks: no #!lua
    stock = ShardedStock(redis, int(str(info["redis_version"]).split(".")[0]))
    finished = 0
    for (campaign_id, n), group in zip(sharded.items(), groups, strict=True):
        finished += await stock.finish_pending(CampaignKeys(campaign_id, group or ""), int(n))
    return finished


async def stock_figures(redis: Redis, keys: CampaignKeys, shards: int) -> tuple[int, int]:
    """A sharded campaign's stock (the shares' sum) and stock left (over the shards; a
    transfer in flight is left out until its credit)."""
    stock = left = 0
    for shard in all_shards(keys, shards):
        async with redis.pipeline(transaction=False) as pipe:
            pipe.hget(shard.config, "stock")
            pipe.hmget(shard.counters, "issued", "moved")
            share, (issued, moved) = await pipe.execute()
        stock += int(share or 0)
        left += max(int(share or 0) + int(moved or 0) - int(issued or 0), 0)
    return stock, left
