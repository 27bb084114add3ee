"""The consumer: accepted claims from Kafka into PostgreSQL, each exactly once in effect.

The loop: getmany, one transaction per batch, then commit the offsets. (aiokafka already
fetches the next records in the background while a batch is written; unpacking them
concurrently too was tried, ``bench/handoff_ab.py`` prefetch, and did not pay.)

Offsets are committed only after the database committed the batch, and only for the
partitions this member still owns. A refused commit (a rebalance moved the partition)
is not an error: the new owner re-reads those messages and the primary key absorbs them.
While PostgreSQL is down the batch is retried, never skipped; nothing newer is read
until it is stored. Messages that cannot be decoded go to the dead-letter topic.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence

import asyncpg
import msgspec
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError

from gateway.claim import events
from gateway.claim.events import ClaimEvent
from gateway.handoff.persist import insert_claims
from gateway.infra import clients, metrics, probes
from gateway.infra.settings import Settings
from gateway.infra.signals import stop_on_signals

log = logging.getLogger(__name__)

RETRY_S = 0.5

#: PostgreSQL is down, restarting or unreachable: keep the batch and try again.
UNREACHABLE = (
    OSError,
    asyncpg.InterfaceError,  # includes a connection closed under us
    asyncpg.PostgresConnectionError,
    asyncpg.OperatorInterventionError,  # admin shutdown, crash shutdown, cannot connect now
)


class ClaimConsumer:
    """Persists claims from Kafka; one instance per consumer-group member."""

    def __init__(
        self,
        consumer: AIOKafkaConsumer,
        dead_letters: AIOKafkaProducer,
        pool: asyncpg.Pool,
        settings: Settings,
    ) -> None:
        self._consumer = consumer
        self._dead_letters = dead_letters
        self._pool = pool
        self._settings = settings

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until ``stop`` is set; a batch in hand is stored before stopping."""
        while not stop.is_set():
            batch = await self._consumer.getmany(
                timeout_ms=200, max_records=self._settings.consumer_batch
            )
            if batch:
                await self.handle(batch, stop)
            await self._observe_lag()

    async def handle(
        self, batch: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]], stop: asyncio.Event
    ) -> None:
        """Store one fetched batch, then commit its offsets."""
        records = [record for records in batch.values() for record in records]
        claims = await self._decode(records)
        if not await self._store(claims, stop):
            return  # stopping with the batch unstored: it is not committed, so re-read later
        offsets = {
            tp: records[-1].offset + 1
            for tp, records in batch.items()
            if tp in self._consumer.assignment()
        }
        try:
            await self._consumer.commit(offsets)
        except (CommitFailedError, IllegalStateError) as exc:
            metrics.COMMIT_FAILURES.inc()
            log.warning("offset commit refused (%s); the batch will be redelivered", exc)

    async def _decode(self, records: Sequence[ConsumerRecord[bytes, bytes]]) -> list[ClaimEvent]:
        claims = []
        for record in records:
            try:
                claims.append(events.decode(record.value or b""))
            except (msgspec.ValidationError, msgspec.DecodeError) as exc:
                log.error("undecodable claim at %s:%s (%s)", record.partition, record.offset, exc)
                await self._dead_letter(record)
        return claims

    async def _dead_letter(self, record: ConsumerRecord[bytes, bytes]) -> None:
        while True:
            try:
                await self._dead_letters.send_and_wait(
                    self._settings.dlq_topic, record.value, key=record.key
                )
            except KafkaError as exc:
                log.warning("dead-letter topic unavailable (%s); retrying", exc)
                await asyncio.sleep(RETRY_S)
            else:
                metrics.DEAD_LETTERS.inc()
                return

    async def _store(self, claims: list[ClaimEvent], stop: asyncio.Event) -> bool:
        """Insert in one transaction, retrying while PostgreSQL is unreachable."""
        if not claims:
            return True
        while True:
            started = time.perf_counter()
            try:
                async with self._pool.acquire() as conn, conn.transaction():
                    new = await self._insert(conn, claims)
            except UNREACHABLE as exc:
                if stop.is_set():
                    return False
                log.warning("PostgreSQL unavailable (%s); retrying the batch", exc)
                await asyncio.sleep(RETRY_S)
                continue
            metrics.DB_COMMIT_SECONDS.observe(time.perf_counter() - started)
            metrics.PERSIST_BATCH.observe(len(claims))
            metrics.PERSISTED.inc(new)
            metrics.DUPLICATES.inc(len(claims) - new)
            return True

    async def _insert(
        self, conn: asyncpg.pool.PoolConnectionProxy, claims: list[ClaimEvent]
    ) -> int:
        """The write of one batch (a method of its own so a bench can compare ways)."""
        return await insert_claims(conn, claims)

    async def _observe_lag(self) -> None:
        assignment = self._consumer.assignment()
        metrics.CONSUMER_PARTITIONS.set(len(assignment))
        for tp in assignment:
            highwater = self._consumer.highwater(tp)
            if highwater is None:
                continue
            try:
                position = await self._consumer.position(tp)
            except IllegalStateError:  # revoked meanwhile
                continue
            metrics.CONSUMER_LAG.labels(str(tp.partition)).set(max(highwater - position, 0))


async def consume(settings: Settings, stop: asyncio.Event) -> None:
    """Consume claims into PostgreSQL until ``stop`` is set."""
    await clients.ensure_topics(settings)
    pool = await clients.create_pool(settings.database_url)
    consumer = clients.claims_consumer(settings)
    dead_letters = clients.kafka_producer(settings)
    try:
        await consumer.start()
        await dead_letters.start()
        await ClaimConsumer(consumer, dead_letters, pool, settings).run(stop)
    finally:
        for client in (consumer, dead_letters):
            # aiokafka awaits its own cancelled fetch tasks on stop; that is not ours to raise
            with contextlib.suppress(asyncio.CancelledError):
                await client.stop()
        await pool.close()


async def run_until_signalled(settings: Settings) -> None:
    """``flashclaim consumer``: one consumer-group member until SIGTERM or SIGINT."""
    stop = stop_on_signals()
    await consume(settings, stop)


def main(settings: Settings) -> int:
    """``flashclaim consumer``: serve /metrics and /livez (if a port is set), run until
    signalled."""
    import uvloop

    uvloop.run(probes.with_probes(settings.metrics_port, run_until_signalled(settings)))
    return 0
