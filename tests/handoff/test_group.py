"""Kafka at scale: several consumer processes in one group over a 12-partition topic.

The partitions are shared among the members; a member SIGKILLed in the middle of a herd
comes back under its static name (``FLASHCLAIM_CONSUMER_INSTANCE_ID``); and, once the
pipeline drains, PostgreSQL holds exactly one row per coupon Redis issued.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import signal
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import msgspec
from aiokafka.admin import AIOKafkaAdminClient

from gateway.infra import clients
from gateway.infra.settings import Settings
from gateway.stack.servers import free_port
from tests.handoff.test_faults import assert_exactly_once, claims_from
from tests.helpers import T0_MS, child_env, published
from tests.pipeline import rows_of, running_relay, wait_until

MEMBERS = 3


async def test_claims_topic_is_made_with_twelve_partitions(kafka_settings):
    await clients.ensure_topics(kafka_settings)
    assert await partitions_of(kafka_settings) == 12


async def test_three_consumer_processes_share_the_partitions_and_survive_a_kill(
    client, ops, redis, pool, clock, kafka_settings
):
    clock.set(T0_MS + 1000)
    settings = msgspec.structs.replace(kafka_settings, consumer_session_timeout_ms=6000)
    await clients.ensure_topics(settings)
    campaign = await published(ops, stock=600)
    ports = [free_port() for _ in range(MEMBERS)]
    async with consumer_processes(settings, ports) as members:
        await wait_until(lambda: group_is_stable_with(settings, MEMBERS), within_s=60)
        await wait_until(lambda: partitions_shared(ports), within_s=30)
        async with running_relay(settings, redis):
            told = await claims_from(client, campaign, range(300))
            await wait_until(lambda: some_rows(pool, campaign.id), within_s=60)
            members[0].send_signal(signal.SIGKILL)  # no leave-group, no commit
            await members[0].wait()
            told |= await claims_from(client, campaign, range(300, 800))  # 200 sold out
            assert len(told) == 600
            killed = time.monotonic()
            members[0] = await start_member(settings, 0, ports[0])  # restarted under the same name
            await assert_exactly_once(redis, pool, campaign, told)
            print(f"rows complete {time.monotonic() - killed:.1f} s after the restart")


async def some_rows(pool: Any, campaign_id: str) -> bool:
    return bool(await rows_of(pool, campaign_id))


async def start_member(settings: Settings, n: int, port: int) -> asyncio.subprocess.Process:
    env = child_env(
        settings, consumer_instance_id=f"member-{n}", metrics_port=port, log_level="WARNING"
    )
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway.cli", "consumer", env=env
    )


@contextlib.asynccontextmanager
async def consumer_processes(settings: Settings, ports: list[int]) -> AsyncIterator[list[Any]]:
    """One ``flashclaim consumer`` process per metrics port, each under a static name; all
    of them (including any the test restarted) are stopped at the end."""
    members = [await start_member(settings, n, port) for n, port in enumerate(ports)]
    try:
        yield members
    finally:
        for member in members:
            if member.returncode is None:
                member.terminate()
        for member in members:
            try:
                await asyncio.wait_for(member.wait(), 30)
            except TimeoutError:
                member.kill()
                await member.wait()


async def partitions_shared(ports: list[int]) -> bool:
    """Every member owns some of the 12 partitions and together they own all of them
    (each member's ``flashclaim_consumer_partitions`` on its /metrics)."""
    owned = []
    async with aiohttp.ClientSession() as session:
        for port in ports:
            try:
                async with session.get(f"http://127.0.0.1:{port}/metrics") as response:
                    text = await response.text()
            except aiohttp.ClientError:
                return False  # not serving yet
            found = re.search(r"^flashclaim_consumer_partitions (\S+)$", text, re.MULTILINE)
            owned.append(int(float(found[1])) if found else 0)
    return all(owned) and sum(owned) == 12


@contextlib.asynccontextmanager
async def admin_of(settings: Settings) -> AsyncIterator[AIOKafkaAdminClient]:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        yield admin
    finally:
        await admin.close()


async def partitions_of(settings: Settings) -> int:
    async with admin_of(settings) as admin:
        (topic,) = await admin.describe_topics([settings.claims_topic])
    return len(topic["partitions"])


async def group_is_stable_with(settings: Settings, members: int) -> bool:
    async with admin_of(settings) as admin:
        (reply,) = await admin.describe_consumer_groups([settings.consumer_group])
    group = reply.groups[0]
    return bool(group[2] == "Stable" and len(group[5]) == members)
