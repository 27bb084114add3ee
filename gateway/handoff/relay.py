"""The relay: accepted claims from the campaigns' Redis outboxes to Kafka, none lost.

Each outbox stream is read through the consumer group ``relay``; entries are produced to
``coupon.claims`` (key = user id) and only after Kafka acknowledged *every* entry of a
batch are they XACKed and XDELed. An entry whose produce failed, or whose relay died
between produce and ack, stays pending and is reclaimed (XAUTOCLAIM) once idle for
``relay_reclaim_ms``, by this relay or another: several relays may run at once. Kafka may
thus see an entry twice; the consumer's primary key absorbs that. Outboxes are never
trimmed by length.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from redis.asyncio import Redis
from redis.exceptions import RedisError, ResponseError

from gateway.claim import events
from gateway.infra import clients, metrics, probes
from gateway.infra.settings import Settings
from gateway.infra.signals import stop_on_signals
from gateway.keys import CAMPAIGN_INDEX, CampaignKeys
from gateway.shards.stock import all_shards, finish_transfers, shard_counts

log = logging.getLogger(__name__)

GROUP = "relay"
MAX_IDLE_S = 0.25
Entry = tuple[str, dict[str, str]]


async def published(redis: Redis) -> list[CampaignKeys]:
    """The keys of every campaign ever published (the relay's scan list): one per stock
    shard, each with its own outbox, for a hot campaign over several (gateway/shards/)."""
    campaigns: dict[str, str] = await redis.hgetall(CAMPAIGN_INDEX)  # type: ignore[assignment]
    counts = await shard_counts(redis, list(campaigns))
    return [
        shard
        for (campaign_id, group), n in zip(campaigns.items(), counts, strict=True)
        for shard in all_shards(CampaignKeys(campaign_id, group), n)
    ]


async def outbox_backlog(redis: Redis) -> int:
    """Entries waiting in all outboxes, relayed or not yet acknowledged."""
    return sum([await redis.xlen(keys.outbox) for keys in await published(redis)])


def consumer_name() -> str:
    """This relay's name in the consumer groups: host and process id."""
    return f"{socket.gethostname()}-{os.getpid()}"


class Relay:
    """Moves outbox entries to Kafka; ``run`` until stopped, or ``relay_once`` in tests."""

    def __init__(
        self, redis: Redis, producer: AIOKafkaProducer, settings: Settings, name: str = ""
    ) -> None:
        self._redis = redis
        self._producer = producer
        self._settings = settings
        self.name = name or consumer_name()
        self._groups: set[str] = set()

    async def run(self, stop: asyncio.Event) -> None:
        """Relay until ``stop`` is set; on failures wait a moment and go on.

        After a pass that moved nothing the relay waits ``relay_idle_ms``, doubling the
        wait while the outboxes stay empty (up to ``MAX_IDLE_S``), so quiet campaigns
        cost Redis little and a new claim still leaves within a quarter second.
        """
        first_wait = self._settings.relay_idle_ms / 1000
        wait = first_wait
        while not stop.is_set():
            try:
                moved = await self.relay_once()
            except (RedisError, KafkaError, OSError) as exc:
                log.warning("relay pass failed (%s); retrying", exc)
                moved, wait = 0, max(wait, 0.5)
            if moved:
                wait = first_wait
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), wait)
            wait = min(wait * 2, MAX_IDLE_S)

    async def relay_once(self) -> int:
        """One pass over every published campaign's outbox; the number of entries moved."""
        moved = 0
        for keys in await published(self._redis):
            moved += await self._relay_outbox(keys)
        await finish_transfers(self._redis)  # stock shards' transfers a crash left half-done
        return moved

    async def _relay_outbox(self, keys: CampaignKeys) -> int:
        await self._ensure_group(keys.outbox)
        entries = await self._reclaim(keys.outbox) + await self._read_new(keys.outbox)
        if entries:
            await self._produce(entries)
            async with self._redis.pipeline(transaction=False) as pipe:
                ids = [entry_id for entry_id, _ in entries]
                pipe.xack(keys.outbox, GROUP, *ids)
                pipe.xdel(keys.outbox, *ids)
                await pipe.execute()
            metrics.RELAYED.labels(keys.campaign_id).inc(len(entries))
        await self._observe(keys)
        return len(entries)

    async def _ensure_group(self, outbox: str) -> None:
        if outbox in self._groups:
            return
        try:
            await self._redis.xgroup_create(outbox, GROUP, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._groups.add(outbox)

    async def _reclaim(self, outbox: str) -> list[Entry]:
        """Entries another relay (or an earlier pass of this one) left pending too long."""
        reply = await self._redis.xautoclaim(
            outbox,
            GROUP,
            self.name,
            min_idle_time=self._settings.relay_reclaim_ms,
            start_id="0-0",
            count=self._settings.relay_batch,
        )
        entries: list[Entry] = reply[1]  # Redis 7 adds a third element, 6.2 has two
        return [(entry_id, fields) for entry_id, fields in entries if fields]

    async def _read_new(self, outbox: str) -> list[Entry]:
        reply: list[tuple[str, list[Entry]]] = await self._redis.xreadgroup(  # type: ignore[assignment]
            GROUP, self.name, {outbox: ">"}, count=self._settings.relay_batch
        )
        return [entry for _, stream_entries in reply for entry in stream_entries]

    async def _produce(self, entries: list[Entry]) -> None:
        """Send every entry and wait until Kafka acknowledged all of them."""
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self._settings.kafka_timeout_ms / 1000):
                pending = []
                for _, fields in entries:
                    event = events.ClaimEvent.from_outbox(fields)
                    pending.append(
                        await self._producer.send(
                            self._settings.claims_topic,
                            events.encode(event),
                            key=event.user_id.encode(),
                        )
                    )
                await asyncio.gather(*pending)
        except (KafkaError, TimeoutError):
            metrics.PRODUCE_ERRORS.inc()
            raise
        metrics.PRODUCE_SECONDS.observe(time.perf_counter() - started)

    async def _observe(self, keys: CampaignKeys) -> None:
        """Outbox length and the age of its oldest entry, for dashboards and alerts."""
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.xlen(keys.outbox)
            pipe.xrange(keys.outbox, count=1)
            length, first = await pipe.execute()
        metrics.OUTBOX_LENGTH.labels(keys.campaign_id).set(length)
        oldest_ms = int(first[0][0].split("-")[0]) if first else None
        age = time.time() - oldest_ms / 1000 if oldest_ms else 0.0
        metrics.OUTBOX_OLDEST_AGE.labels(keys.campaign_id).set(max(age, 0.0))


async def run_relay(settings: Settings, redis: Redis, stop: asyncio.Event) -> None:
    """Start a producer (retrying while Kafka is away) and relay until ``stop`` is set."""
    while not stop.is_set():
        producer = clients.kafka_producer(settings)
        try:
            await producer.start()
        except (KafkaError, OSError) as exc:
            log.warning("Kafka unavailable for the relay (%s); retrying", exc)
            await producer.stop()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)
            continue
        try:
            await Relay(redis, producer, settings).run(stop)
        finally:
            await producer.stop()


async def run_until_signalled(settings: Settings) -> None:
    """``flashclaim relay``: relay with a client of its own until SIGTERM or SIGINT."""
    stop = stop_on_signals()
    redis = clients.redis_client(settings)
    try:
        await run_relay(settings, redis, stop)
    finally:
        await redis.aclose()


def main(settings: Settings) -> int:
    """``flashclaim relay``: serve /metrics and /livez (if a port is set), run until signalled."""
    import uvloop

    uvloop.run(probes.with_probes(settings.metrics_port, run_until_signalled(settings)))
    return 0
