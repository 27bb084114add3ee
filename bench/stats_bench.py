"""``make bench`` (stats): the funnel of one campaign over 10 million coupons and 100 million
exposures, and what keeping its rollups costs.

1. rollup cost   the consumer's own insert (``insert_claims``, batches of 1,000) into
                 ``coupons`` with the ``coupon_daily`` triggers on and off, alternated,
                 three rounds each: rows/s and the ratio;
1b. use cost    the real ``orders.lock`` + ``orders.confirm`` pairs (bench/redemption_bench.py's
                 jobs, 16 tasks) with this issue's use and layer triggers (``usage_daily_insert``
                 on coupon_events, ``layer_daily_update`` on coupons) on and off, alternated,
                 three rounds: pairs/s and the ratio;
2. exposures     ``ExposureCounter`` counting batches of 10 views into a real Redis: views/s;
3. data          ``BENCH_COUPONS`` (10,000,000) coupons of one campaign generated inside
                 PostgreSQL (``generate_series``: 30 days, 5 channels, a third used), in
                 chunks of 1,000,000 with the triggers on, so ``coupon_daily`` is filled the
                 way production fills it; ``exposure_daily`` rows for the same days and
                 channels holding ``BENCH_EXPOSURES`` (100,000,000) views (the rollup writes
                 one row per campaign x channel x day, however many views it counted);
                 The coupons carry user layers (new, level, a tag on a tenth), so the
                 layer triggers fill ``layer_daily`` as they load; the use rollups
                 (``usage_daily``, ``layer_usage_daily``, ``usage_users``,
                 ``usage_campaigns``) are written as the coupon_events trigger leaves them,
                 from the used third (one order per coupon, GMV five times the discount);
4. the funnel    ``funnel()`` for that campaign (claims, use, layers), 20 times: median and
                 slowest; and, as the baseline the rollups replace, the same claim figures
                 by scanning coupons.

Figures are printed and written to ``bench/out/stats_bench.json``.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import asyncpg

from bench.claim_bench import OUT, POSTGRES_URL
from gateway.campaigns.cache import CampaignCache
from gateway.claim.events import ClaimEvent
from gateway.handoff.persist import insert_claims
from gateway.infra import clients
from gateway.infra.clock import SystemClock
from gateway.infra.settings import Settings
from gateway.keys import CAMPAIGN_INDEX, CampaignKeys
from gateway.stack.servers import RedisServer, drop_database, scratch_database
from gateway.stats.exposures import ExposureBatch, ExposureCounter, View
from gateway.stats.funnel import funnel

COUPONS = int(os.environ.get("BENCH_COUPONS", "10000000"))
EXPOSURES = int(os.environ.get("BENCH_EXPOSURES", "100000000"))
CAMPAIGN = "bench-funnel"
CHANNELS = ["app", "h5", "mini", "partner-a", "seckill"]
DAYS = 30
SPEC = {"id": CAMPAIGN, "name": "bench", "timeZone": "Asia/Shanghai", "budgetCents": 10**12}

GENERATE = """
INSERT INTO coupons (coupon_id, campaign_id, user_id, device_id, request_id, channel,
                     value_cents, status, claimed_at, expires_at, new_user, member_level, tags)
SELECT md5($1 || '/' || n)::uuid, $1, 'u' || (n % 3000000), 'd' || (n % 3000000),
       'r' || n, ($3::text[])[1 + (n / 30) % 5], 1000 + (n % 5) * 500,
       CASE WHEN n % 3 = 0 THEN 'used' ELSE 'unused' END,
       timestamptz '2026-11-01 00:00+08' + (n % $4) * interval '1 day'
           + (n % 86400) * interval '1 second',
       timestamptz '2026-12-31 00:00+08',
       n % 4 = 0, (n % 7)::int, CASE WHEN n % 10 = 0 THEN ARRAY['student'] END
FROM generate_series($2::bigint, $2::bigint + $5 - 1) AS n
"""

USE_ROLLUPS = """
WITH used AS (
    SELECT channel, (claimed_at AT TIME ZONE 'Asia/Shanghai')::date AS day, user_id,
           new_user, member_level, tags, value_cents AS discount, 5 * value_cents AS gmv
    FROM coupons WHERE campaign_id = $1 AND status = 'used'
), daily AS (
    INSERT INTO usage_daily
    SELECT $1, channel, day, count(*), sum(discount), count(*), sum(gmv), sum(gmv - discount)
    FROM used GROUP BY 2, 3 RETURNING 1
), layers AS (
    INSERT INTO layer_usage_daily
    SELECT $1, l.layer, day, count(*), sum(discount), count(*), sum(gmv), sum(gmv - discount)
    FROM used CROSS JOIN LATERAL coupon_layers(new_user, member_level, tags) AS l(layer)
    GROUP BY 2, 3 RETURNING 1
), users AS (
    INSERT INTO usage_users SELECT $1, user_id, count(*), sum(gmv) FROM used GROUP BY 2
    RETURNING 1
)
INSERT INTO usage_campaigns SELECT $1, count(*) FROM users
"""

SCAN = """
SELECT channel, (claimed_at AT TIME ZONE 'Asia/Shanghai')::date, count(*), sum(value_cents),
       count(*) FILTER (WHERE status = 'used')
FROM coupons WHERE campaign_id = $1 GROUP BY 1, 2
"""


def _events(n: int, start: int) -> list[ClaimEvent]:
    now = int(time.time() * 1000)
    return [
        ClaimEvent(
            coupon_id=str(uuid.uuid4()),
            campaign_id="bench-consumer",
            user_id=f"user-{i}",
            device_id=f"dev-{i}",
            request_id=f"req-{i:08d}",
            channel=CHANNELS[i % 5],
            value_cents=1000,
            claimed_at_ms=now,
            expires_at_ms=now + 86_400_000,
            new_user=i % 4 == 0,
            level=i % 7,
            tags=("student",) if i % 10 == 0 else (),
        )
        for i in range(start, start + n)
    ]


async def rollup_cost(pool: asyncpg.Pool, rows: int = 20_000) -> dict[str, object]:
    """The consumer's insert with the triggers on and off, alternated."""
    rates: dict[str, list[float]] = {"triggers": [], "no_triggers": []}
    start = 0
    for _ in range(3):
        for mode in ("triggers", "no_triggers"):
            action = "ENABLE" if mode == "triggers" else "DISABLE"
            await pool.execute(f"ALTER TABLE coupons {action} TRIGGER USER")
            events = _events(rows, start)
            start += rows
            began = time.perf_counter()
            for i in range(0, rows, 1000):
                async with pool.acquire() as conn, conn.transaction():
                    await insert_claims(conn, events[i : i + 1000])
            rates[mode].append(rows / (time.perf_counter() - began))
    await pool.execute("ALTER TABLE coupons ENABLE TRIGGER USER")
    await pool.execute("DELETE FROM coupons WHERE campaign_id = 'bench-consumer'")
    ratios = [a / b for a, b in zip(rates["triggers"], rates["no_triggers"], strict=True)]
    return {
        "rows_per_s_with_triggers": [round(r) for r in rates["triggers"]],
        "rows_per_s_without": [round(r) for r in rates["no_triggers"]],
        "ratio_median": round(statistics.median(ratios), 3),
    }


async def use_cost(url: str, pairs: int = 1_000) -> dict[str, object]:
    """Lock + confirm pairs with the statistics triggers of use on and off, alternated."""
    from bench import redemption_bench as rb

    pool = await asyncpg.create_pool(url, min_size=rb.CONCURRENCY, max_size=rb.CONCURRENCY)
    now_ms = int(time.time() * 1000)
    rates: dict[str, list[float]] = {"triggers": [], "no_triggers": []}
    try:
        campaign = (await rb.setup(pool, now_ms))[2]
        for r in range(3):
            for mode in ("triggers", "no_triggers"):
                action = "ENABLE" if mode == "triggers" else "DISABLE"
                await pool.execute(f"ALTER TABLE coupon_events {action} TRIGGER usage_daily_insert")
                await pool.execute(f"ALTER TABLE coupons {action} TRIGGER layer_daily_update")
                users = [f"use-{r}-{mode}-{i}" for i in range(pairs)]
                coupons = await rb.give(pool, campaign, users, now_ms)
                jobs = rb.our_jobs(pool, list(zip(users, coupons, strict=True)), now_ms)
                rates[mode].append(await rb.timed(jobs))
        await pool.execute("ALTER TABLE coupon_events ENABLE TRIGGER usage_daily_insert")
        await pool.execute("ALTER TABLE coupons ENABLE TRIGGER layer_daily_update")
    finally:
        await pool.close()
    ratios = [a / b for a, b in zip(rates["triggers"], rates["no_triggers"], strict=True)]
    return {
        "pairs_per_s_with_triggers": [round(r) for r in rates["triggers"]],
        "pairs_per_s_without": [round(r) for r in rates["no_triggers"]],
        "ratio_median": round(statistics.median(ratios), 3),
    }


async def exposure_rate(redis_url: str, batches: int = 5_000) -> dict[str, object]:
    """Views per second through the counter (batches of 10 views of one campaign)."""
    settings = Settings.from_env({}, redis_url=redis_url)
    redis = clients.redis_client(settings)
    keys = CampaignKeys(CAMPAIGN, "")
    await redis.hset(CAMPAIGN_INDEX, CAMPAIGN, "")
    await redis.hset(keys.config, mapping={"tz": "Asia/Shanghai", "start": 0, "end": 2**50,
                                           "status": "active"})  # fmt: skip
    clock = SystemClock()
    counter = ExposureCounter(redis, CampaignCache(redis, clock, 1000, 1.0), clock, 86_400)
    views = [View(CAMPAIGN, CHANNELS[i % 5]) for i in range(10)]
    began = time.perf_counter()
    for i in range(batches):
        await counter.count(ExposureBatch(viewer_id=f"dev-{i}", views=views))
    elapsed = time.perf_counter() - began
    await redis.aclose()
    return {"views_per_s_one_connection": round(batches * 10 / elapsed)}


async def load(pool: asyncpg.Pool) -> dict[str, object]:
    """10 M coupons with the triggers on; exposure rows holding 100 M views."""
    await pool.execute(
        "INSERT INTO campaigns (id, spec, status) VALUES ($1, $2::jsonb, 'active')",
        CAMPAIGN,
        json.dumps(SPEC),
    )
    chunk = 1_000_000
    began = time.perf_counter()
    for start in range(0, COUPONS, chunk):
        await pool.execute(GENERATE, CAMPAIGN, start, CHANNELS, DAYS, min(chunk, COUPONS - start))
    loaded_s = time.perf_counter() - began
    per_row = EXPOSURES // (DAYS * len(CHANNELS))
    rows = [(CAMPAIGN, ch, d, per_row) for ch in CHANNELS for d in range(DAYS)]
    await pool.executemany(
        "INSERT INTO exposure_daily SELECT $1, $2, date '2026-11-01' + $3::int, $4::bigint,"
        " $4::bigint / 3, now()",
        rows,
    )
    # The use rollups as the coupon_events trigger leaves them (one row per channel x day,
    # per layer x day; a user row per user with a use), from the used third of the coupons.
    await pool.execute(USE_ROLLUPS, CAMPAIGN)
    await pool.execute("ANALYZE")
    return {"coupons": COUPONS, "load_s_with_triggers": round(loaded_s, 1),
            "exposures": per_row * len(rows), "coupon_daily_rows": await pool.fetchval(
                "SELECT count(*) FROM coupon_daily WHERE campaign_id = $1", CAMPAIGN)}  # fmt: skip


async def query(pool: asyncpg.Pool) -> dict[str, object]:
    """The funnel from the rollups, and the scan it replaces."""
    times = []
    for _ in range(20):
        began = time.perf_counter()
        report = await funnel(pool, CAMPAIGN)
        times.append(time.perf_counter() - began)
    assert report is not None
    assert report.total.claims == COUPONS, report.total.claims
    assert report.usage.total.uses == report.total.used, report.usage.total
    scans = []
    for _ in range(2):
        began = time.perf_counter()
        await pool.fetch(SCAN, CAMPAIGN)
        scans.append(time.perf_counter() - began)
    return {
        "funnel_ms_median": round(statistics.median(times) * 1000, 2),
        "funnel_ms_max": round(max(times) * 1000, 2),
        "rows_answered": len(report.rows),
        "use_rows_answered": len(report.usage.rows),
        "layers_answered": len(report.layers),
        "total_views": report.total.views,
        "scan_of_coupons_ms_best": round(min(scans) * 1000),
    }


async def main() -> None:
    url = await scratch_database(POSTGRES_URL, prefix="flashclaim_bench")
    redis = RedisServer(
        Path(tempfile.mkdtemp(prefix="stats-bench-")), aof=True, fsync="everysec"
    ).start()
    try:
        pool = await asyncpg.create_pool(url, min_size=1, max_size=2)
        result: dict[str, object] = {}
        result["rollup_cost"] = await rollup_cost(pool)
        print("rollup cost:", result["rollup_cost"], flush=True)
        result["use_cost"] = await use_cost(url)
        print("use cost:", result["use_cost"], flush=True)
        result["exposures"] = await exposure_rate(redis.url)
        print("exposures:", result["exposures"], flush=True)
        result["data"] = await load(pool)
        print("data:", result["data"], flush=True)
        result["funnel"] = await query(pool)
        print("funnel:", result["funnel"], flush=True)
        await pool.close()
    finally:
        redis.stop()
        await drop_database(POSTGRES_URL, url)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "stats_bench.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
