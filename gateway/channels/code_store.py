"""Generating a batch of redeem codes: keyed hashes into PostgreSQL and Redis, the codes
themselves only to the operator's CSV.

PostgreSQL gets one row per batch holding every hash (``migrations/0020``). Redis gets
two fields per code, in pipelined chunks: the campaign's own ``codes`` hash (its state,
which ``claim.lua`` checks and writes atomically with the claim) and the global index
that tells the redeem endpoint which campaign a code belongs to.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterable, Iterator

import asyncpg
from redis.asyncio import Redis

from gateway.campaigns.ops import CampaignStateError, keys_of
from gateway.campaigns.spec import Status
from gateway.campaigns.store import CampaignStore
from gateway.channels.codes import CodeHasher, generate, pretty
from gateway.keys import CODE_INDEX

MAX_PER_BATCH = 1_000_000
_CHUNK = 20_000


class CodeBatches:
    """Makes batches of codes for campaigns."""

    def __init__(self, pool: asyncpg.Pool, redis: Redis, hasher: CodeHasher) -> None:
        self._pool = pool
        self._redis = redis
        self._hash = hasher

    async def create(self, campaign_id: str, count: int) -> tuple[str, list[str]]:
        """A new batch of ``count`` codes for a campaign: its id and the plain codes (the
        only time they exist outside the users' hands). Raises ``CampaignNotFound``,
        ``CampaignStateError`` for a draft, ``ValueError`` for a count out of range."""
        if not 1 <= count <= MAX_PER_BATCH:
            raise ValueError(f"count must be 1..{MAX_PER_BATCH}")
        campaign = await CampaignStore(self._pool).get(campaign_id)
        if campaign.status is Status.DRAFT:  # its keys may still move (exclusion group)
            raise CampaignStateError("publish the campaign before generating its codes")
        if campaign.stock_shards > 1:  # one set of codes, used in one shard's step
            raise CampaignStateError("a campaign over stock shards cannot have redeem codes")
        codes = list(generate(count))
        hashes = [self._hash(code) for code in codes]
        batch_id = f"{campaign.id}-{secrets.token_hex(4)}"
        # PostgreSQL and Redis are other processes: write both at once.
        await asyncio.gather(
            self._record(campaign.id, batch_id, hashes),
            self._publish(keys_of(campaign).codes, campaign.id, hashes),
        )
        return batch_id, codes

    async def _record(self, campaign_id: str, batch_id: str, hashes: list[str]) -> None:
        await self._pool.execute(
            "INSERT INTO code_batches (batch_id, campaign_id, count, hashes)"
            " VALUES ($1, $2, $3, $4)",
            batch_id,
            campaign_id,
            len(hashes),
            bytes.fromhex("".join(hashes)),
        )

    async def _publish(self, codes_key: str, campaign_id: str, hashes: list[str]) -> None:
        for start in range(0, len(hashes), _CHUNK):
            chunk = hashes[start : start + _CHUNK]
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.hset(codes_key, mapping=dict.fromkeys(chunk, ""))
                pipe.hset(CODE_INDEX, mapping=dict.fromkeys(chunk, campaign_id))
                await pipe.execute()


def csv_lines(campaign_id: str, batch_id: str, codes: Iterable[str]) -> Iterator[bytes]:
    """The operator's CSV (opens in Excel): a header, then one code per line."""
    yield b"code,campaign_id,batch_id\r\n"
    suffix = f",{campaign_id},{batch_id}\r\n"
    lines: list[str] = []
    for code in codes:
        lines.append(pretty(code) + suffix)
        if len(lines) == 10_000:
            yield "".join(lines).encode()
            lines = []
    if lines:
        yield "".join(lines).encode()
