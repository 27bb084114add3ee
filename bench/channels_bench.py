"""``make bench`` (channels): redeem codes generated per second, users bound per second.

1. codes   1,000,000 codes (``BENCH_CODES``) generated, hashed, COPYed into PostgreSQL and
           written to Redis (``CodeBatches.create``), and the CSV written; the part that
           only makes and hashes codes is timed apart; then Redis forgets the campaign's
           codes and ``flashclaim recover`` rebuilds them from ``code_batches`` (timed,
           with its ratio to storing them in the first place);
2. bind    a bind job over ``BENCH_BIND_USERS`` users (CSV on disk, checkpoints in
           PostgreSQL, report on disk) against the baseline of the same number of claims
           sent straight to ``ClaimService.grant`` in batches of the same size, in the same
           run (the job's own cost is the ratio). Stock covers every user: all are accepted.

Redis runs with AOF (``appendfsync everysec``); everything runs in this one process.
Figures are printed and written to ``bench/out/channels_bench.json``.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

from bench.claim_bench import ADMIN_TOKEN, JWT_SECRET, OUT, POSTGRES_URL, publish
from gateway.campaigns.ops import CampaignOps, keys_of
from gateway.campaigns.store import CampaignStore
from gateway.channels.bind import BindRunner, device_for
from gateway.channels.bind_store import BindJobs
from gateway.channels.code_store import CodeBatches, csv_lines
from gateway.channels.codes import CodeHasher, generate
from gateway.claim.service import ClaimRequest, ClaimService
from gateway.infra import clients
from gateway.infra.auth import Claimant
from gateway.infra.clock import SystemClock
from gateway.infra.settings import Settings
from gateway.keys import CODE_INDEX
from gateway.ops.recover import recover
from gateway.stack.servers import RedisServer, drop_database, scratch_database

CODES = int(os.environ.get("BENCH_CODES", "1000000"))
USERS = int(os.environ.get("BENCH_BIND_USERS", "200000"))
BATCH = 2000


async def bench_codes(settings: Settings, work: Path) -> dict[str, float]:
    """Seconds to make and hash the codes alone, and to make, store and export them."""
    hasher = CodeHasher.for_settings("", settings.jwt_secret)
    started = time.perf_counter()
    for code in generate(CODES):
        hasher(code)
    made = time.perf_counter() - started
    campaign_id = await publish(settings, stock=1)
    pool = await clients.create_pool(settings.database_url, max_size=2)
    redis = clients.redis_client(settings)
    try:
        started = time.perf_counter()
        batch_id, codes = await CodeBatches(pool, redis, hasher).create(campaign_id, CODES)
        with (work / "codes.csv").open("wb") as out:
            for chunk in csv_lines(campaign_id, batch_id, codes):
                out.write(chunk)
        stored = time.perf_counter() - started
        await redis.delete(keys_of(await CampaignStore(pool).get(campaign_id)).codes, CODE_INDEX)
        ops = CampaignOps(CampaignStore(pool), redis, SystemClock())
        started = time.perf_counter()
        rebuilt = await recover(ops, pool, redis, SystemClock(), settings, campaign_id)
        recovered = time.perf_counter() - started
        assert rebuilt.codes == CODES, rebuilt
    finally:
        await pool.close()
        await redis.aclose()
    return {"codes": CODES, "make_and_hash_s": made, "generate_store_export_s": stored,
            "recover_s": recovered}  # fmt: skip


async def bench_bind(settings: Settings, work: Path) -> dict[str, float]:
    """Users per second: straight claims (baseline), then a bind job of the same size."""
    claim_redis = clients.claim_redis_client(settings)
    pool = await clients.create_pool(settings.database_url, max_size=2)
    claims = ClaimService(claim_redis, SystemClock(), settings)
    try:
        baseline_campaign = await publish(settings, stock=USERS)
        started = time.perf_counter()
        for start in range(0, USERS, BATCH):
            await asyncio.gather(
                *(
                    claims.grant(
                        Claimant(f"u{i}", False, 0, "", 0, 0),
                        ClaimRequest(
                            baseline_campaign, f"base-{i:08d}", device_for(f"u{i}"), "bind"
                        ),
                    )
                    for i in range(start, min(start + BATCH, USERS))
                )
            )
        baseline = USERS / (time.perf_counter() - started)
        source = work / "users.csv"
        source.write_text("user_id\n" + "".join(f"u{i}\n" for i in range(USERS)))
        campaign = await publish(settings, stock=USERS)
        started = time.perf_counter()
        state = await BindRunner(claims, BindJobs(pool), batch=BATCH).run(
            f"bench-{campaign}", campaign, source, work / "report.csv"
        )
        job = USERS / (time.perf_counter() - started)
        assert state.reasons == {"ACCEPTED": USERS}, state.reasons
    finally:
        await claims.aclose()
        await pool.close()
        await claim_redis.aclose()
    return {"users": USERS, "baseline_claims_per_s": baseline, "bind_users_per_s": job}


def main() -> int:
    """Run both and print the figures."""
    work = Path(tempfile.mkdtemp(prefix="flashclaim-channels-bench-"))
    redis = RedisServer(work, aof=True, fsync="everysec").start()
    database_url = asyncio.run(scratch_database(POSTGRES_URL))
    settings = Settings.from_env(
        {}, redis_url=redis.url, database_url=database_url, jwt_secret=JWT_SECRET,
        admin_token=ADMIN_TOKEN, user_rate=0, device_rate=0, ip_rate=0,
        outbox_max_len=100_000_000, log_level="WARNING",
    )  # fmt: skip
    try:
        codes = asyncio.run(bench_codes(settings, work))
        bind = asyncio.run(bench_bind(settings, work))
    finally:
        redis.stop()
        asyncio.run(drop_database(POSTGRES_URL, database_url))
        shutil.rmtree(work, ignore_errors=True)
    print(f"codes: {codes['codes']:,} made and hashed in {codes['make_and_hash_s']:.1f} s;"
          f" generated, stored (PostgreSQL + Redis) and exported in"
          f" {codes['generate_store_export_s']:.1f} s; recover rebuilt them in"
          f" {codes['recover_s']:.1f} s (ratio to storing"
          f" {codes['recover_s'] / codes['generate_store_export_s']:.2f})")  # fmt: skip
    ratio = bind["bind_users_per_s"] / bind["baseline_claims_per_s"]
    print(f"bind: {bind['users']:,} users: straight claims {bind['baseline_claims_per_s']:,.0f}/s,"
          f" bind job {bind['bind_users_per_s']:,.0f} users/s (ratio {ratio:.2f});"
          f" a million in {1_000_000 / bind['bind_users_per_s'] / 60:.1f} min")  # fmt: skip
    OUT.mkdir(exist_ok=True)
    (OUT / "channels_bench.json").write_text(json.dumps({"codes": codes, "bind": bind}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
