"""Campaigns in PostgreSQL: specs round-trip, and rows of the old column layout migrate."""

from __future__ import annotations

import asyncpg
import msgspec

from gateway.campaigns.spec import decode_spec
from gateway.campaigns.store import CampaignStore
from gateway.infra.migrations import migrate, migrations_dir
from gateway.stack.servers import drop_database
from tests.conftest import POSTGRES_URL
from tests.helpers import spec


async def test_a_spec_round_trips_and_top_up_adds_in_sql(pool):
    store = CampaignStore(pool)
    written = decode_spec(
        spec(id="rt-1", stock=10, budgetCents=100_000, audience={"minLevel": 2, "tags": ["vip"]})
    )
    created = await store.create(written)
    assert (created.status, created.version) == ("draft", 1)
    assert await store.get("rt-1") == created
    topped = await store.top_up("rt-1", 5, 2_000)
    assert (topped.stock, topped.budget_cents, topped.version) == (15, 102_000, 2)
    no_budget = await store.create(decode_spec(spec(id="rt-2", stock=3)))
    assert (await store.top_up(no_budget.id, 1, 500)).budget_cents is None


async def test_rows_of_the_column_layout_migrate_into_specs():
    """A database made before migration 0003 keeps its campaigns, field for field."""
    admin = await asyncpg.connect(POSTGRES_URL)
    name = "flashclaim_test_migrate_0003"
    await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    url = POSTGRES_URL.rsplit("/", 1)[0] + f"/{name}"
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(
            "CREATE TABLE schema_migrations (name text PRIMARY KEY,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        for old in ("0001_campaigns.sql", "0002_coupons.sql"):
            await conn.execute((migrations_dir() / old).read_text())
            await conn.execute("INSERT INTO schema_migrations (name) VALUES ($1)", old)
        await conn.execute(
            """
            INSERT INTO campaigns (id, name, kind, face_value_cents, threshold_cents, stock,
                daily_stock, budget_cents, per_user_limit, per_device_limit, starts_at, ends_at,
                time_zone, validity, audience, exclusion_group, channels, status, version)
            VALUES ('old-1', 'Old: 30 off 200', 'cash_off', 3000, 20000, 500, 100, 90000, 2, 3,
                '2026-11-11T00:00:00+08:00', '2026-11-12T00:00:00+08:00', 'Asia/Shanghai',
                '{"mode": "days_after_claim", "days": 3}', '{"newUsersOnly": true, "minLevel": 1,
                "tags": ["vip"]}', 'd11', '{seckill,app}', 'active', 4)
            """
        )
        await migrate(conn)
        pool = await asyncpg.create_pool(url, min_size=1, max_size=1)
        try:
            campaign = await CampaignStore(pool).get("old-1")
        finally:
            await pool.close()
    finally:
        await conn.close()
        await drop_database(POSTGRES_URL, url)
    expected = decode_spec(
        spec(
            id="old-1",
            name="Old: 30 off 200",
            faceValueCents=3000,
            thresholdCents=20000,
            stock=500,
            dailyStock=100,
            budgetCents=90000,
            perUserLimit=2,
            perDeviceLimit=3,
            startsAt="2026-11-11T00:00:00+08:00",
            endsAt="2026-11-12T00:00:00+08:00",
            validity={"mode": "days_after_claim", "days": 3},
            audience={"newUsersOnly": True, "minLevel": 1, "tags": ["vip"]},
            exclusionGroup="d11",
            channels=["seckill", "app"],
        )
    )
    assert (campaign.status, campaign.version) == ("active", 4)
    got = msgspec.structs.asdict(campaign)
    want = msgspec.structs.asdict(expected)
    for moment in ("starts_at", "ends_at"):
        assert got.pop(moment) == want.pop(moment)  # equal instants, whatever the offset
    got.pop("status"), got.pop("version")
    assert got == want
