"""Wait until every accepted claim has reached PostgreSQL: outboxes empty, no consumer lag.

``flashclaim up`` drains on its way down (relaying itself, the gateway's relays being
gone); ``flashclaim verify`` waits for the running relays and consumer before it checks.
"""

from __future__ import annotations

import asyncio
import time

from gateway import kafka
from gateway.app import redis_client
from gateway.reconcile import kafka_lag
from gateway.relay import Relay, outbox_backlog
from gateway.settings import Settings

DRAIN_TIMEOUT_S = 30.0


async def drain(settings: Settings, *, relay: bool, timeout_s: float = DRAIN_TIMEOUT_S) -> int:
    """Wait (relaying too, if asked) until the pipeline is empty or ``timeout_s`` passed.

    Returns the entries still in the outboxes (0 when drained). Whatever is left stays in
    Redis and leaves with the next relay, so nothing accepted is lost either way.
    """
    deadline = time.monotonic() + timeout_s
    redis = redis_client(settings)
    producer = kafka.producer(settings)
    try:
        mover = None
        if relay:
            await producer.start()
            mover = Relay(redis, producer, settings)
        while (left := await outbox_backlog(redis)) and time.monotonic() < deadline:
            if mover is None or not await mover.relay_once():
                await asyncio.sleep(0.1)  # pending entries are reclaimed once idle
        while left == 0 and time.monotonic() < deadline:
            if not await kafka_lag(settings):
                break
            await asyncio.sleep(0.1)
        return left
    finally:
        await producer.stop()
        await redis.aclose()
