"""Fixtures: a private Redis, a scratch PostgreSQL database, a gateway on a manual clock."""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import msgspec
import pytest
from aiohttp.test_utils import TestClient, TestServer
from redis.asyncio import Redis
from redis.cluster import RedisCluster

from gateway.app import create_app
from gateway.campaigns.ops import CampaignOps
from gateway.campaigns.store import CampaignStore
from gateway.infra.clients import redis_client
from gateway.infra.clock import ManualClock
from gateway.infra.settings import Settings
from gateway.stack.servers import (
    KafkaBroker,
    RedisClusterServers,
    RedisServer,
    drop_database,
    scratch_database,
)
from tests.helpers import ADMIN_TOKEN, JWT_SECRET, ON_CLUSTER, T0_MS
from tests.local_stack import LocalStack

#: The PostgreSQL server tests make their scratch databases on.
POSTGRES_URL = os.environ.get(
    "FLASHCLAIM_TEST_POSTGRES_URL", "postgresql://127.0.0.1:5432/postgres"
)


def pytest_configure(config: pytest.Config) -> None:
    """Keep this checkout's temporary files under its own ``var/pytest``.

    Every pytest run on a machine shares ``/tmp/pytest-of-<user>``: each run chmods it back
    to 0700 and deletes all but the newest three sessions' folders, so two checkouts testing
    at once pull folders from under each other, and the embedded PostgreSQL (which runs as
    another user when we are root) loses access to its data directory mid-start.
    """
    if config.option.basetemp is None:
        (config.rootpath / "var").mkdir(exist_ok=True)
        config.option.basetemp = str(config.rootpath / "var" / "pytest")


@pytest.fixture(scope="session")
def redis_server(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[RedisServer | RedisClusterServers]:
    """The session's Redis, with an AOF as production's: a gateway refuses to serve claims
    from a Redis that would forget them (tests of that start a volatile one of their own).
    With ``TEST_REDIS_CLUSTER=1``, the session's Redis Cluster."""
    if ON_CLUSTER:
        yield request.getfixturevalue("redis_cluster")
        return
    server = RedisServer(tmp_path_factory.mktemp("redis"), aof=True, fsync="everysec").start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisClusterServers]:
    """A local Redis Cluster, started on first use: 3 masters, 3 replicas, AOF on each."""
    servers = RedisClusterServers(tmp_path_factory.mktemp("cluster")).start()
    yield servers
    servers.stop()


@pytest.fixture(scope="session")
async def database_url() -> AsyncIterator[str]:
    url = await scratch_database(POSTGRES_URL)
    yield url
    await drop_database(POSTGRES_URL, url)


@pytest.fixture(scope="session")
def broker() -> Iterator[KafkaBroker]:
    """A Kafka-protocol broker (tansu, in memory), started on first use."""
    broker = KafkaBroker().start()
    yield broker
    broker.stop()


@pytest.fixture
def kafka_overrides(broker: KafkaBroker, request: pytest.FixtureRequest) -> dict[str, Any]:
    """Settings of a test's own topics and consumer group on the session's broker."""
    name = request.node.name[:40].replace("[", "-").replace("]", "")
    return {
        "kafka_bootstrap": broker.bootstrap,
        "relay_reclaim_ms": 500,
        "claims_topic": f"claims-{name}",
        "dlq_topic": f"dlq-{name}",
        "consumer_group": f"persist-{name}",
    }


@pytest.fixture
def kafka_settings(settings: Settings, kafka_overrides: dict[str, Any]) -> Settings:
    return msgspec.structs.replace(settings, **kafka_overrides)


@pytest.fixture
def clock() -> ManualClock:
    """Ten minutes before T0 (Double-11 midnight in Asia/Shanghai)."""
    return ManualClock(T0_MS - 10 * 60_000)


@pytest.fixture
def settings(redis_server: RedisServer | RedisClusterServers, database_url: str) -> Settings:
    return Settings.from_env(
        {},
        redis_url=redis_server.url,
        redis_cluster=isinstance(redis_server, RedisClusterServers),
        # six more redis-servers on two shared cores: connects alone can take a second
        redis_timeout_ms=3000 if isinstance(redis_server, RedisClusterServers) else 1000,
        database_url=database_url,
        jwt_secret=JWT_SECRET,
        admin_token=ADMIN_TOKEN,
        user_rate=0,
        device_rate=0,
        ip_rate=0,
        campaign_cache_ms=0,
        sold_out_cache_ms=0,
        relay_in_gateway=False,
        sweep_every_s=0,  # tests of the redemption sweeper start it themselves
    )


@pytest.fixture
async def redis(settings: Settings) -> AsyncIterator[Redis]:
    client = redis_client(settings)
    await client.flushall()
    yield client
    await client.aclose()


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=4)
    await pool.execute("TRUNCATE campaigns, coupons CASCADE")
    yield pool
    await pool.close()


@pytest.fixture
def ops(pool: asyncpg.Pool, redis: Redis, clock: ManualClock) -> CampaignOps:
    return CampaignOps(CampaignStore(pool), redis, clock)


ClientFactory = Callable[..., Awaitable[TestClient[Any, Any]]]


@pytest.fixture
async def make_client(
    settings: Settings, clock: ManualClock, redis: Redis, pool: asyncpg.Pool
) -> AsyncIterator[ClientFactory]:
    """Start gateways with settings overridden as asked; all are closed after the test."""
    async with contextlib.AsyncExitStack() as stack:

        async def make(**overrides: Any) -> TestClient[Any, Any]:
            app = create_app(msgspec.structs.replace(settings, **overrides), clock)
            return await stack.enter_async_context(TestClient(TestServer(app)))

        yield make


@pytest.fixture
async def client(make_client: ClientFactory) -> TestClient[Any, Any]:
    return await make_client()


@pytest.fixture
def lua_dir() -> Path:
    return Path(__file__).resolve().parent.parent / "lua"


@pytest.fixture(scope="session")
def _local_stacks(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[list[LocalStack]]:
    """The session's ``flashclaim up`` runs, all on one data dir; the last one is current
    (on the session's Redis Cluster with ``TEST_REDIS_CLUSTER=1``)."""
    cluster = request.getfixturevalue("redis_cluster").url if ON_CLUSTER else ""
    if cluster:  # start empty, as on a Redis of its own: verify's drain counts every
        # campaign in Redis against the stack's own database, where other tests' have no rows
        with RedisCluster.from_url(cluster) as client:
            client.flushall(target_nodes=RedisCluster.PRIMARIES)
    stacks: list[LocalStack] = []
    stacks.append(LocalStack(tmp_path_factory.mktemp("up"), cluster).start())
    yield stacks
    stacks[-1].stop()


@pytest.fixture
def local_stack(_local_stacks: list[LocalStack]) -> LocalStack:
    """A running ``flashclaim up`` with everything of its own. A test that stopped it (the
    Ctrl-C test) leaves the next test a new run on the same data: no test depends on
    another file having run first."""
    current = _local_stacks[-1]
    if current.process is None or current.process.poll() is not None:
        _local_stacks.append(LocalStack(current.data_dir, current.cluster_url).start())
    return _local_stacks[-1]
