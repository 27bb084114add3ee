"""Faults in the middle of using coupons: the gateway killed between a lock and its answer,
PostgreSQL restarted mid-use, Redis restored from an older AOF and recovered.

Each test ends on the same invariants, read from PostgreSQL: every coupon is locked or
used by one order at most, once (one ``lock`` event per coupon and order), every answer a
client got still stands, and a retry of the same request gets the same answer.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import msgspec

from gateway.campaigns.ops import CampaignOps
from gateway.campaigns.spec import Campaign, decode_spec
from gateway.campaigns.store import CampaignStore
from gateway.claim.events import ClaimEvent
from gateway.handoff.persist import insert_claims
from gateway.infra.clock import ManualClock
from gateway.infra.settings import Settings
from gateway.ops.recover import recover
from gateway.stack.servers import PostgresServer, free_port
from tests.handoff.test_faults import claims_from, drained
from tests.helpers import DAY_MS, T0_MS, auth, child_env, open_now, spec, start_gateway
from tests.pipeline import running_consumer, running_relay
from tests.redemption.conftest import CART, MakeCampaign, use_body

NOW = T0_MS + 3_600_000


async def store(pool: asyncpg.Pool, campaign: Campaign, user: str, now_ms: int) -> str:
    """A coupon of ``campaign`` for ``user`` stored as the consumer stores it; its id."""
    event = ClaimEvent(coupon_id=str(uuid.uuid4()), campaign_id=campaign.id, user_id=user,
                       device_id="dev-1", request_id=f"req-{user}", channel="seckill",
                       value_cents=campaign.value_cents, claimed_at_ms=now_ms - 60_000,
                       expires_at_ms=now_ms + 7 * DAY_MS)  # fmt: skip
    async with pool.acquire() as conn:
        assert await insert_claims(conn, [event]) == 1
    return event.coupon_id


async def locked_once(
    pool: asyncpg.Pool, orders: dict[str, str], status: str, unused: int = 0
) -> None:
    """Each order holds its one coupon in ``status``, locked by one ``lock`` event; the
    ``unused`` other coupons are untouched."""
    rows = await pool.fetch(
        "SELECT coupon_id::text, status, order_id FROM coupons WHERE status <> 'unused'"
    )
    assert await pool.fetchval("SELECT count(*) FROM coupons WHERE status = 'unused'") == unused
    assert {r["coupon_id"]: (r["status"], r["order_id"]) for r in rows} == {
        coupon: (status, order) for order, coupon in orders.items()
    }
    locks = await pool.fetch(
        "SELECT coupon_id::text, order_id FROM coupon_events WHERE transition = 'lock'"
    )
    assert Counter((r["coupon_id"], r["order_id"]) for r in locks) == {
        (coupon, order): 1 for order, coupon in orders.items()
    }, "a coupon was locked twice"
    assert await pool.fetchval("SELECT count(*) FROM coupon_orders") == len(orders)


async def committed(pool: asyncpg.Pool, count: int) -> None:
    """Return once ``count`` orders are locked in PostgreSQL (answered or not yet)."""
    while await pool.fetchval("SELECT count(*) FROM coupon_orders") < count:  # noqa: ASYNC110
        await asyncio.sleep(0.002)  # another process commits them: nothing to await here


async def frozen_after_a_commit(pid: int, pool: asyncpg.Pool, answered: dict[str, Any],
                                total: int) -> None:  # fmt: skip
    """Freeze the gateway (SIGSTOP) each time a lock commits, until one is frozen after
    its commit and before its answer reached the client (or every lock committed)."""
    while (seen := await pool.fetchval("SELECT count(*) FROM coupon_orders")) < total:
        await asyncio.wait_for(committed(pool, seen + 1), 60)
        os.killpg(pid, signal.SIGSTOP)
        await asyncio.sleep(0.2)  # answers already sent reach the client meanwhile
        stored = await pool.fetch("SELECT order_id FROM coupon_orders")
        if {r["order_id"] for r in stored} - answered.keys():
            return  # frozen between a commit and its answer: the caller kills it so
        os.killpg(pid, signal.SIGCONT)


async def test_gateway_killed_between_lock_and_answer(
    settings: Settings, make_campaign: MakeCampaign, orders_pool: asyncpg.Pool, tmp_path: Path
) -> None:
    """Locks in flight when the gateway is SIGKILLed, frozen just after a lock committed
    and before its answer went out. The client then retries every order on a new
    gateway: each gets LOCKED, an order answered before gets that same answer, and each
    coupon was locked once."""
    campaign = await make_campaign(**open_now())
    now_ms = int(time.time() * 1000)
    orders = {f"o-{i}": await store(orders_pool, campaign, f"k{i}", now_ms) for i in range(120)}
    port = free_port()
    env = child_env(settings, port=port, workers=1, metrics_dir=str(tmp_path / "metrics"))
    first: dict[str, Any] = {}

    async def lock(session: aiohttp.ClientSession, order: str) -> tuple[int, Any] | None:
        user = f"k{order.removeprefix('o-')}"
        try:
            async with session.post(f"http://127.0.0.1:{port}/api/coupon/use",
                                    json=use_body(order, [orders[order]]),
                                    headers=auth(user)) as response:  # fmt: skip
                return response.status, await response.json()
        except aiohttp.ClientError:
            return None

    async def first_try(session: aiohttp.ClientSession, order: str) -> None:
        answer = await lock(session, order)
        if answer is not None:
            first[order] = answer

    tried: list[str] = []
    unanswered: set[str] = set()
    async with aiohttp.ClientSession() as session:
        for round_ in range(3):
            batch = list(orders)[round_ * 40 : round_ * 40 + 40]
            tried += batch
            gateway = await start_gateway(env, port)
            calls = [asyncio.create_task(first_try(session, order)) for order in batch]
            await frozen_after_a_commit(gateway.pid, orders_pool, first, len(tried))
            os.killpg(gateway.pid, signal.SIGKILL)  # frozen: answers not yet written are lost
            await asyncio.gather(*calls)
            await gateway.wait()
            stored = await orders_pool.fetch("SELECT order_id FROM coupon_orders")
            unanswered = {r["order_id"] for r in stored} - set(first)
            if unanswered:
                break
        assert unanswered, "no kill fell between a lock's commit and its answer"
        assert len(first) < len(tried), "the kill should have cut some locks off"
        gateway = await start_gateway(env, port)
        try:
            again = {order: await lock(session, order) for order in tried}
        finally:
            os.killpg(gateway.pid, signal.SIGTERM)
            await gateway.wait()
    assert all(a is not None and a[0] == 200 for a in again.values()), again
    assert all(again[o][1]["reason"] == "LOCKED" for o in unanswered)  # type: ignore[index]
    for order, (status, body) in first.items():
        assert status == 200, body
        assert again[order] == (200, body), "a retry got another answer"
    await locked_once(orders_pool, {o: orders[o] for o in tried}, "locked", unused=120 - len(tried))


async def test_postgres_restarted_mid_use(
    own_postgres: PostgresServer, redis: Any, make_client: Any, clock: ManualClock
) -> None:
    """PostgreSQL stopped and started again while orders lock and confirm: what fails is
    refused 503 UNAVAILABLE (never a 500), nothing is left half-done, and each client's
    retry of the same request succeeds: every coupon used once by its order."""
    clock.set(NOW)
    pool = await asyncpg.create_pool(own_postgres.url, min_size=1, max_size=4)
    try:
        ops = CampaignOps(CampaignStore(pool), redis, clock)
        campaign = await ops.publish((await ops.create(decode_spec(spec()))).id)
        orders = {f"o-{i}": await store(pool, campaign, f"p{i}", NOW) for i in range(60)}
        client = await make_client(database_url=own_postgres.url)
        refused: list[Any] = []
        some_confirmed = asyncio.Event()

        async def until_answered(path: str, user: str, body: Any = None) -> Any:
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline:
                response = await client.post(path, json=body, headers=auth(user))
                data = await response.json()
                if response.status != 503:
                    assert response.status == 200, data
                    return data
                refused.append(data["reason"])
                await asyncio.sleep(0.05)
            raise AssertionError(f"{path} never answered")

        async def checkout(order: str) -> None:
            user = f"p{order.removeprefix('o-')}"
            body = use_body(order, [orders[order]])
            assert (await until_answered("/api/coupon/use", user, body))["reason"] == "LOCKED"
            confirmed = await until_answered(f"/api/coupon/use/{order}/confirm", user)
            assert confirmed["reason"] == "CONFIRMED"
            some_confirmed.set()

        calls = asyncio.gather(*(checkout(order) for order in orders))
        await asyncio.wait_for(some_confirmed.wait(), 60)
        await asyncio.to_thread(own_postgres.stop)  # mid-use: sessions cut off
        await asyncio.sleep(0.5)
        await asyncio.to_thread(own_postgres.start)
        await asyncio.wait_for(calls, 120)
        assert refused, "the restart should have refused some requests"
        assert set(refused) == {"UNAVAILABLE"}
        await locked_once(pool, orders, "used")
        confirms = await pool.fetchval(
            "SELECT count(*) FROM coupon_events WHERE transition = 'confirm'"
        )
        assert confirms == len(orders)
        half = await pool.fetchval("SELECT count(*) FROM coupon_orders WHERE status <> 'confirmed'")
        assert half == 0
    finally:
        await pool.close()


async def test_redis_restored_from_an_older_aof_then_recovered(
    own_redis: Any,
    make_client: Any,
    orders_pool: asyncpg.Pool,
    clock: ManualClock,
    kafka_overrides: dict[str, Any],
    database_url: str,
    tmp_path: Path,
) -> None:
    """Redis goes back to an AOF from before some claims were relayed and before some
    coupons were used; after ``recover`` the wallet, the quote and the lock still see every
    coupon whose claim was answered, in its state in PostgreSQL: a used coupon is not
    offered or locked again, the outbox's late copies store nothing."""
    server, own, redis, ops = own_redis
    settings = msgspec.structs.replace(own, **kafka_overrides)
    clock.set(T0_MS + 1000)
    client = await make_client(redis_url=server.url)
    campaign = await ops.publish((await ops.create(decode_spec(spec(stock=100)))).id)
    first = await claims_from(client, campaign, range(20))
    shutil.copytree(server.data_dir, tmp_path / "older")  # first's claims still in the outbox
    second = await claims_from(client, campaign, range(20, 40))
    async with running_consumer(settings, database_url), running_relay(settings, redis):
        await drained(redis, orders_pool, campaign)
    clock.set(NOW)
    held = {
        f"user-{n}": c["couponId"]
        for n in range(40)
        for c in (await (await client.get("/api/coupons", headers=auth(f"user-{n}"))).json())[
            "coupons"
        ]
    }
    assert set(held.values()) == first | second
    used = [f"user-{n}" for n in (*range(10), *range(20, 30))]
    for user in used:
        body = use_body(f"order-{user}", [held[user]])
        answer = await (await client.post("/api/coupon/use", json=body, headers=auth(user))).json()
        assert answer["reason"] == "LOCKED", answer
        response = await client.post(f"/api/coupon/use/order-{user}/confirm", headers=auth(user))
        assert response.status == 200

    server.kill()
    shutil.rmtree(server.data_dir)
    shutil.copytree(tmp_path / "older", server.data_dir)
    server.start()
    result = await recover(ops, orders_pool, redis, ManualClock(NOW), settings, campaign.id)
    assert (result.issued, result.persisted) == (40, 40)

    for n in range(40):
        user = f"user-{n}"
        wallet = await (await client.get("/api/coupons", headers=auth(user))).json()
        status = "used" if user in used else "unused"
        assert [(c["couponId"], c["status"]) for c in wallet["coupons"]] == [(held[user], status)]
        quoted = await (await client.post("/api/checkout/quote", json=CART,
                                          headers=auth(user))).json()  # fmt: skip
        assert quoted["best"]["couponIds"] == ([] if user in used else [held[user]])
    again = await client.post("/api/coupon/use", json=use_body("again", [held["user-0"]]),
                              headers=auth("user-0"))  # fmt: skip
    assert (again.status, (await again.json())["reason"]) == (409, "COUPON_USED")
    fresh = await client.post("/api/coupon/use", json=use_body("late", [held["user-15"]]),
                              headers=auth("user-15"))  # fmt: skip
    assert (await fresh.json())["reason"] == "LOCKED"

    # The older AOF's outbox sends the first claims again: the consumer stores nothing new.
    async with running_consumer(settings, database_url), running_relay(settings, redis):
        await drained(redis, orders_pool, campaign)
    rows = await orders_pool.fetch("SELECT status, count(*) FROM coupons GROUP BY 1")
    counts = {r["status"]: r["count"] for r in rows}
    assert counts == {"used": 20, "locked": 1, "unused": 19}
    assert await orders_pool.fetchval("SELECT count(*) FROM coupon_events") == 41
