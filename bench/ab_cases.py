"""The scenarios ``bench/ab.py`` compares: each yields a ``Pair`` (A: before, B: after).

Every variant decides real claims against the real ``claim.lua`` (a fresh requestId per
claim, a campaign with stock to spare unless the scenario is the sold-out herd), so the
figures include everything a worker pays per batch.
"""

from __future__ import annotations

import asyncio
import itertools
import secrets
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import msgspec
from redis.asyncio import Redis

from bench.ab import BATCH, Pair, Step
from bench.handoff_ab import sample_events
from gateway.campaigns.ops import write_campaign
from gateway.campaigns.spec import Campaign, Status, decode_spec
from gateway.claim.service import ClaimRequest, ClaimService, _Claim
from gateway.handoff.persist import insert_claims, insert_claims_staged, insert_claims_unnest
from gateway.infra.auth import Claimant
from gateway.infra.clients import redis_client
from gateway.infra.clock import SystemClock
from gateway.infra.settings import Settings
from gateway.stack.servers import drop_database, scratch_database

USERS = 2000


def settings_for(redis_url: str) -> Settings:
    return Settings.from_env(
        {},
        redis_url=redis_url,
        user_rate=0,
        device_rate=0,
        ip_rate=0,
        outbox_max_len=100_000_000,
    )


async def open_campaign(redis: Redis, stock: int) -> str:
    """Publish a campaign open now (no database: straight to Redis, as publish does)."""
    now = datetime.now(UTC)
    campaign_id = f"ab-{secrets.token_hex(3)}"
    spec = decode_spec(
        {
            "id": campaign_id,
            "name": "ab",
            "kind": "no_threshold",
            "faceValueCents": 500,
            "stock": stock,
            "perUserLimit": 1_000_000_000,
            "startsAt": (now - timedelta(minutes=1)).isoformat(),
            "endsAt": (now + timedelta(days=1)).isoformat(),
        }
    )
    campaign = msgspec.convert(msgspec.to_builtins(spec), Campaign)
    await write_campaign(redis, msgspec.structs.replace(campaign, status=Status.ACTIVE))
    return campaign_id


class Claims:
    """Endless fresh claims to one campaign, ``BATCH`` at a time, from USERS users."""

    def __init__(self, campaign_id: str) -> None:
        self.campaign_id = campaign_id
        self._run = secrets.token_hex(4)
        self._counter = itertools.count()
        self._claimants = [
            Claimant(f"ab-{n}", False, 0, "", expires_s=2**40, not_before_s=0) for n in range(USERS)
        ]

    def batch(self) -> list[_Claim]:
        claims = []
        for _ in range(BATCH):
            n = next(self._counter)
            request = ClaimRequest(
                self.campaign_id, f"{self._run}-{n}", f"dev-{n % USERS}", "seckill"
            )
            claims.append(_Claim(request, self._claimants[n % USERS]))
        return claims


Scenario = Callable[[str], AbstractAsyncContextManager[Pair]]


@asynccontextmanager
async def bind(redis_url: str) -> AsyncIterator[Pair]:
    """Direction 1: the SET NX GET binding pipeline before the script (A) or none (B)."""
    settings = settings_for(redis_url)
    redis = redis_client(settings)
    service = ClaimService(redis, SystemClock(), settings)
    claims = Claims(await open_campaign(redis, 10**9))
    ttl = settings.replay_ttl_s

    async def two_trips() -> int:
        batch = claims.batch()
        bound = await _bind(redis, batch, ttl)
        todo = [c for c, previous in zip(batch, bound, strict=True) if previous is None]
        return len(await service._decide(claims.campaign_id, todo))

    async def one_trip() -> int:
        return len(await service._decide(claims.campaign_id, claims.batch()))

    try:
        yield Pair("bind pipeline + script", two_trips, "script alone", one_trip)
    finally:
        await redis.aclose()


async def _bind(redis: Redis, claims: Sequence[_Claim], ttl: int) -> list[str | None]:
    """The binding pipeline as it was before direction 1 (Redis 7: SET NX GET)."""
    async with redis.pipeline(transaction=False) as pipe:
        for claim in claims:
            binding = (
                f"{claim.claimant.user_id}|{claim.request.campaign_id}|{claim.request.device_id}"
            )
            pipe.execute_command(
                "SET",
                f"fc:rid:{{{claim.request.request_id}}}",
                binding,
                "NX",
                "GET",
                "EX",
                ttl,
                get=True,
            )
        replies: list[str | None] = await pipe.execute()
    return replies


@asynccontextmanager
async def lean(redis_url: str) -> AsyncIterator[Pair]:
    """Direction 2: the batch through redis-py (A) or the claim path's own connection (B)."""
    redis = redis_client(settings_for(redis_url))
    via_redis_py = ClaimService(
        redis,
        SystemClock(),
        msgspec.structs.replace(settings_for(redis_url), claim_lean_redis=False),
    )
    via_wire = ClaimService(redis, SystemClock(), settings_for(redis_url))
    claims = Claims(await open_campaign(redis, 10**9))

    async def old() -> int:
        return len(await via_redis_py._decide(claims.campaign_id, claims.batch()))

    async def new() -> int:
        return len(await via_wire._decide(claims.campaign_id, claims.batch()))

    try:
        yield Pair("redis-py", old, "hiredis wire", new)
    finally:
        await via_wire.aclose()
        await redis.aclose()


@asynccontextmanager
async def herd(redis_url: str) -> AsyncIterator[Pair]:
    """Direction 4: a sold-out herd through ``ClaimService.claim``, each batch's replay
    records read (A) or losers answered from the winners in memory (B)."""
    redis = redis_client(settings_for(redis_url))
    base = msgspec.structs.replace(
        settings_for(redis_url), sold_out_cache_ms=10**9, campaign_cache_ms=10**9
    )
    reading = ClaimService(
        redis, SystemClock(), msgspec.structs.replace(base, sold_out_memory_max=0)
    )
    remembering = ClaimService(redis, SystemClock(), base)
    campaign_id = await open_campaign(redis, 100)
    claims = Claims(campaign_id)
    for service in (remembering, reading):  # sell out (keeping winners), learn it is so
        for _ in range(5):
            await _herd_step(service, claims)
        await asyncio.sleep(0.2)
    assert remembering.winners.of(campaign_id) is not None, remembering.winners._known

    try:
        yield Pair(
            "replay read per batch",
            lambda: _herd_step(reading, claims),
            "winners in memory",
            lambda: _herd_step(remembering, claims),
        )
    finally:
        await reading.aclose()
        await remembering.aclose()
        await redis.aclose()


async def _herd_step(service: ClaimService, claims: Claims) -> int:
    outcomes = await asyncio.gather(
        *(service.claim(c.claimant, c.request, "127.0.0.1") for c in claims.batch())
    )
    return len(outcomes)


POSTGRES_URL = "postgresql://127.0.0.1:5432/postgres"


@asynccontextmanager
async def _coupons_db() -> AsyncIterator[asyncpg.Connection]:
    url = await scratch_database(POSTGRES_URL, prefix="flashclaim_ab")
    conn = await asyncpg.connect(url)
    try:
        yield conn
    finally:
        await conn.close()
        await drop_database(POSTGRES_URL, url)


def _persist_step(conn: asyncpg.Connection, insert: Any, rows: int) -> Step:
    batches = itertools.count()

    async def step() -> int:
        claims = sample_events(rows, start=next(batches) * rows)
        async with conn.transaction():
            assert await insert(conn, claims) == rows
        return rows

    return step


@asynccontextmanager
async def persist(redis_url: str) -> AsyncIterator[Pair]:
    """Direction 7: the consumer's write, 1,000 claims a transaction (counted as claims):
    one INSERT of nine unnested arrays (A) or COPY into staging + INSERT ... SELECT (B)."""
    async with _coupons_db() as conn:
        yield Pair(
            "unnest INSERT",
            _persist_step(conn, insert_claims_unnest, 1000),
            "COPY + INSERT SELECT",
            _persist_step(conn, insert_claims, 1000),
        )


@asynccontextmanager
async def persist_batch(redis_url: str) -> AsyncIterator[Pair]:
    """Direction 7: COPY + INSERT SELECT with 1,000 (A) or 5,000 (B) claims a batch."""
    async with _coupons_db() as conn:
        yield Pair(
            "1,000 a batch",
            _persist_step(conn, insert_claims, 1000),
            "5,000 a batch",
            _persist_step(conn, insert_claims, 5000),
        )


@asynccontextmanager
async def persist_direct(redis_url: str) -> AsyncIterator[Pair]:
    """The consumer's write, 5,000 new claims a transaction: COPY into staging + INSERT
    SELECT (A) or COPY straight into coupons in a savepoint (B)."""
    async with _coupons_db() as conn:
        yield Pair(
            "staged",
            _persist_step(conn, insert_claims_staged, 5000),
            "direct COPY",
            _persist_step(conn, insert_claims, 5000),
        )


SCENARIOS: dict[str, Scenario] = {
    "bind": bind,
    "lean": lean,
    "herd": herd,
    "persist": persist,
    "persist-batch": persist_batch,
    "persist-direct": persist_direct,
}
