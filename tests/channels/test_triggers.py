"""Event triggers and sky-drop: rules, conditions, and each cause granting once."""

from __future__ import annotations

import asyncio
import json

import pytest

from gateway.campaigns.ops import keys_of
from gateway.channels.event_consumer import consume
from tests.channels.conftest import outbox_users
from tests.helpers import ADMIN_TOKEN, T0_MS, auth, published

EVENTS_TOKEN = "test-events-token-0123456789abcdef"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
SERVICE = {"Authorization": f"Bearer {EVENTS_TOKEN}"}


async def put_rule(client, rule_id, **rule):
    response = await client.put(
        f"/admin/triggers/{rule_id}", json={"ruleId": rule_id, **rule}, headers=ADMIN
    )
    assert response.status == 200, await response.text()


@pytest.fixture
async def gateway(make_client, clock):
    clock.set(T0_MS + 1)
    return await make_client(events_token=EVENTS_TOKEN, trigger_cache_ms=0)


async def test_the_same_event_twice_grants_once(gateway, ops, redis, pool):
    await pool.execute("DELETE FROM trigger_rules")
    campaign = await published(ops, stock=10, perUserLimit=5)
    await put_rule(
        gateway, "late-delivery", kind="event", eventType="delivery_late",
        campaignId=campaign.id, conditions={"minutesLate": {"min": 30}, "vip": True},
    )  # fmt: skip
    event = {"eventId": "order-991-late", "type": "delivery_late", "userId": "alice",
             "attributes": {"minutesLate": 45, "vip": True}}  # fmt: skip
    first = await gateway.post("/api/events", json=event, headers=SERVICE)
    again = await gateway.post("/api/events", json=event, headers=SERVICE)
    one, two = await first.json(), await again.json()
    assert first.status == again.status == 200
    [grant] = one["grants"]
    assert grant["reason"] == "ACCEPTED"
    assert grant["campaignId"] == campaign.id
    assert two["grants"][0]["couponId"] == grant["couponId"]
    assert two["grants"][0]["replayed"] is True
    assert await outbox_users(redis, keys_of(campaign).outbox) == ["alice"]

    # Conditions not met, another type: nothing.
    short = {**event, "eventId": "order-992-late", "attributes": {"minutesLate": 10, "vip": True}}
    other = {**event, "eventId": "order-993", "type": "cart_abandoned"}
    for body in (short, other):
        response = await gateway.post("/api/events", json=body, headers=SERVICE)
        assert (await response.json())["grants"] == []
    assert await outbox_users(redis, keys_of(campaign).outbox) == ["alice"]
    [entry] = await redis.xrange(keys_of(campaign).outbox)
    assert entry[1]["channel"] == "event"


async def test_an_event_vouching_for_the_audience_grants_an_audience_campaign(
    gateway, ops, redis, pool
):
    """Without audience facts an event's user is nobody in particular (NOT_ELIGIBLE for a
    tags/level/new-user campaign); the sending service may state them, as a token would."""
    await pool.execute("DELETE FROM trigger_rules")
    campaign = await published(
        ops, stock=10, audience={"newUsersOnly": True, "minLevel": 3, "tags": ["vip"]}
    )
    await put_rule(gateway, "welcome", kind="event", eventType="signed_up", campaignId=campaign.id)
    facts = {"newUser": True, "level": 3, "tags": ["vip"], "city": "shanghai"}
    bare = {"eventId": "signup-0001", "type": "signed_up", "userId": "dora"}
    vouched = {**bare, "eventId": "signup-0002", "audience": facts}
    too_low = {**bare, "eventId": "signup-0003", "userId": "erin",
               "audience": {**facts, "level": 2}}  # fmt: skip
    answers = []
    for body in (bare, vouched, too_low):
        response = await gateway.post("/api/events", json=body, headers=SERVICE)
        assert response.status == 200
        answers.append((await response.json())["grants"][0]["reason"])
    assert answers == ["NOT_ELIGIBLE", "ACCEPTED", "NOT_ELIGIBLE"]
    assert await outbox_users(redis, keys_of(campaign).outbox) == ["dora"]
    response = await gateway.post(
        "/api/events", json={**bare, "audience": {"level": 101}}, headers=SERVICE
    )
    assert (response.status, (await response.json())["reason"]) == (422, "INVALID_REQUEST")


async def test_events_need_the_service_token(gateway, make_client):
    body = {"eventId": "evt-00000001", "type": "x", "userId": "alice"}
    for headers in ({}, auth("alice"), {"Authorization": "Bearer wrong"}):
        response = await gateway.post("/api/events", json=body, headers=headers)
        assert response.status == 401
    off = await make_client()  # no FLASHCLAIM_EVENTS_TOKEN: the endpoint is off
    response = await off.post("/api/events", json=body, headers=SERVICE)
    assert response.status == 401


async def test_events_on_the_topic_grant_once_with_the_http_ones(
    kafka_settings, gateway, ops, redis, pool, clock
):
    from aiokafka import AIOKafkaProducer

    await pool.execute("DELETE FROM trigger_rules")
    campaign = await published(ops, stock=10, perUserLimit=5)
    await put_rule(
        gateway, "cart", kind="event", eventType="cart_abandoned", campaignId=campaign.id
    )
    settings = kafka_settings
    event = {"eventId": "cart-77-abandoned", "type": "cart_abandoned", "userId": "bob"}
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap)
    await producer.start()
    try:
        for raw in (json.dumps(event), "not json", json.dumps(event)):
            await producer.send_and_wait(settings.events_topic, raw.encode())
    finally:
        await producer.stop()
    response = await gateway.post("/api/events", json=event, headers=SERVICE)
    assert (await response.json())["grants"][0]["reason"] == "ACCEPTED"

    stop = asyncio.Event()
    task = asyncio.create_task(consume(settings, stop))
    try:
        for _ in range(100):  # the three messages read and committed
            await asyncio.sleep(0.1)
            if await _committed(settings) >= 3:
                break
    finally:
        stop.set()
        await task
    assert await _committed(settings) >= 3
    assert await outbox_users(redis, keys_of(campaign).outbox) == ["bob"]


async def _committed(settings) -> int:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap, group_id=settings.events_group
    )
    await consumer.start()
    try:
        partitions = consumer.partitions_for_topic(settings.events_topic) or {0}
        total = 0
        for p in partitions:
            total += await consumer.committed(TopicPartition(settings.events_topic, p)) or 0
        return total
    finally:
        await consumer.stop()


async def test_skydrop_claims_at_most_k_and_a_retry_gets_the_same(
    gateway, make_client, ops, redis, pool
):
    await pool.execute("DELETE FROM trigger_rules")
    campaigns = [await published(ops, stock=10) for _ in range(3)]
    never = await published(ops, stock=10)
    shanghai_only = await published(ops, stock=10)
    for c in campaigns:
        await put_rule(gateway, f"sd-{c.id}", kind="skydrop", campaignId=c.id)
    await put_rule(gateway, "sd-never", kind="skydrop", campaignId=never.id, probability=0)
    await put_rule(gateway, "sd-sh", kind="skydrop", campaignId=shanghai_only.id,
                   conditions={"city": "shanghai"})  # fmt: skip
    two = await make_client(events_token=EVENTS_TOKEN, trigger_cache_ms=0, skydrop_max_grants=2)
    body = {"requestId": "open-0000001", "deviceId": "dev-1", "channel": "app", "city": "beijing"}
    first = await (await two.post("/api/skydrop/open", json=body, headers=auth("carol"))).json()
    again = await (await two.post("/api/skydrop/open", json=body, headers=auth("carol"))).json()
    assert len(first["dropped"]) == 2
    assert {d["campaignId"] for d in first["dropped"]} <= {c.id for c in campaigns}
    assert [d["couponId"] for d in again["dropped"]] == [d["couponId"] for d in first["dropped"]]
    issued = [int(await redis.hget(keys_of(c).counters, "issued") or 0) for c in campaigns]
    assert sum(issued) == 2
    for c in (never, shanghai_only):
        assert int(await redis.hget(keys_of(c).counters, "issued") or 0) == 0


async def test_skydrop_first_n_opens(gateway, ops, redis, pool):
    await pool.execute("DELETE FROM trigger_rules")
    campaign = await published(ops, stock=10, perUserLimit=10)
    await put_rule(gateway, "first-2", kind="skydrop", campaignId=campaign.id, firstOpens=2)
    fell = []
    for n in range(4):
        body = {"requestId": f"open-dave-{n:04d}", "deviceId": "dev-2", "channel": "app"}
        answer = await (
            await gateway.post("/api/skydrop/open", json=body, headers=auth("dave"))
        ).json()
        fell.append(len(answer["dropped"]))
    assert fell == [1, 1, 0, 0]


@pytest.mark.parametrize(
    "rule",
    [
        {"kind": "event", "campaignId": "c1"},  # an event rule needs its event type
        {"kind": "skydrop", "campaignId": "c1", "eventType": "x"},
        {"kind": "skydrop", "campaignId": "c1", "probability": 1.5},
        {"kind": "bogus", "campaignId": "c1"},
    ],
)
async def test_bad_rules_are_refused(gateway, rule):
    response = await gateway.put("/admin/triggers/r1", json={"ruleId": "r1", **rule}, headers=ADMIN)
    assert response.status == 422
