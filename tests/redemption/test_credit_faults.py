"""The gateway SIGKILLed while orders paid with coupons and credit are being locked; the
shop retries every order it has no answer for: none lost, none held twice, the credit
ledger whole to the cent."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

from gateway.credit.ledger import Ledger
from gateway.credit.reconcile import reconcile
from gateway.credit.topups import Topups
from gateway.infra.clock import SystemClock
from gateway.infra.settings import Settings
from gateway.stack.servers import free_port, wait_for_port
from tests.credit.test_ledger import funded
from tests.helpers import DAY_MS, auth, child_env
from tests.redemption.conftest import use_body

USERS = 4
ORDERS = 10  # per user, each with its own coupon and 1 000 cents of credit
CREDIT = 1_000


async def test_locks_across_a_gateway_killed_mid_flight(
    settings: Settings, make_campaign, give, orders_pool: asyncpg.Pool, plans, credit_pool,
    tmp_path: Path,
) -> None:  # fmt: skip
    clock = SystemClock()
    topups = Topups(credit_pool, plans, clock)
    campaign = await make_campaign()
    now = clock.now_ms()
    users = [f"k{u}" for u in range(USERS)]
    coupons: dict[str, str] = {}
    for user in users:
        await funded(topups, user, pay=10_000)  # 10 500 each: ten orders of 1 000 fit
        for n in range(ORDERS):
            coupons[f"{user}-o{n}"] = await give(campaign, user, claimed_ms=now,
                                                 expires_ms=now + 7 * DAY_MS)  # fmt: skip
    port = free_port()
    env = child_env(settings, port=port, workers=1, lock_user_per_min=0, lock_ip_per_min=0,
                    metrics_dir=str(tmp_path / "metrics"), sweep_every_s=0)  # fmt: skip
    answers: dict[str, dict[str, Any]] = {}
    cut = 0
    first = asyncio.Event()

    async def gateway() -> asyncio.subprocess.Process:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "gateway.cli", "serve", env=env, start_new_session=True
        )
        await asyncio.to_thread(wait_for_port, port, 30)
        return process

    async def lock(session: aiohttp.ClientSession, order: str) -> None:
        nonlocal cut
        user = order.split("-")[0]
        body = use_body(order, [coupons[order]], creditCents=CREDIT)
        try:
            async with session.post(f"http://127.0.0.1:{port}/api/coupon/use", json=body,
                                    headers=auth(user)) as response:  # fmt: skip
                answer = await response.json()
                assert response.status == 200, answer
                answers[order] = answer
                first.set()
        except (TimeoutError, aiohttp.ClientError):
            cut += 1

    process = await gateway()
    try:
        async with aiohttp.ClientSession() as session:
            calls = [asyncio.create_task(lock(session, order)) for order in coupons]
            await asyncio.wait_for(first.wait(), 60)
            os.killpg(process.pid, signal.SIGKILL)  # mid-flight
            await asyncio.gather(*calls)
            await process.wait()
            assert cut, "the kill should have cut some locks off"
            process = await gateway()
            before = dict(answers)
            answers.clear()
            deadline = time.monotonic() + 120
            for order in coupons:  # the shop retries every order, answered ones too
                while order not in answers and time.monotonic() < deadline:
                    await lock(session, order)
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        await process.wait()
    assert set(answers) == set(coupons)
    assert all(answers[order] == answer for order, answer in before.items())  # replays
    assert {(a["reason"], a["creditCents"]) for a in answers.values()} == {("LOCKED", CREDIT)}
    holds = await orders_pool.fetchval("SELECT count(*) FROM credit_holds WHERE status = 'locked'")
    locks = await orders_pool.fetchval("SELECT count(*) FROM credit_entries WHERE kind = 'lock'")
    assert holds == locks == USERS * ORDERS  # none lost, none twice
    locked = await orders_pool.fetchval("SELECT count(*) FROM coupons WHERE status = 'locked'")
    assert locked == USERS * ORDERS
    ledger = Ledger(credit_pool, clock)
    for user in users:
        balance = await ledger.balance(user)
        assert (balance.available_cents, balance.held_cents) == (10_500 - ORDERS * CREDIT,
                                                                 ORDERS * CREDIT)  # fmt: skip
    report = await reconcile(credit_pool)
    assert report.ok, report
