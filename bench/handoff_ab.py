"""A/B of the consumer (Kafka to PostgreSQL) in one process, asyncpg COPY as the bar.

``python -m bench.handoff_ab`` (``BENCH_EVENTS``, 30,000; ``BENCH_ROUNDS``, 3): the same
claim events wait in one Kafka topic; in each round every variant, in turns whose order
alternates, persists all of them into an emptied ``coupons`` table through a fresh consumer
group, and a plain asyncpg COPY of the same rows into an emptied table of the same shape
gives the bar. A turn is timed from the moment its group member has partitions until the
last row is stored, so the group's join (the broker's rebalance delay) is not counted.
Printed: rows/s, each variant's median ratio to COPY in its round, the B / A ratio, and
this process's CPU per row (the consumer's own cost, steadier than wall time on a shared
machine).

The variants: ``staged``, the consumer before: fetch a batch, write it through the staging
table, commit, then fetch the next; ``direct``, ``ClaimConsumer`` as it is: the same loop,
each batch COPYed straight into ``coupons`` (the staged way only after a duplicate);
``prefetch``: direct, and the next batch fetched and unpacked while the current one is
written (tried, not kept).
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg
import msgspec
from aiokafka import ConsumerRecord, TopicPartition
from prometheus_client import REGISTRY

from bench.claim_bench import POSTGRES_URL
from gateway.claim import events
from gateway.claim.events import ClaimEvent
from gateway.handoff import persist
from gateway.handoff.consumer import ClaimConsumer
from gateway.infra import clients
from gateway.infra.settings import Settings
from gateway.stack.servers import KafkaBroker, drop_database, scratch_database

EVENTS = int(os.environ.get("BENCH_EVENTS", "30000"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))


class StagedConsumer(ClaimConsumer):
    """The consumer before: every batch through the staging table."""

    async def _insert(
        self, conn: asyncpg.pool.PoolConnectionProxy, claims: list[ClaimEvent]
    ) -> int:
        return await persist.insert_claims_staged(conn, claims)


class PrefetchConsumer(ClaimConsumer):
    """Tried and not kept: the next batch fetched (and its records unpacked) while the
    current one is written; batches still stored and committed one after another."""

    async def run(self, stop: asyncio.Event) -> None:
        batch = await self._fetch()
        while batch or not stop.is_set():
            if not batch:
                await self._observe_lag()
                batch = await self._fetch()
                continue
            storing = asyncio.create_task(self.handle(batch, stop))
            try:
                upcoming = await self._fetch() if not stop.is_set() else {}
            finally:
                await storing
            batch = upcoming
            await self._observe_lag()

    async def _fetch(self) -> dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]:
        batch: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]
        batch = await self._consumer.getmany(
            timeout_ms=200, max_records=self._settings.consumer_batch
        )
        return batch


#: The first is the baseline of the B / A ratios.
VARIANTS: dict[str, type[ClaimConsumer]] = {
    "staged": StagedConsumer,
    "direct": ClaimConsumer,
    "prefetch": PrefetchConsumer,
}


@dataclass(frozen=True)
class Turn:
    """One turn: rows per wall second and this process's CPU µs per row."""

    per_s: float
    cpu_us: float


def persisted() -> float:
    return REGISTRY.get_sample_value("flashclaim_persisted_total") or 0.0


async def until(done: Callable[[], bool]) -> None:
    """Poll a condition of this process every 5 ms."""
    while not done():  # noqa: ASYNC110 (an in-process figure, nothing to wait on)
        await asyncio.sleep(0.005)


def sample_events(n: int, start: int = 0) -> list[events.ClaimEvent]:
    """``n`` distinct accepted claims, users and requests numbered from ``start``."""
    now = int(time.time() * 1000)
    return [
        events.ClaimEvent(
            coupon_id=str(uuid.uuid4()),
            campaign_id="bench",
            user_id=f"user-{i}",
            device_id=f"dev-{i}",
            request_id=f"req-{i:08d}",
            channel="seckill",
            value_cents=500,
            claimed_at_ms=now,
            expires_at_ms=now + 86_400_000,
        )
        for i in range(start, start + n)
    ]


async def consumer_turn(
    settings: Settings,
    pool: asyncpg.Pool,
    kind: type[ClaimConsumer],
    group: str,
    rows: int = EVENTS,
) -> Turn:
    """Persist the ``rows`` waiting events with a fresh group member of ``kind``."""
    await pool.execute("TRUNCATE coupons CASCADE")
    own = msgspec.structs.replace(settings, consumer_group=group)
    consumer, dead_letters = clients.claims_consumer(own), clients.kafka_producer(own)
    await consumer.start()
    await dead_letters.start()
    stop = asyncio.Event()
    task = asyncio.create_task(kind(consumer, dead_letters, pool, own).run(stop))
    try:
        await until(lambda: bool(consumer.assignment()))
        before = persisted()
        started, cpu = time.perf_counter(), time.process_time()
        await until(lambda: persisted() - before >= rows)
        wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    finally:
        stop.set()
        await task
        await consumer.stop()
        await dead_letters.stop()
    return Turn(rows / wall, cpu / rows * 1e6)


async def copy_turn(conn: asyncpg.Connection, records: list[tuple[object, ...]]) -> Turn:
    """asyncpg COPY of the same rows into an emptied table shaped like coupons."""
    await conn.execute("TRUNCATE coupons_copy")
    started, cpu = time.perf_counter(), time.process_time()
    await conn.copy_records_to_table("coupons_copy", records=records, columns=persist.COLUMNS)
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    return Turn(len(records) / wall, cpu / len(records) * 1e6)


def copy_records(claims: list[events.ClaimEvent]) -> list[tuple[object, ...]]:
    """The rows of ``claims`` as the COPY baseline gets them, built before its clock."""
    at = datetime.now(UTC)
    return [
        (uuid.UUID(c.coupon_id), c.campaign_id, c.user_id, c.device_id, c.request_id,
         c.channel, c.value_cents, at, at, c.code or None, c.new_user, c.level,
         list(c.tags) or None)
        for c in claims
    ]  # fmt: skip


async def produce(settings: Settings, claims: list[events.ClaimEvent]) -> None:
    await clients.ensure_topics(settings)
    producer = clients.kafka_producer(settings)
    await producer.start()
    try:
        for claim in claims:
            await producer.send(
                settings.claims_topic, events.encode(claim), key=claim.user_id.encode()
            )
        await producer.flush()
    finally:
        await producer.stop()


async def measure(settings: Settings) -> dict[str, list[Turn]]:
    claims = sample_events(EVENTS)
    await produce(settings, claims)
    records = copy_records(claims)
    pool = await asyncpg.create_pool(settings.database_url, min_size=1, max_size=2)
    conn = await asyncpg.connect(settings.database_url)
    await conn.execute("CREATE TABLE coupons_copy (LIKE coupons INCLUDING ALL)")
    turns: dict[str, list[Turn]] = {name: [] for name in ["copy", *VARIANTS]}
    try:
        names = list(VARIANTS)
        for round_ in range(ROUNDS + 1):  # round 0 warms up and is not counted
            order = names if round_ % 2 == 0 else names[::-1]
            results = {"copy": await copy_turn(conn, records)}
            for name in order:
                group = f"ab-{name}-{round_}"
                results[name] = await consumer_turn(settings, pool, VARIANTS[name], group)
            if round_:
                for name, turn in results.items():
                    turns[name].append(turn)
            line = ", ".join(f"{n} {t.per_s:,.0f} rows/s" for n, t in results.items())
            print(f"round {round_}{' (warm-up)' if not round_ else ''}: {line}", flush=True)
    finally:
        await conn.close()
        await pool.close()
    return turns


def report(turns: dict[str, list[Turn]]) -> None:
    copy = turns["copy"]
    print(f"\nconsumer A/B: {EVENTS} events, {ROUNDS} rounds (medians)")
    for name in VARIANTS:
        mine = turns[name]
        ratio = statistics.median(t.per_s / c.per_s for t, c in zip(mine, copy, strict=True))
        print(
            f"{name:<10} {statistics.median(t.per_s for t in mine):>9,.0f} rows/s"
            f"  {statistics.median(t.cpu_us for t in mine):>6.1f} CPU us/row  / COPY {ratio:.2f}"
        )
    print(f"{'COPY':<10} {statistics.median(t.per_s for t in copy):>9,.0f} rows/s")
    names = list(VARIANTS)
    base = turns[names[0]]
    for name in names[1:]:
        mine = turns[name]
        per_s = statistics.median(y.per_s / x.per_s for x, y in zip(base, mine, strict=True))
        cpu = statistics.median(y.cpu_us / x.cpu_us for x, y in zip(base, mine, strict=True))
        print(f"{name} / {names[0]}: rows/s {per_s:.3f}, CPU/row {cpu:.3f}")


def main() -> int:
    broker = KafkaBroker().start()
    database_url = asyncio.run(scratch_database(POSTGRES_URL, prefix="flashclaim_hab"))
    settings = Settings.from_env(
        {}, database_url=database_url, kafka_bootstrap=broker.bootstrap, claims_topic="ab.claims"
    )
    try:
        report(asyncio.run(measure(settings)))
    finally:
        broker.stop()
        asyncio.run(drop_database(POSTGRES_URL, database_url))
    return 0


if __name__ == "__main__":
    sys.exit(main())
