"""PostgreSQL stopped and restarted in the middle of payments: the provider retries each
callback until it is answered, and every top-up is counted exactly once."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import asyncpg
import orjson
import pytest

from gateway.credit.api import STORAGE_ERRORS
from gateway.credit.ledger import Ledger
from gateway.credit.plan import decode_plan
from gateway.credit.reconcile import reconcile
from gateway.credit.store import PlanStore
from gateway.credit.topups import Topups, signature
from gateway.infra.clock import ManualClock, SystemClock
from gateway.infra.migrations import migrate_database
from gateway.infra.settings import Settings
from gateway.stack.servers import PostgresServer, free_port, wait_for_port
from tests.credit.conftest import PLAN
from tests.credit.test_api import SECRET
from tests.credit.test_ledger import member
from tests.helpers import child_env

PAYMENTS = 120


@pytest.fixture
async def own_postgres() -> AsyncIterator[PostgresServer]:
    home = Path(tempfile.mkdtemp(prefix="flashclaim-pg-"))  # outside root-only pytest dirs
    server = PostgresServer(home / "data")
    server.init().start()
    await migrate_database(server.url)
    yield server
    with contextlib.suppress(Exception):
        server.stop()
    shutil.rmtree(home, ignore_errors=True)


async def test_payments_across_a_postgres_restart(
    own_postgres: PostgresServer, clock: ManualClock
) -> None:
    pool = await asyncpg.create_pool(own_postgres.url, min_size=1, max_size=8)
    plans = PlanStore(pool)
    await plans.create(decode_plan(PLAN))
    topups = Topups(pool, plans, clock)
    orders = [
        await topups.create(member(f"u{i % 4}"), "double11", 10_000, f"req-restart-{i:04d}")
        for i in range(PAYMENTS)
    ]
    answered: dict[str, int] = {}
    failed: list[str] = []
    some_paid = asyncio.Event()

    async def provider(order_id: str) -> None:
        """Calls back until answered (and once more after: a duplicate delivery)."""
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                await topups.pay(order_id, f"wx-{order_id}", 10_000)
                answered[order_id] = answered.get(order_id, 0) + 1
                some_paid.set()
                if answered[order_id] == 2:
                    return
            except STORAGE_ERRORS:  # what the callback answers 503 for
                failed.append(order_id)
                await asyncio.sleep(0.05)  # the database is down: retry, as providers do

    calls = asyncio.gather(*(provider(o.topup_id) for o in orders))
    await asyncio.wait_for(some_paid.wait(), 30)
    await asyncio.to_thread(own_postgres.stop)  # mid-payment: connections cut off
    await asyncio.sleep(0.3)
    await asyncio.to_thread(own_postgres.start)
    await asyncio.wait_for(calls, 120)
    assert len(answered) == PAYMENTS
    assert failed, "the restart should have cut some payments off mid-flight"
    paid = await pool.fetchval("SELECT count(*) FROM credit_topups WHERE status = 'paid'")
    entries = await pool.fetchval("SELECT count(*) FROM credit_entries WHERE kind = 'topup'")
    assert paid == entries == PAYMENTS  # none lost, none twice
    ledger = Ledger(pool, clock)
    held = [await ledger.balance(f"u{u}") for u in range(4)]
    assert [b.principal_cents for b in held] == [10_000 * PAYMENTS // 4] * 4
    assert [b.bonus_cents for b in held] == [500 * PAYMENTS // 4] * 4
    report = await reconcile(pool)
    assert report.ok, report
    await pool.close()


async def test_payments_across_a_gateway_killed_mid_flight(
    settings: Settings, credit_pool: asyncpg.Pool, plans: PlanStore, tmp_path: Path
) -> None:
    """The gateway SIGKILLed while callbacks are in flight, started again; the provider
    resends every callback it has no answer for: each top-up is counted exactly once."""
    topups = Topups(credit_pool, plans, SystemClock())
    orders = [await topups.create(member(f"k{i % 4}"), "double11", 10_000, f"req-kill-{i:04d}")
              for i in range(PAYMENTS)]  # fmt: skip
    port = free_port()
    env = child_env(settings, port=port, workers=1, credit_payment_secret=SECRET,
                    metrics_dir=str(tmp_path / "metrics"))  # fmt: skip
    answered: set[str] = set()
    some_paid = asyncio.Event()
    cut = 0

    async def gateway() -> asyncio.subprocess.Process:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "gateway.cli", "serve", env=env, start_new_session=True
        )
        await asyncio.to_thread(wait_for_port, port, 30)
        return process

    async def callback(session: aiohttp.ClientSession, topup_id: str) -> None:
        nonlocal cut
        raw = orjson.dumps({"topupId": topup_id, "paymentId": f"wx-{topup_id}",
                            "amountCents": 10_000})  # fmt: skip
        headers = {"Content-Type": "application/json",
                   "X-Flashclaim-Signature": signature(SECRET, raw)}  # fmt: skip
        try:
            async with session.post(f"http://127.0.0.1:{port}/api/credit/payments", data=raw,
                                    headers=headers) as response:  # fmt: skip
                if response.status == 200:
                    answered.add(topup_id)
                    some_paid.set()
        except aiohttp.ClientError:
            cut += 1

    process = await gateway()
    async with aiohttp.ClientSession() as session:
        calls = [asyncio.create_task(callback(session, o.topup_id)) for o in orders]
        await asyncio.wait_for(some_paid.wait(), 30)
        os.killpg(process.pid, signal.SIGKILL)  # mid-flight
        await asyncio.gather(*calls)
        await process.wait()
        assert cut, "the kill should have cut some callbacks off"
        process = await gateway()
        try:
            for order in orders:  # the provider resends everything (answered ones too)
                await callback(session, order.topup_id)
        finally:
            os.killpg(process.pid, signal.SIGTERM)
            await process.wait()
    assert len(answered) == PAYMENTS
    entries = await credit_pool.fetchval("SELECT count(*) FROM credit_entries WHERE kind = 'topup'")
    assert entries == PAYMENTS
    principal = await credit_pool.fetchval(
        "SELECT sum(balance_cents) FROM credit_accounts WHERE kind = 'principal'"
    )
    assert principal == 10_000 * PAYMENTS
    assert (await reconcile(credit_pool)).ok
