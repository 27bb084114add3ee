"""The sweeper, voids and expiry reminders: each transition recorded once, with its event."""

from __future__ import annotations

import asyncio
import time
import uuid

import asyncpg
import msgspec
import orjson
from aiokafka import AIOKafkaConsumer, ConsumerRecord

from gateway.claim.events import ClaimEvent
from gateway.handoff.persist import insert_claims
from gateway.infra.clock import ManualClock
from gateway.ops.recover import outbox_claims
from gateway.redemption import orders
from gateway.redemption.cart import UseRequest
from gateway.redemption.ledger import use_report
from gateway.redemption.operators import expiring, void_coupons
from gateway.redemption.sweep import Swept, run_sweeper, sweep
from tests.helpers import ADMIN_TOKEN, DAY_MS, T0_MS, auth, child_env, claim, flashclaim, open_now
from tests.redemption.conftest import CART, use_body

NOW = T0_MS + 3_600_000
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


async def lock(pool, order: str, coupons: list[str], now_ms: int = NOW) -> None:
    async with pool.acquire() as conn:
        await orders.lock(conn, "u1", msgspec.convert(use_body(order, coupons), UseRequest),
                          now_ms=now_ms, ttl_ms=900_000, new_user=False)  # fmt: skip


async def transitions(pool) -> list[str]:
    rows = await pool.fetch("SELECT transition FROM coupon_events ORDER BY event_id")
    return [r["transition"] for r in rows]


async def test_the_sweeper_records_lock_and_coupon_expiries_once(orders_pool, make_campaign, give):
    campaign = await make_campaign()
    locked = await give(campaign)
    short = await give(campaign, expires_ms=NOW + 60_000)
    await lock(orders_pool, "o-1", [locked])
    assert await sweep(orders_pool, NOW) == Swept(0, 0)
    swept = await sweep(orders_pool, NOW + 900_000)
    assert (swept.locks_expired, swept.coupons_expired) == (1, 1)
    assert await sweep(orders_pool, NOW + 900_000) == Swept(0, 0)
    statuses = dict(await orders_pool.fetch("SELECT coupon_id::text, status FROM coupons"))
    assert statuses == {locked: "unused", short: "expired"}
    assert await transitions(orders_pool) == ["lock", "lock_expire", "expire"]
    order = await orders_pool.fetchval("SELECT status FROM coupon_orders")
    assert order == "expired"


async def test_the_gateway_sweeper_runs_on_the_clock(orders_pool, make_campaign, give):
    coupon = await give(await make_campaign())
    await lock(orders_pool, "o-1", [coupon])
    clock = ManualClock(NOW + 900_000)
    stop = asyncio.Event()
    task = asyncio.create_task(run_sweeper(orders_pool, clock, 0.05, stop))
    for _ in range(100):
        if await orders_pool.fetchval("SELECT status FROM coupon_orders") == "expired":
            break
        await asyncio.sleep(0.05)
    stop.set()
    await task
    assert await transitions(orders_pool) == ["lock", "lock_expire"]


async def test_void_takes_only_unused_coupons(orders_pool, make_campaign, give):
    campaign = await make_campaign()
    unused, held = await give(campaign), await give(campaign)
    await lock(orders_pool, "o-1", [held])
    assert await void_coupons(orders_pool, NOW, "fraud", campaign_id=campaign.id) == 1
    assert await void_coupons(orders_pool, NOW, "again", coupon_id=unused) == 0
    statuses = dict(await orders_pool.fetch("SELECT coupon_id::text, status FROM coupons"))
    assert statuses == {unused: "voided", held: "locked"}
    reason = await orders_pool.fetchval("SELECT void_reason FROM coupons WHERE status = 'voided'")
    assert reason == "fraud"


async def test_void_through_the_admin_api(client, orders_pool, make_campaign, give, clock):
    clock.set(NOW)
    coupon = await give(await make_campaign())
    response = await client.post(f"/admin/coupons/{coupon}/void", json={"reason": "typo"},
                                 headers=ADMIN)  # fmt: skip
    assert (response.status, await response.json()) == (200, {"code": 0, "voided": 1})
    wallet = await (await client.get("/api/coupons", headers={"Authorization": "Bearer x"})).json()
    assert wallet["reason"] == "UNAUTHORIZED"
    response = await client.post("/admin/coupons/nope/void", json={"reason": "x"}, headers=ADMIN)
    assert response.status == 404


async def test_expiring_lists_unused_coupons_soonest_first(orders_pool, make_campaign, give):
    campaign = await make_campaign()
    later = await give(campaign, expires_ms=NOW + 20 * 3_600_000)
    sooner = await give(campaign, expires_ms=NOW + 3_600_000)
    await give(campaign, expires_ms=NOW + 48 * 3_600_000)
    found = await expiring(orders_pool, NOW, 24 * 3_600_000)
    assert [c.coupon_id for c in found] == [sooner, later]


async def test_expiring_publishes_reminders_the_push_service_reads_back(
    orders_pool, make_campaign, give, kafka_settings
):
    """``flashclaim expiring --within 24h --publish`` in a child process, on the wall clock:
    one event per unused coupon expiring within the day, keyed by its user, on the real
    broker; a coupon expiring later, a used one and a voided one get none."""
    campaign = await make_campaign(**open_now())
    now = int(time.time() * 1000)
    soon = await give(campaign, "u1", claimed_ms=now, expires_ms=now + 3_600_000)
    today = await give(campaign, "u2", claimed_ms=now, expires_ms=now + 20 * 3_600_000)
    await give(campaign, "u3", claimed_ms=now, expires_ms=now + 48 * 3_600_000)
    used = await give(campaign, "u1", claimed_ms=now, expires_ms=now + 3_600_000)
    await lock(orders_pool, "o-used", [used], now_ms=now)
    voided = await give(campaign, "u4", claimed_ms=now, expires_ms=now + 3_600_000)
    await void_coupons(orders_pool, now, "test", coupon_id=voided)
    settings = msgspec.structs.replace(
        kafka_settings, reminders_topic=f"{kafka_settings.claims_topic}-reminders"
    )
    done = await asyncio.to_thread(flashclaim, child_env(settings), "expiring", "--within", "24h",
                                   "--publish")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "published 2 reminder(s)" in done.stderr
    assert [orjson.loads(line)["couponId"] for line in done.stdout.splitlines()] == [soon, today]

    reader = AIOKafkaConsumer(settings.reminders_topic, bootstrap_servers=settings.kafka_bootstrap,
                              auto_offset_reset="earliest", group_id=None)  # fmt: skip
    await reader.start()
    try:
        read: list[ConsumerRecord[bytes, bytes]] = []
        deadline = time.monotonic() + 30
        while len(read) < 2 and time.monotonic() < deadline:
            batch = await reader.getmany(timeout_ms=1000)
            read += [m for messages in batch.values() for m in messages]
    finally:
        await reader.stop()
    events = [(orjson.loads(m.value), m.key) for m in read if m.value is not None]
    wanted = [
        ({"couponId": soon, "campaignId": campaign.id, "userId": "u1",
          "expiresAtMs": now + 3_600_000}, b"u1"),
        ({"couponId": today, "campaignId": campaign.id, "userId": "u2",
          "expiresAtMs": now + 20 * 3_600_000}, b"u2"),
    ]  # fmt: skip
    assert sorted(events, key=lambda e: e[1]) == wanted


async def test_a_campaign_void_reaches_coupons_not_stored_yet(
    client, clock, orders_pool, make_campaign, give, redis
):
    """Claims answered but not stored when the campaign is voided: the wallet shows them
    voided at once, a lock refuses them (its write-through finds them voided, and goes
    with the refused transaction), and the consumer stores them voided, each with its
    event; a claim after the void is not touched, and the use ledger holds every row
    against its events."""
    campaign = await make_campaign(stock=10, perUserLimit=1)
    clock.set(NOW)
    stored = await give(campaign, "u0", claimed_ms=NOW - 1000)
    on_the_way = {}
    for user in ("u1", "u2"):
        status, claimed = await claim(client, user, campaign.id)
        assert status == 200, claimed
        on_the_way[user] = claimed["couponId"]
    clock.set(NOW + 1000)
    assert await void_coupons(orders_pool, NOW + 1000, "fraud wave", campaign_id=campaign.id) == 1
    clock.set(NOW + 2000)
    status, late = await claim(client, "u3", campaign.id)  # after the void: not voided
    assert status == 200, late

    wallet = await (await client.get("/api/coupons", headers=auth("u1"))).json()
    assert [(c["couponId"], c["status"]) for c in wallet["coupons"]] == [
        (on_the_way["u1"], "voided")
    ]
    quoted = await (await client.post("/api/checkout/quote", json=CART, headers=auth("u1"))).json()
    assert quoted["best"]["couponIds"] == []
    response = await client.post("/api/coupon/use", json=use_body("o-1", [on_the_way["u1"]]),
                                 headers=auth("u1"))  # fmt: skip
    assert (response.status, (await response.json())["reason"]) == (409, "COUPON_VOIDED")

    async with orders_pool.acquire() as conn:  # the consumer, late, with the whole outbox
        assert await insert_claims(conn, await outbox_claims(redis, campaign)) == 3
    rows = await orders_pool.fetch("SELECT coupon_id::text, status, void_reason FROM coupons")
    assert {r["coupon_id"]: (r["status"], r["void_reason"]) for r in rows} == {
        stored: ("voided", "fraud wave"),
        on_the_way["u1"]: ("voided", "fraud wave"),
        on_the_way["u2"]: ("voided", "fraud wave"),
        late["couponId"]: ("unused", None),
    }
    assert await transitions(orders_pool) == ["void"] * 3
    report = await use_report(orders_pool, campaign.id, None)
    assert (report.voided, report.drifted) == (3, 0)


async def test_a_campaign_void_racing_the_consumer_misses_nothing(
    database_url, orders_pool, make_campaign
):
    """Batches stored while the campaign is voided (each transaction slow to commit): every
    coupon claimed before the void ends voided, whichever committed first."""
    campaign = await make_campaign()
    pool = await asyncpg.create_pool(database_url, min_size=12, max_size=12)

    async def batch(n: int) -> None:
        await asyncio.sleep(0.01 * n)
        events = [
            ClaimEvent(
                coupon_id=str(uuid.uuid4()),
                campaign_id=campaign.id,
                user_id=f"u{n}-{i}",
                device_id="dev-1",
                request_id=f"r{n}-{i}",
                channel="seckill",
                value_cents=campaign.value_cents,
                claimed_at_ms=NOW - 1000,
                expires_at_ms=NOW + DAY_MS,
            )
            for i in range(50)
        ]
        async with pool.acquire() as conn, conn.transaction():
            await insert_claims(conn, events)
            await asyncio.sleep(0.05)  # uncommitted while the void runs

    try:
        inserts = asyncio.gather(*(batch(n) for n in range(10)))
        await asyncio.sleep(0.04)
        await void_coupons(pool, NOW, "ended early", campaign_id=campaign.id)
        await inserts
    finally:
        await pool.close()
    counts = await orders_pool.fetch("SELECT status, count(*) FROM coupons GROUP BY 1")
    assert {r["status"]: r["count"] for r in counts} == {"voided": 500}
    assert await orders_pool.fetchval("SELECT count(*) FROM coupon_events") == 500
