"""The one way flashclaim talks to each service: Redis, PostgreSQL, Kafka.

Every process (gateway worker, relay, consumer, operator commands, tests, benches) opens
its clients here, so timeouts, pool sizes and durability settings are decided once.
``open_clients`` gives a command-line tool Redis and PostgreSQL for the length of a block.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, cast

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError
from redis.asyncio import BlockingConnectionPool, ConnectionPool, Redis, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisClusterException
from redis.exceptions import TimeoutError as RedisTimeoutError

from gateway.infra.settings import Settings

log = logging.getLogger(__name__)


# Redis ---------------------------------------------------------------------------------


def redis_client(settings: Settings) -> Redis:
    """A Redis client for operations: every command has its own timeout, and the pool
    waits briefly for a free connection, then gives up."""
    timeout = settings.redis_timeout_ms / 1000
    if settings.redis_cluster:
        return cluster_client(settings, socket_timeout=timeout)
    pool = BlockingConnectionPool.from_url(
        settings.redis_url,
        max_connections=settings.redis_pool_size,
        timeout=timeout,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        decode_responses=True,
        **_reconnect(),
    )
    return Redis.from_pool(pool)


def claim_redis_client(settings: Settings) -> Redis:
    """A Redis client for the claim path: no per-command timers (the claim service bounds
    each batch with one), and a pool that fails at once rather than queueing; batching
    keeps at most two calls in flight per campaign."""
    if settings.redis_cluster:
        return cluster_client(settings, socket_timeout=None)
    pool = ConnectionPool.from_url(
        settings.redis_url,
        max_connections=settings.redis_pool_size,
        socket_timeout=None,  # redis-py 8 defaults to 5 s: a timer around every reply
        socket_connect_timeout=settings.redis_timeout_ms / 1000,
        decode_responses=True,
        **_reconnect(),
    )
    return Redis.from_pool(pool)


def cluster_client(settings: Settings, *, socket_timeout: float | None) -> Redis:
    """redis-py's cluster client, seeded by the node ``redis_url`` names: it reads the
    slot map, sends each command to the master of its key's slot, follows MOVED and ASK,
    and after a failover (a connection lost, a timeout) reads the slot map again.

    Typed as ``Redis``: ``RedisCluster`` offers the same command methods, scripts,
    pipelines (a transaction's keys must share a slot: every campaign's keys share a hash
    tag), pub/sub and ``scan_iter`` (which walks every master); code that needs the
    difference asks ``is_cluster``.
    """
    cluster = _Cluster.from_url(
        settings.redis_url,
        max_connections=settings.redis_pool_size,
        socket_timeout=socket_timeout,
        socket_connect_timeout=settings.redis_timeout_ms / 1000,
        decode_responses=True,
        retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), retries=6),
    )
    return cast(Redis, cluster)


class _Cluster(RedisCluster):
    """redis-py's cluster client whose "no node reachable" is a ``ConnectionError``, as a
    lone Redis's is: every caller already handles ``RedisError`` (redis-py raises
    ``RedisClusterException``, no ``RedisError``, when it cannot read the slot map)."""

    async def initialize(self, *args: Any, **kwargs: Any) -> RedisCluster:
        try:
            return await super().initialize(*args, **kwargs)
        except RedisClusterException as exc:
            raise RedisConnectionError(str(exc)) from exc


def is_cluster(redis: Redis) -> bool:
    """Whether ``redis`` is a cluster client (``cluster_client``)."""
    return isinstance(redis, RedisCluster)


def _reconnect() -> dict[str, Any]:
    """Retry a command on a broken connection (after a Redis restart or failover) a few
    times, reconnecting in between. Safe for claims too: a re-sent batch is idempotent
    (the replay records answer what was already decided)."""
    return {
        "retry": Retry(ExponentialBackoff(cap=0.5, base=0.05), retries=3),
        "retry_on_error": [RedisConnectionError, RedisTimeoutError],
    }


# PostgreSQL ----------------------------------------------------------------------------


async def create_pool(database_url: str, *, max_size: int = 8) -> asyncpg.Pool:
    """A lazy pool: opening it needs no database, so a gateway serves claims without one."""
    return await asyncpg.create_pool(database_url, min_size=0, max_size=max_size)


# Kafka ---------------------------------------------------------------------------------


def kafka_producer(settings: Settings) -> AIOKafkaProducer:
    """A durable producer: acks from all replicas, small linger, big batches.

    Idempotence is a setting (on for real Kafka, off for the local test broker, which
    does not offer it). aiokafka has no ``max.block.ms``: callers bound each wait.
    """
    return AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap,
        acks="all",
        enable_idempotence=settings.kafka_idempotence,
        compression_type=settings.kafka_compression or None,
        linger_ms=settings.kafka_linger_ms,
        max_batch_size=256 * 1024,
        request_timeout_ms=settings.kafka_timeout_ms,
    )


def claims_consumer(settings: Settings, *, subscribe: bool = True) -> AIOKafkaConsumer:
    """A member of the persisting consumer group that never commits by itself
    (``subscribe=False``: the group's view only, for lag figures)."""
    topics = (settings.claims_topic,) if subscribe else ()
    return AIOKafkaConsumer(
        *topics,
        bootstrap_servers=settings.kafka_bootstrap,
        group_id=settings.consumer_group,
        group_instance_id=(settings.consumer_instance_id or None) if subscribe else None,
        session_timeout_ms=settings.consumer_session_timeout_ms,
        heartbeat_interval_ms=max(settings.consumer_session_timeout_ms // 3, 100),
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=settings.consumer_batch,
    )


async def ensure_topics(settings: Settings, partitions: int | None = None) -> None:
    """Create the claims topic (``claims_partitions`` partitions unless told) and its
    dead-letter topic if the broker lacks them; an existing topic is left as it is."""
    partitions = partitions or settings.claims_partitions
    admin = AIOKafkaAdminClient(
        bootstrap_servers=settings.kafka_bootstrap, request_timeout_ms=settings.kafka_timeout_ms
    )
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = [
            NewTopic(name, num_partitions=partitions, replication_factor=1)
            for name in (settings.claims_topic, settings.dlq_topic)
            if name not in existing
        ]
        if wanted:
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(wanted)
            log.info("created topics %s", [t.name for t in wanted])
    finally:
        await admin.close()


async def wait_for_group(
    settings: Settings, timeout_s: float = 30.0, stopped: Callable[[], bool] = lambda: False
) -> bool:
    """Wait until the consumer group is Stable (members joined, partitions assigned).

    A new group takes the broker's initial rebalance delay (seconds) to form; ``up`` waits
    for it so that the first claim a developer sends is persisted at once.
    """
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        deadline = asyncio.get_running_loop().time() + timeout_s
        while asyncio.get_running_loop().time() < deadline and not stopped():
            (reply,) = await admin.describe_consumer_groups([settings.consumer_group])
            if reply.groups and reply.groups[0][2] == "Stable":
                return True
            await asyncio.sleep(0.2)
        return False
    finally:
        await admin.close()


# For tools -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Clients:
    """Redis and PostgreSQL, open for an operator command."""

    redis: Redis
    pool: asyncpg.Pool


@contextlib.asynccontextmanager
async def open_clients(settings: Settings, *, pool_size: int = 2) -> AsyncIterator[Clients]:
    """Redis and a small PostgreSQL pool for the length of the block."""
    pool = await create_pool(settings.database_url, max_size=pool_size)
    redis = redis_client(settings)
    try:
        yield Clients(redis, pool)
    finally:
        await pool.close()
        await redis.aclose()
