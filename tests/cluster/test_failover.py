"""A master of a real Redis Cluster killed during a herd.

What async replication can lose is made certain: the master's replica is cut off (its
link closed, its process frozen) before a first herd, so every claim the master accepts
then is acknowledged but never replicated; the relay hands those claims to Kafka and
PostgreSQL. Then a second herd is sent at the master, frozen so none of it is decided
there, and the master is SIGKILLed with those claims in flight; the replica thaws, takes
over, and the gateway must find it and answer again (the time is printed). Reconcile then
sees the rows Redis lost, recover rebuilds the campaign from PostgreSQL, and the end is
the fault suite's: one row per coupon issued, every coupon a client was told of stored,
nobody past a limit, within stock, reconcile clean.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
import redis as sync_redis

from gateway.campaigns.ops import CampaignOps, keys_of
from gateway.campaigns.spec import Campaign
from gateway.campaigns.store import CampaignStore
from gateway.infra.clients import redis_client
from gateway.infra.clock import ManualClock
from gateway.infra.settings import Settings
from gateway.ops.reconcile import reconcile_campaign
from gateway.ops.recover import recover
from gateway.stack.servers import RedisClusterServers, RedisServer
from tests.handoff.test_faults import assert_exactly_once, claims_from, drained
from tests.helpers import T0_MS, claim, published
from tests.pipeline import rows_of, running_consumer, running_relay, wait_until

pytestmark = pytest.mark.timeout(300)


@pytest.fixture
def cluster(tmp_path: Path) -> Any:
    """A cluster of the test's own: the test kills one of its masters."""
    servers = RedisClusterServers(tmp_path / "cluster").start()
    yield servers
    servers.stop()


@pytest.fixture
async def on_cluster(
    cluster: RedisClusterServers, kafka_settings: Settings, pool: Any, clock: ManualClock
) -> AsyncIterator[tuple[Settings, Any, CampaignOps]]:
    settings = msgspec.structs.replace(
        kafka_settings, redis_url=cluster.url, redis_cluster=True, relay_idle_ms=5
    )
    redis = redis_client(settings)
    yield settings, redis, CampaignOps(CampaignStore(pool), redis, clock)
    await redis.aclose()


def cut_off(master: RedisServer, replica: RedisServer) -> None:
    """Freeze the replica, then close its link at the master: what the master accepts
    from now on reaches no replica (a frozen one cannot reconnect)."""
    replica.signal(signal.SIGSTOP)
    client = sync_redis.Redis(host=master.host, port=master.port)
    try:
        assert client.client_kill_filter(_type="replica") == 1
    finally:
        client.close()


def replica_of(cluster: RedisClusterServers, master: RedisServer) -> RedisServer:
    client = sync_redis.Redis(host=master.host, port=master.port, decode_responses=True)
    try:
        info = client.info("replication")
    finally:
        client.close()
    port = int(info["slave0"]["port"])
    return next(node for node in cluster.nodes if node.port == port)


async def herd_until_answered(
    client: Any, campaign: Campaign, users: range, patience_s: float
) -> tuple[set[str], float]:
    """Every user claims, retrying 503s with the same requestId; the coupons told and when
    (``time.monotonic``) the first was told."""
    first = [float("inf")]

    async def one(n: int) -> str:
        deadline = time.monotonic() + patience_s
        while time.monotonic() < deadline:
            status, data = await claim(
                client, f"user-{n}", campaign.id, device=f"dev-{n}", request_id=f"b-{n:06d}"
            )
            if status == 200:
                first[0] = min(first[0], time.monotonic())
                return str(data["couponId"])
            assert status == 503, data  # nothing but UNAVAILABLE while the master is away
            await asyncio.sleep(0.05)
        raise AssertionError(f"user-{n} was not answered within {patience_s} s")

    told = await asyncio.gather(*(one(n) for n in users))
    return set(told), first[0]


async def test_a_killed_master_is_replaced_and_what_it_lost_is_recovered(
    cluster, on_cluster, make_client, pool, clock, database_url
):
    settings, redis, ops = on_cluster
    clock.set(T0_MS + 1000)
    client = await make_client(redis_url=cluster.url, redis_cluster=True)
    campaign = await published(ops, stock=1000, perUserLimit=1, perDeviceLimit=1)
    master = cluster.master_of(keys_of(campaign).config)
    replica = replica_of(cluster, master)

    async with running_consumer(settings, database_url), running_relay(settings, redis):
        first = await claims_from(client, campaign, range(100))
        await drained(redis, pool, campaign)  # replicated and stored: the ordinary case

        cut_off(master, replica)
        unreplicated = await claims_from(client, campaign, range(100, 250), click="a")
        assert len(unreplicated) == 150
        await drained(redis, pool, campaign)  # in PostgreSQL, on the master only

        master.signal(signal.SIGSTOP)  # the herd's claims now wait on a master that...
        herd = asyncio.create_task(herd_until_answered(client, campaign, range(250, 400), 90))
        await asyncio.sleep(0.5)
        killed = time.monotonic()
        master.kill()  # ...dies with them in flight
        replica.signal(signal.SIGCONT)
        second, answered = await herd
        print(f"\nfailover: claims answered again {answered - killed:.1f} s after the kill")
        assert len(second) == 150

        # The promoted replica never saw the cut-off herd: Redis counts less than is stored.
        async def stored() -> bool:
            return not await redis.xlen(keys_of(campaign).outbox) and len(
                await rows_of(pool, campaign.id)
            ) >= len(first | unreplicated | second)

        await wait_until(stored, within_s=60)
        report = await reconcile_campaign(pool, redis, campaign)
        assert report.issued == 250, report
        assert report.rows == 400, report
        assert report.alarm, "reconcile must flag the claims the failover lost"

        result = await recover(ops, pool, redis, ManualClock(clock.now_ms()), settings, campaign.id)
        assert result.issued == 400, result
        again = await claims_from(client, campaign, range(100, 250), click="a")
        assert again == unreplicated, "a retry after the failover must get the same coupon"
        assert await claims_from(client, campaign, range(100, 250), click="new") == set()
        late = await claims_from(client, campaign, range(400, 1100))
        assert len(late) == 600, "the stock left after recovery, exactly"
        await assert_exactly_once(redis, pool, campaign, first | unreplicated | second | late)
