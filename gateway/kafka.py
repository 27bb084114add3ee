"""Kafka clients as flashclaim uses them: durable producers, the topics it needs.

Producers wait for every in-sync replica (``acks=all``); idempotence is a setting (on for
real Kafka, off for the local test broker, which does not offer it). There is no
``max.block.ms`` in aiokafka, so callers bound each wait with their own timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from gateway.settings import Settings

log = logging.getLogger(__name__)


def producer(settings: Settings) -> AIOKafkaProducer:
    """A producer tuned for the relay: acks from all replicas, small linger, big batches."""
    return AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap,
        acks="all",
        enable_idempotence=settings.kafka_idempotence,
        compression_type=settings.kafka_compression or None,
        linger_ms=settings.kafka_linger_ms,
        max_batch_size=256 * 1024,
        request_timeout_ms=settings.kafka_timeout_ms,
    )


async def ensure_topics(settings: Settings, partitions: int = 3) -> None:
    """Create the claims topic and its dead-letter topic if the broker lacks them."""
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


async def wait_for_group(settings: Settings, timeout_s: float = 30.0) -> bool:
    """Wait until the consumer group is Stable (members joined, partitions assigned).

    A new group takes the broker's initial rebalance delay (seconds) to form; ``up`` waits
    for it so that the first claim a developer sends is persisted at once.
    """
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        deadline = asyncio.get_running_loop().time() + timeout_s
        while asyncio.get_running_loop().time() < deadline:
            (reply,) = await admin.describe_consumer_groups([settings.consumer_group])
            if reply.groups and reply.groups[0][2] == "Stable":
                return True
            await asyncio.sleep(0.2)
        return False
    finally:
        await admin.close()
