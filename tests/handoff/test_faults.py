"""Faults along the hand-off: nothing accepted is lost, nothing is stored twice.

Every test ends with the same check: once the pipeline drains, PostgreSQL holds exactly
one row per coupon Redis issued, every coupon a client was told about is among them, and
no campaign issued more than its stock.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import sys
from typing import Any

import asyncpg
import msgspec
import pytest
from aiokafka import ConsumerRecord, TopicPartition
from prometheus_client import REGISTRY

from gateway.campaigns.ops import CampaignOps, keys_of
from gateway.campaigns.spec import Campaign
from gateway.campaigns.store import CampaignStore
from gateway.handoff.consumer import ClaimConsumer
from gateway.handoff.relay import Relay
from gateway.infra.clients import redis_client
from gateway.infra.clock import ManualClock
from gateway.ops.reconcile import reconcile_campaign
from gateway.ops.recover import recover
from gateway.stack.servers import RedisServer
from tests.helpers import T0_MS, claim, published
from tests.pipeline import rows_of, running_consumer, running_relay, wait_until


async def claims_from(
    client: Any, campaign: Campaign, users: range, click: str = "click"
) -> set[str]:
    """Claim once per user, concurrently, retrying 503s with the same requestId as pages
    do; the coupon ids clients were told about."""

    async def one(n: int) -> tuple[int, dict[str, Any]]:
        for _ in range(20):
            status, data = await claim(
                client, f"user-{n}", campaign.id, device=f"dev-{n}", request_id=f"{click}-{n:06d}"
            )
            if status != 503:
                return status, data
            await asyncio.sleep(0.1)
        return status, data

    answers = await asyncio.gather(*(one(n) for n in users))
    return {data["couponId"] for status, data in answers if status == 200}


async def drained(redis: Any, pool: Any, campaign: Campaign) -> list[str]:
    """Wait until the outbox is empty and every issued coupon has its row."""
    keys = keys_of(campaign)

    async def done() -> bool:
        issued = int(await redis.hget(keys.counters, "issued") or 0)
        return (
            await redis.xlen(keys.outbox) == 0 and len(await rows_of(pool, campaign.id)) >= issued
        )

    try:
        await wait_until(done, within_s=60)
    except AssertionError:
        issued = await redis.hget(keys.counters, "issued")
        pending = await redis.xlen(keys.outbox)
        stored = len(await rows_of(pool, campaign.id))
        raise AssertionError(
            f"not drained: issued {issued}, outbox {pending}, rows {stored}"
        ) from None
    return await rows_of(pool, campaign.id)


async def assert_exactly_once(redis: Any, pool: Any, campaign: Campaign, told: set[str]) -> None:
    rows = await drained(redis, pool, campaign)
    issued = int(await redis.hget(keys_of(campaign).counters, "issued"))
    assert len(rows) == len(set(rows)) == issued, "a row is missing or doubled"
    assert told <= set(rows), "a client was told of a coupon that was never stored"
    assert issued <= campaign.stock
    report = await reconcile_campaign(pool, redis, campaign)
    assert not report.alarm, report


class CrashAfterProduce(Relay):
    """A relay that dies after Kafka acknowledged its batch, before XACK."""

    async def _produce(self, entries: list[tuple[str, dict[str, str]]]) -> None:
        await super()._produce(entries)
        raise RuntimeError("relay killed between produce and XACK")


async def test_relay_killed_between_produce_and_ack(
    client, ops, redis, pool, clock, kafka_settings, database_url
):
    clock.set(T0_MS + 1000)
    campaign = await published(ops, stock=80)
    told = await claims_from(client, campaign, range(100))
    assert len(told) == 80
    await running_relay_once_and_crash(kafka_settings, redis)
    pending = await redis.xpending(keys_of(campaign).outbox, "relay")
    assert pending["pending"] == 80, "the crashed relay's entries must stay pending"
    duplicates_before = duplicates()
    async with (
        running_consumer(kafka_settings, database_url),
        running_relay(kafka_settings, redis, name="relay-2"),
    ):
        await assert_exactly_once(redis, pool, campaign, told)

        async def second_copies_absorbed() -> bool:  # Kafka had each entry twice
            return duplicates() - duplicates_before == 80

        await wait_until(second_copies_absorbed)
    assert len(await rows_of(pool, campaign.id)) == 80


def duplicates() -> float:
    return REGISTRY.get_sample_value("flashclaim_persist_duplicates_total") or 0.0


async def running_relay_once_and_crash(settings: Any, redis: Any) -> None:
    from gateway.infra import clients

    await clients.ensure_topics(settings)
    producer = clients.kafka_producer(settings)
    await producer.start()
    try:
        with pytest.raises(RuntimeError, match="killed"):
            await CrashAfterProduce(redis, producer, settings, "relay-1").relay_once()
    finally:
        await producer.stop()


class CrashBeforeCommit(ClaimConsumer):
    """A consumer that stores its first batch and dies before committing the offsets."""

    crashed = False

    async def handle(
        self, batch: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]], stop: Any
    ) -> None:
        if CrashBeforeCommit.crashed:
            return await super().handle(batch, stop)
        records = [r for rs in batch.values() for r in rs]
        await self._store(await self._decode(records), stop)
        CrashBeforeCommit.crashed = True
        raise RuntimeError("consumer killed mid-batch")


async def test_consumer_killed_mid_batch_and_another_takes_over(
    client, ops, redis, pool, clock, kafka_settings, database_url
):
    clock.set(T0_MS + 1000)
    campaign = await published(ops, stock=60)
    told = await claims_from(client, campaign, range(60))
    async with running_relay(kafka_settings, redis):
        async with running_consumer(kafka_settings, database_url, CrashBeforeCommit):
            await wait_until(lambda: _crashed())
        assert len(await rows_of(pool, campaign.id)) > 0
        async with running_consumer(kafka_settings, database_url):
            await assert_exactly_once(redis, pool, campaign, told)


async def _crashed() -> bool:
    return CrashBeforeCommit.crashed


async def test_broker_paused_then_resumed(
    client, ops, redis, pool, clock, broker, kafka_settings, database_url
):
    clock.set(T0_MS + 1000)
    campaign = await published(ops, stock=200)
    told = await claims_from(client, campaign, range(50))
    async with running_consumer(kafka_settings, database_url), running_relay(kafka_settings, redis):
        broker.signal(signal.SIGSTOP)
        try:
            told |= await claims_from(client, campaign, range(50, 150))  # Kafka is frozen
            assert len(told) == 150, "claims must not depend on Kafka"
            await asyncio.sleep(1.0)
        finally:
            broker.signal(signal.SIGCONT)
        told |= await claims_from(client, campaign, range(150, 200))
        await assert_exactly_once(redis, pool, campaign, told)


@pytest.fixture
async def own_redis(tmp_path, settings, pool, clock):
    """A Redis with an AOF (appendfsync always) that a test may kill and restart."""
    server = RedisServer(tmp_path / "redis", aof=True).start()
    own = msgspec.structs.replace(settings, redis_url=server.url, redis_cluster=False)
    client = redis_client(own)
    ops = CampaignOps(CampaignStore(pool), client, clock)
    yield server, own, client, ops
    await client.aclose()
    server.stop()


async def test_redis_restarted_from_its_aof(
    own_redis, make_client, pool, clock, kafka_overrides, database_url
):
    server, own, redis, ops = own_redis
    clock.set(T0_MS + 1000)
    client = await make_client(redis_url=server.url, redis_cluster=False)
    campaign = await published(ops, stock=100, perUserLimit=1)
    told = await claims_from(client, campaign, range(60))
    server.kill()
    server.start()
    told |= await claims_from(client, campaign, range(60, 130))  # 40 more fit, and no more
    assert len(told) == 100
    settings = msgspec.structs.replace(own, **kafka_overrides)
    async with running_consumer(settings, database_url), running_relay(settings, redis):
        await assert_exactly_once(redis, pool, campaign, told)


async def test_redis_restored_from_an_older_aof_then_recovered(
    own_redis, make_client, pool, clock, kafka_overrides, database_url, tmp_path
):
    server, own, redis, ops = own_redis
    settings = msgspec.structs.replace(own, **kafka_overrides)
    clock.set(T0_MS + 1000)
    client = await make_client(redis_url=server.url, redis_cluster=False)
    campaign = await published(ops, stock=100, perUserLimit=1, perDeviceLimit=1)
    first = await claims_from(client, campaign, range(40))
    async with running_consumer(settings, database_url), running_relay(settings, redis):
        await drained(redis, pool, campaign)
        shutil.copytree(server.data_dir, tmp_path / "older")  # the lagging copy
        second = await claims_from(client, campaign, range(40, 80))
        await drained(redis, pool, campaign)
    server.kill()
    shutil.rmtree(server.data_dir)
    shutil.copytree(tmp_path / "older", server.data_dir)
    server.start()
    assert int(await redis.hget(keys_of(campaign).counters, "issued")) == 40  # rewound

    result = await recover(ops, pool, redis, ManualClock(clock.now_ms()), settings, campaign.id)
    assert (result.issued, result.persisted) == (80, 80)
    assert await redis.llen(keys_of(campaign).winners) == 80  # the herd's memory, rebuilt
    assert await redis.hget(keys_of(campaign).config, "status") == "active"

    replayed = await claims_from(client, campaign, range(40, 80))  # retries of lost answers
    assert replayed == second, "a retry after the restore must get the same coupon"
    again = await claims_from(client, campaign, range(40, 80), click="again")
    assert again == set(), "a user got a second coupon after the restore"
    late = await claims_from(client, campaign, range(80, 200))
    assert len(late) == 20, "more than the stock was issued"
    async with running_consumer(settings, database_url), running_relay(settings, redis):
        await assert_exactly_once(redis, pool, campaign, first | second | late)


async def test_gateway_killed_with_sigkill_under_load(
    redis_server, database_url, redis, pool, kafka_settings, tmp_path
):
    """Workers (each with its relay) are SIGKILLed mid-herd; a fresh relay drains the rest."""

    import aiohttp

    from gateway.infra.clock import SystemClock
    from gateway.stack.servers import free_port, wait_for_port
    from tests.helpers import auth, child_env, open_now, published

    ops = CampaignOps(CampaignStore(pool), redis, SystemClock())
    campaign = await published(ops, stock=2000, **open_now())
    port = free_port()
    env = child_env(
        kafka_settings,
        port=port,
        workers=2,
        metrics_dir=str(tmp_path / "metrics"),
        relay_in_gateway=True,
    )
    from gateway.infra import clients

    await clients.ensure_topics(kafka_settings)
    gateway = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway.cli", "serve", env=env, start_new_session=True
    )
    await asyncio.to_thread(wait_for_port, port, 20)
    told: set[str] = set()
    unanswered = 0
    some_won = asyncio.Event()

    async def herd(session: aiohttp.ClientSession, n: int) -> None:
        nonlocal unanswered
        try:
            async with session.post(
                f"http://127.0.0.1:{port}/api/coupon/issue",
                headers=auth(f"user-{n}"),
                json={
                    "campaignId": campaign.id,
                    "requestId": f"click-{n:06d}",
                    "deviceId": f"dev-{n}",
                    "channel": "seckill",
                },
            ) as response:
                if response.status == 200:
                    told.add((await response.json())["couponId"])
                    if len(told) >= 20:
                        some_won.set()
        except aiohttp.ClientError:
            unanswered += 1

    async with aiohttp.ClientSession() as session:
        load = [asyncio.create_task(herd(session, n)) for n in range(3000)]
        # Kill mid-herd: once some have won (a busy machine answers later than a quiet one).
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(some_won.wait(), 10)
        os.killpg(gateway.pid, signal.SIGKILL)  # supervisor and workers, mid-herd
        await asyncio.gather(*load)
    await gateway.wait()
    assert told, "the herd should have won some coupons before the kill"
    assert unanswered, "the kill should have cut some claims off mid-flight"
    async with running_consumer(kafka_settings, database_url), running_relay(kafka_settings, redis):
        await assert_exactly_once(redis, pool, campaign, told)


@pytest.fixture
async def own_postgres():
    """A PostgreSQL of the test's own, migrated, which the test may stop and start."""
    import tempfile
    from pathlib import Path

    from gateway.infra.migrations import migrate_database
    from gateway.stack.servers import PostgresServer

    home = Path(tempfile.mkdtemp(prefix="flashclaim-pg-"))  # outside root-only pytest dirs
    server = PostgresServer(home / "data")
    server.init().start()
    await migrate_database(server.url)
    yield server
    with contextlib.suppress(Exception):
        server.stop()
    shutil.rmtree(home, ignore_errors=True)


async def test_postgres_stopped_and_restarted(
    client, ops, redis, clock, kafka_settings, own_postgres
):
    clock.set(T0_MS + 1000)
    campaign = await published(ops, stock=300)
    told = await claims_from(client, campaign, range(100))
    record = await asyncpg.create_pool(own_postgres.url, min_size=1, max_size=2)
    try:
        async with (
            running_consumer(kafka_settings, own_postgres.url),
            running_relay(kafka_settings, redis),
        ):
            await drained(redis, record, campaign)
            await asyncio.to_thread(own_postgres.stop)
            told |= await claims_from(client, campaign, range(100, 250))  # the gate stays open
            await asyncio.sleep(1.5)  # the consumer retries its batch meanwhile
            await asyncio.to_thread(own_postgres.start)
            await assert_exactly_once(redis, record, campaign, told)
    finally:
        await record.close()
    assert len(told) == 250


async def test_broker_killed_and_restarted(
    client, ops, redis, pool, clock, kafka_settings, database_url
):
    """Kafka dies hard while claims go on; the outbox keeps them until it is back.

    The test broker keeps everything in memory: a restart forgets topics, offsets and
    groups, which no durable Kafka does (and a client racing the restart can write into
    a topic the broker re-creates differently). So the consumer drains before the kill,
    the relay that failed during the outage is stopped with its batch left pending, the
    topics are created again, and a fresh relay and consumer finish the job. Clients
    riding out an unreachable broker are the SIGSTOP test's subject.
    """
    from gateway.infra import clients
    from gateway.stack.servers import KafkaBroker

    broker = KafkaBroker().start()  # its own, as this test kills it
    settings = msgspec.structs.replace(kafka_settings, kafka_bootstrap=broker.bootstrap)
    clock.set(T0_MS + 1000)
    campaign = await published(ops, stock=300)
    try:
        async with running_relay(settings, redis):
            async with running_consumer(settings, database_url):
                told = await claims_from(client, campaign, range(100))
                await drained(redis, pool, campaign)
            broker.kill()
            told |= await claims_from(client, campaign, range(100, 200))
            await asyncio.sleep(1.0)
            assert await redis.xlen(keys_of(campaign).outbox) == 100, "the outbox holds them"
        await asyncio.to_thread(broker.stop)
        await asyncio.to_thread(broker.start)
        await clients.ensure_topics(settings)
        async with (
            running_consumer(settings, database_url),
            running_relay(settings, redis, name="relay-after"),
        ):
            await assert_exactly_once(redis, pool, campaign, told)
    finally:
        broker.stop()
    assert len(told) == 200
