"""flashclaim on a real Redis Cluster (3 masters + 3 replicas): the claim path's routed
connections (a slot moved under them: MOVED, then ASK mid-migration), scans that must see
every master, and ``WAIT`` durability with a replica that answers and one that does not."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator
from typing import Any

import msgspec
import pytest
import redis as sync_redis
from redis.crc import key_slot

from gateway.campaigns.ops import CampaignOps, keys_of
from gateway.campaigns.store import CampaignStore
from gateway.claim.wire import ClusterWire, Script
from gateway.infra import metrics
from gateway.infra.clients import redis_client
from gateway.infra.settings import Settings
from gateway.ops.reconcile import reconcile_campaign
from gateway.stack.servers import RedisClusterServers, RedisServer
from tests.helpers import T0_MS, claim, published


@pytest.fixture
async def cluster_settings(redis_cluster: RedisClusterServers, settings: Settings) -> Settings:
    return msgspec.structs.replace(settings, redis_url=redis_cluster.url, redis_cluster=True)


@pytest.fixture
async def cluster_redis(cluster_settings: Settings) -> AsyncIterator[Any]:
    client = redis_client(cluster_settings)
    await client.flushall()
    yield client
    await client.aclose()


@pytest.fixture
def cluster_ops(pool: Any, cluster_redis: Any, clock: Any) -> CampaignOps:
    return CampaignOps(CampaignStore(pool), cluster_redis, clock)


def _node_client(node: RedisServer) -> sync_redis.Redis:
    return sync_redis.Redis(host=node.host, port=node.port, decode_responses=True)


def _id_of(node: RedisServer) -> str:
    client = _node_client(node)
    try:
        return str(client.execute_command("CLUSTER", "MYID"))
    finally:
        client.close()


def _run(node: RedisServer, *command: Any) -> Any:
    client = _node_client(node)
    try:
        return client.execute_command(*command)
    finally:
        client.close()


def _masters(cluster: RedisClusterServers) -> list[RedisServer]:
    slots = _run(cluster.nodes[0], "CLUSTER", "SLOTS")
    ports = {int(entry[2][1]) for entry in slots}
    return [node for node in cluster.nodes if node.port in ports]


async def test_campaigns_on_every_master_are_claimed_and_reconciled(
    redis_cluster, cluster_settings, cluster_ops, cluster_redis, make_client, pool, clock
):
    """Campaigns until each master holds one: each is claimed, and the scan reconcile
    makes of replay records (every master) finds each campaign's coupons."""
    clock.set(T0_MS + 1000)
    client = await make_client(redis_url=redis_cluster.url, redis_cluster=True)
    on: dict[int, Any] = {}
    while len(on) < 3:
        campaign = await published(cluster_ops, stock=5)
        on.setdefault(redis_cluster.master_of(keys_of(campaign).config).port, campaign)
    for campaign in on.values():
        answers = [await claim(client, f"u{n}", campaign.id) for n in range(7)]
        assert [status for status, _ in answers].count(200) == 5
        report = await reconcile_campaign(pool, cluster_redis, campaign)
        assert (report.issued, report.outbox, report.missing) == (5, 5, [])
        found = [k async for k in cluster_redis.scan_iter(match=keys_of(campaign).request("*"))]
        assert len(found) == 5  # the scan reconcile makes reaches this campaign's master


async def test_a_moved_slot_is_followed_and_an_asked_one_too(redis_cluster, cluster_redis):
    """A slot migrated to another master while the wire knows the old map: mid-migration
    the old master answers ASK for a key it no longer has; after, MOVED."""
    wire = ClusterWire(redis_cluster.url, 5.0)
    key, other = "fc:{c:moving}:c:moving:cfg", "fc:{c:moving}:c:moving:counters"
    await cluster_redis.set(key, "before")
    slot = key_slot(key.encode())
    source = redis_cluster.master_of(key)
    target = next(m for m in _masters(redis_cluster) if m.port != source.port)
    script = Script("return redis.call('GET', KEYS[1])")
    assert await wire.evalsha(script, [key], []) == "before"  # the map is read now
    source_id, target_id = _id_of(source), _id_of(target)
    try:
        _run(target, "CLUSTER", "SETSLOT", slot, "IMPORTING", source_id)
        _run(source, "CLUSTER", "SETSLOT", slot, "MIGRATING", target_id)
        _run(source, "MIGRATE", target.host, target.port, "", 0, 5000, "KEYS", key)
        assert await wire.evalsha(script, [key], []) == "before"  # ASK: ASKING, then there
        assert await wire.command("MGET", other) == [None]  # a missing key: ASK too
    finally:
        for node in _masters(redis_cluster):
            _run(node, "CLUSTER", "SETSLOT", slot, "NODE", target_id)
    refreshes = wire.refreshes
    assert await wire.evalsha(script, [key], []) == "before"  # MOVED, then the new owner
    assert await wire.command("MGET", key) == ["before"]
    assert wire.refreshes > refreshes  # the map was read again after the MOVED
    await wire.aclose()
    redis_cluster.wait_ok()


def _unreplicated() -> float:
    return metrics.UNREPLICATED._value.get()  # type: ignore[no-any-return]


async def test_wait_answers_after_a_replica_holds_the_claim(
    redis_cluster, cluster_ops, cluster_redis, make_client, clock
):
    clock.set(T0_MS + 1000)
    client = await make_client(
        redis_url=redis_cluster.url,
        redis_cluster=True,
        redis_wait_replicas=1,
        redis_wait_timeout_ms=200,
    )
    campaign = await published(cluster_ops, stock=10)
    keys = keys_of(campaign)
    master = redis_cluster.master_of(keys.config)
    replica_port = int(_run(master, "INFO", "replication")["slave0"]["port"])
    replica = next(node for node in redis_cluster.nodes if node.port == replica_port)
    before = _unreplicated()

    status, data = await claim(client, "u1", campaign.id, request_id="req-waited")
    assert status == 200, data
    on_replica = _node_client(replica)
    try:
        on_replica.execute_command("READONLY")
        assert on_replica.exists(keys.request("req-waited")) == 1  # there before the answer
    finally:
        on_replica.close()
    assert _unreplicated() == before

    replica.signal(signal.SIGSTOP)  # a replica that cannot acknowledge
    try:
        status, data = await claim(client, "u2", campaign.id, request_id="req-unwaited")
        assert (status, data["reason"]) == (200, "ACCEPTED")  # answered as decided...
        assert _unreplicated() == before + 1  # ...and counted
    finally:
        replica.signal(signal.SIGCONT)
    await asyncio.to_thread(redis_cluster.wait_ok)
