"""Events from Kafka: the events topic (``FLASHCLAIM_EVENTS_TOPIC``) through the trigger
rules, like ``POST /api/events``.

Offsets are committed after a batch's grants were decided, so a crash re-reads the batch;
each grant's requestId derives from event id and rule, so the re-read grants nothing twice.
A message that is not an event (bad JSON, a missing field) is logged and skipped: it can
never become one by being read again.
"""

from __future__ import annotations

import asyncio
import logging

import msgspec
from aiokafka import AIOKafkaConsumer

from gateway.channels.grants import Event, Triggers
from gateway.channels.triggers import TriggerRules
from gateway.claim.service import ClaimService
from gateway.infra import clients, probes
from gateway.infra.clock import SystemClock
from gateway.infra.settings import Settings
from gateway.infra.signals import stop_on_signals

log = logging.getLogger(__name__)
_decoder = msgspec.json.Decoder(Event)


async def consume(settings: Settings, stop: asyncio.Event) -> None:
    """Apply the events topic's events until ``stop`` is set."""
    consumer = AIOKafkaConsumer(
        settings.events_topic,
        bootstrap_servers=settings.kafka_bootstrap,
        group_id=settings.events_group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    claim_redis = clients.claim_redis_client(settings)
    redis = clients.redis_client(settings)
    pool = await clients.create_pool(settings.database_url, max_size=2)
    claims = ClaimService(claim_redis, SystemClock(), settings)
    await claims.detect_server()
    triggers = Triggers(
        claims, TriggerRules(pool, settings.trigger_cache_ms), redis, settings.skydrop_max_grants
    )
    await consumer.start()
    try:
        while not stop.is_set():
            batches = await consumer.getmany(timeout_ms=200, max_records=500)
            for records in batches.values():
                for record in records:
                    await _apply(triggers, record.value or b"")
            if batches:
                await consumer.commit()
    finally:
        await consumer.stop()
        await claims.aclose()
        await pool.close()
        await redis.aclose()
        await claim_redis.aclose()


async def _apply(triggers: Triggers, raw: bytes) -> None:
    try:
        event = _decoder.decode(raw)
    except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError) as exc:
        log.warning("skipped a message that is not an event: %s", exc)
        return
    granted = await triggers.on_event(event)
    log.debug("event %s granted %s", event.event_id, granted.grants)


async def run_until_signalled(settings: Settings) -> None:
    """``flashclaim events``: until SIGTERM or SIGINT."""
    stop = stop_on_signals()
    await consume(settings, stop)


def main(settings: Settings) -> int:
    """``flashclaim events``: serve /metrics and /livez (if a port is set), run until
    signalled."""
    import uvloop

    uvloop.run(probes.with_probes(settings.metrics_port, run_until_signalled(settings)))
    return 0
