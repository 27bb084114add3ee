"""Credit fixtures: the session's scratch database with the credit tables emptied."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest

from gateway.credit.ledger import Ledger
from gateway.credit.plan import decode_plan
from gateway.credit.store import PlanStore
from gateway.credit.topups import Topups
from gateway.infra.clock import ManualClock

#: Empties the credit tables but for the system accounts (the migration's rows).
CREDIT_RESET = (
    "TRUNCATE credit_events, credit_hold_parts, credit_holds, credit_lines, credit_entries,"
    " credit_topups, credit_plans RESTART IDENTITY CASCADE;"
    " DELETE FROM credit_accounts WHERE kind <> 'system'"
)

PLAN = {
    "id": "double11",
    "name": "Top up 500, get 550",
    "tiers": [{"payCents": 10_000, "bonusCents": 500}, {"payCents": 50_000, "bonusCents": 5_000}],
    "levelBonus": [{"minLevel": 3, "bonusPercent": 2}],
    "gifts": {"newUserCents": 1_000, "levels": [{"level": 5, "bonusCents": 2_000}]},
    "bonusValidDays": 30,
    "withdrawals": True,
}


@pytest.fixture
async def credit_pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=20)
    await pool.execute(CREDIT_RESET)
    yield pool
    await pool.close()


@pytest.fixture
def ledger(credit_pool: asyncpg.Pool, clock: ManualClock) -> Ledger:
    return Ledger(credit_pool, clock)


@pytest.fixture
async def plans(credit_pool: asyncpg.Pool) -> PlanStore:
    store = PlanStore(credit_pool)
    await store.create(decode_plan(PLAN))
    return store


@pytest.fixture
def topups(credit_pool: asyncpg.Pool, plans: PlanStore, clock: ManualClock) -> Topups:
    return Topups(credit_pool, plans, clock)
