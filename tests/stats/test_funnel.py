"""The funnel against a hand-computed fixture: claims stored by the consumer's own insert
(a redelivered batch included), statuses changed as coupon use will change them, exposures
as the rollup leaves them; served by the admin API and ``flashclaim stats``."""

from __future__ import annotations

import asyncio
import csv
import io
import random
import uuid

import orjson
import pytest

from gateway.claim.events import ClaimEvent
from gateway.handoff.persist import insert_claims
from tests.helpers import ADMIN_TOKEN, T0_MS, child_env, flashclaim, published

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def row(day, channel, views, unique, claims, claim_rate, value, used, use_rate, used_value,
        refunded=0, expired=0):  # fmt: skip
    return {"day": day, "channel": channel, "views": views, "uniqueViewers": unique,
            "claims": claims, "claimRate": claim_rate, "valueCents": value, "used": used,
            "useRate": use_rate, "usedValueCents": used_value, "refunded": refunded,
            "expired": expired}  # fmt: skip


# Worked out by hand from CLAIMS, the status changes and EXPOSURES:
# 11 Nov h5: 5 claims / 40 views = 0.125; used u2, u3 (u1 used, then refunded): 2 / 5 = 0.4
# 11 Nov app: 2 / 10 = 0.2; used u5: 1 / 2 = 0.5.  12 Nov h5: 1 / 20 = 0.05; used u8: 1.0
# total: 8 claims / 70 views = 0.114286; 4 used / 8 = 0.5; 80,000 cents drawn of 1,000,000
EXPECTED_ROWS = [
    row("2026-11-11", "app", 10, 8, 2, 0.2, 20_000, 1, 0.5, 10_000),
    row("2026-11-11", "h5", 40, 25, 5, 0.125, 50_000, 2, 0.4, 20_000, refunded=1),
    row("2026-11-12", "h5", 20, 15, 1, 0.05, 10_000, 1, 1.0, 10_000),
]
EXPECTED_TOTAL = row(None, "*", 70, None, 8, 0.114286, 80_000, 4, 0.5, 40_000, refunded=1)


async def test_the_funnel_matches_the_hand_computed_fixture(client, campaign):
    response = await client.get(f"/admin/stats?campaign={campaign.id}", headers=ADMIN)
    assert response.status == 200
    report = await response.json()
    assert report["rows"] == EXPECTED_ROWS
    assert report["total"] == EXPECTED_TOTAL
    assert (report["timeZone"], report["budgetCents"], report["budgetLeftCents"]) == (
        "Asia/Shanghai", 1_000_000, 920_000)  # fmt: skip


async def test_the_claim_rollup_equals_counting_the_coupons(campaign, pool):
    rolled = await pool.fetch(
        "SELECT channel, day, claims, value_cents, used, used_value_cents, refunded, expired"
        " FROM coupon_daily WHERE campaign_id = $1 ORDER BY 1, 2",
        campaign.id,
    )
    counted = await pool.fetch(
        "SELECT channel, (claimed_at AT TIME ZONE 'Asia/Shanghai')::date AS day, count(*),"
        " sum(value_cents), count(*) FILTER (WHERE status = 'used'),"
        " coalesce(sum(value_cents) FILTER (WHERE status = 'used'), 0),"
        " count(*) FILTER (WHERE status = 'refunded'), count(*) FILTER (WHERE status = 'expired')"
        " FROM coupons WHERE campaign_id = $1 GROUP BY 1, 2 ORDER BY 1, 2",
        campaign.id,
    )
    assert [tuple(r) for r in rolled] == [tuple(r) for r in counted]
    assert len(rolled) == 3


async def test_a_range_of_days(client, campaign):
    response = await client.get(
        f"/admin/stats?campaign={campaign.id}&from=2026-11-12&to=2026-11-12", headers=ADMIN
    )
    report = await response.json()
    assert report["rows"] == EXPECTED_ROWS[2:]
    assert report["total"] == {**EXPECTED_ROWS[2], "day": None, "channel": "*"}
    assert report["budgetLeftCents"] == 920_000  # the whole campaign's, whatever the range


@pytest.mark.parametrize(
    ("query", "status", "reason"),
    [
        ("", 422, "INVALID_REQUEST"),
        ("campaign=a/b", 422, "INVALID_REQUEST"),
        ("campaign=no-such-campaign", 404, "UNKNOWN_CAMPAIGN"),
        ("campaign=c&from=2026-13-01", 422, "INVALID_REQUEST"),
        ("campaign=c&from=0000-00-00", 422, "INVALID_REQUEST"),
        ("campaign=c&to=11/11/2026", 422, "INVALID_REQUEST"),
    ],
)
async def test_bad_questions_are_refused(client, pool, query, status, reason):
    response = await client.get(f"/admin/stats?{query}", headers=ADMIN)
    assert (response.status, (await response.json())["reason"]) == (status, reason)


async def test_the_admin_token_is_required(client):
    response = await client.get("/admin/stats?campaign=c")
    assert response.status == 401


async def test_the_command_prints_a_table_csv_and_json(settings, campaign):
    env = child_env(settings)
    as_json = flashclaim(env, "stats", campaign.id, "--format", "json")
    assert as_json.returncode == 0, as_json.stderr
    assert orjson.loads(as_json.stdout)["total"] == EXPECTED_TOTAL
    as_csv = flashclaim(env, "stats", campaign.id, "--format", "csv")
    lines = list(csv.DictReader(io.StringIO(as_csv.stdout)))
    assert [(r["day"], r["channel"], r["claims"], r["claimRate"]) for r in lines] == [
        ("2026-11-11", "app", "2", "0.2000"),
        ("2026-11-11", "h5", "5", "0.1250"),
        ("2026-11-12", "h5", "1", "0.0500"),
        ("total", "*", "8", "0.1143"),
    ]
    table = flashclaim(env, "stats", campaign.id)
    assert "budget 10,000.00, spent 800.00, left 9,200.00" in table.stdout
    assert table.stdout.splitlines()[-1].split()[:5] == ["total", "*", "70", "8", "0.1143"]
    unknown = flashclaim(env, "stats", "no-such-campaign")
    assert (unknown.returncode, unknown.stderr.strip()) == (
        1, "flashclaim stats: no campaign no-such-campaign")  # fmt: skip


async def test_concurrent_consumers_and_redeliveries_count_each_claim_once(ops, pool):
    campaign = await published(ops, channels=[])
    rng = random.Random(7)
    events = [
        ClaimEvent(
            coupon_id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"{campaign.id}/{n}")),
            campaign_id=campaign.id,
            user_id=f"u{n}",
            device_id=f"d{n}",
            request_id=f"req-{n:08d}",
            channel=rng.choice(["h5", "app", "mini"]),
            value_cents=100,
            claimed_at_ms=T0_MS + rng.randrange(3) * 86_400_000,
            expires_at_ms=T0_MS + 10 * 86_400_000,
        )
        for n in range(1200)
    ]

    async def consumer(seed):  # batches overlapping other consumers' (redeliveries)
        mine = random.Random(seed)
        for _ in range(6):
            # In random order: insert_claims inserts in coupon-id order, so overlapping
            # batches wait for each other instead of deadlocking on the primary key.
            batch = mine.sample(events, 200)
            async with pool.acquire() as conn, conn.transaction():
                await insert_claims(conn, batch)

    await asyncio.gather(*(consumer(seed) for seed in range(4)))
    stored = await pool.fetchval("SELECT count(*) FROM coupons WHERE campaign_id = $1", campaign.id)
    rolled = await pool.fetchval(
        "SELECT sum(claims) FROM coupon_daily WHERE campaign_id = $1", campaign.id
    )
    assert 0 < stored == rolled
