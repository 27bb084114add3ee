"""A gateway refuses to serve claims from a Redis that would forget them, unless told it
may; and says which it is doing in /readyz, in a metric, and in every refusal."""

from __future__ import annotations

import msgspec
import pytest
import redis.asyncio

from gateway.campaigns.ops import CampaignOps
from gateway.campaigns.store import CampaignStore
from gateway.infra.clients import redis_client
from gateway.infra.http import PERSISTENCE
from gateway.infra.persistence import read_persistence
from gateway.stack.servers import RedisServer
from tests.helpers import T0_MS, claim, published


@pytest.fixture
def volatile_server(tmp_path):
    """A Redis with neither AOF nor snapshots, like the machine's default one."""
    server = RedisServer(tmp_path / "volatile").start()
    yield server
    server.kill()  # its data is of no interest, and a Redis writing its first AOF ignores SIGTERM


@pytest.fixture
async def volatile(volatile_server, settings):
    """Settings and a client for the volatile Redis."""
    volatile_settings = msgspec.structs.replace(
        settings, redis_url=volatile_server.url, redis_cluster=False
    )
    client = redis_client(volatile_settings)
    await client.flushall()
    yield volatile_settings, client
    await client.aclose()


async def metric(client, name: str) -> str:
    text = await (await client.get("/metrics")).text()
    return "\n".join(line for line in text.splitlines() if line.startswith(name))


async def test_claims_are_refused_from_a_redis_that_would_forget_them(make_client, volatile):
    settings, _ = volatile
    client = await make_client(redis_url=settings.redis_url, redis_cluster=False)
    status, answer = await claim(client, "u1", "any-campaign")
    assert (status, answer["reason"]) == (503, "UNAVAILABLE")
    assert "FLASHCLAIM_ALLOW_VOLATILE_REDIS" in answer["message"]
    assert "appendonly" in answer["message"]
    ready = await client.get("/readyz")
    readiness = await ready.json()
    assert ready.status == 503
    assert readiness["redis"]["persistence"]["mode"] == "none"
    assert (await client.get("/livez")).status == 200  # a restart would not help
    assert 'flashclaim_redis_persistence{mode="none"} 1.0' in await metric(
        client, "flashclaim_redis_persistence"
    )


async def test_allowed_it_serves_and_says_so(make_client, volatile, pool, clock):
    settings, volatile_redis = volatile
    client = await make_client(
        redis_url=settings.redis_url, redis_cluster=False, allow_volatile_redis=True
    )
    clock.set(T0_MS + 1000)
    campaign = await published(CampaignOps(CampaignStore(pool), volatile_redis, clock))
    status, answer = await claim(client, "u1", campaign.id)
    assert (status, answer["reason"]) == (200, "ACCEPTED")
    ready = await client.get("/readyz")
    readiness = await ready.json()
    assert ready.status == 200
    assert readiness["redis"]["volatileAllowed"] is True
    assert "would forget" in readiness["redis"]["warning"]
    assert "flashclaim_redis_volatile_allowed 1.0" in await metric(
        client, "flashclaim_redis_volatile_allowed"
    )


async def test_turning_the_aof_on_reopens_a_refusing_gateway(make_client, volatile):
    settings, volatile_redis = volatile
    client = await make_client(redis_url=settings.redis_url, redis_cluster=False)
    assert (await claim(client, "u1", "any"))[1]["reason"] == "UNAVAILABLE"
    await volatile_redis.config_set("appendonly", "yes")
    guard = client.app[PERSISTENCE]
    assert await guard.check()  # what the gateway's watch does every 10 s
    assert guard.refusal is None
    assert (await client.get("/readyz")).status == 200
    assert (await claim(client, "u1", "any"))[1]["reason"] == "UNKNOWN_CAMPAIGN"


async def test_snapshots_alone_are_enough_to_serve(volatile):
    _, volatile_redis = volatile
    await volatile_redis.config_set("save", "3600 1")
    persistence = await read_persistence(volatile_redis)
    assert (persistence.mode, persistence.keeps_claims) == ("snapshots", True)


@pytest.mark.parametrize(("aof", "mode"), [("yes", "aof"), ("no", "unknown")])
async def test_without_config_it_reads_info_and_says_what_is_unknown(volatile, aof, mode):
    """Managed Redis often forbids CONFIG: INFO tells the AOF, not the snapshots."""
    settings, volatile_redis = volatile
    await volatile_redis.config_set("appendonly", aof)
    await volatile_redis.execute_command(
        "ACL", "SETUSER", "app", "on", ">secret-password", "~*", "&*", "+@all", "-config"
    )
    url = settings.redis_url.replace("redis://", "redis://app:secret-password@")
    limited = redis.asyncio.Redis.from_url(url, decode_responses=True)
    try:
        persistence = await read_persistence(limited)
    finally:
        await limited.aclose()
    assert (persistence.mode, persistence.source) == (mode, "INFO persistence")
    assert persistence.keeps_claims is (mode == "aof")
    if mode == "unknown":
        assert "unknown" in persistence.describe()
