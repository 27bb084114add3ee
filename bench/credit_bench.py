"""``make bench`` (credit): spends per second of the ledger against plain asyncpg.

Both sides run in the same process, on the same scratch database, with the same number of
concurrent spenders (``BENCH_CREDIT_CONCURRENCY``, default 16) over ``BENCH_CREDIT_USERS``
users (default 200), for ``BENCH_CREDIT_SPENDS`` spends each (default 4000):

- baseline: one conditional ``UPDATE wallets SET cents = cents - $2 WHERE user_id = $1
  AND cents >= $2`` per spend, in its own transaction: the least a correct spend costs;
- ledger: ``Ledger.lock`` then ``Ledger.confirm`` (two transactions: the idempotent
  entry, the user's lock, the proportional split, the hold and its parts, the journal
  lines, the deferred balance check), as a checkout does.

Prints both rates and their ratio; writes ``bench/out/credit_bench.json``.
"""

from __future__ import annotations

import asyncio
import json
import os
import time

import asyncpg

from bench.claim_bench import OUT, POSTGRES_URL
from gateway.credit.ledger import Ledger
from gateway.infra.clock import SystemClock
from gateway.stack.servers import drop_database, scratch_database

SPENDS = int(os.environ.get("BENCH_CREDIT_SPENDS", "4000"))
USERS = int(os.environ.get("BENCH_CREDIT_USERS", "200"))
CONCURRENCY = int(os.environ.get("BENCH_CREDIT_CONCURRENCY", "16"))


async def _spread(n: int, spend: object) -> float:
    """Run ``spend(i)`` for i < n on CONCURRENCY workers; the seconds taken."""
    counter = iter(range(n))

    async def worker() -> None:
        for i in counter:
            await spend(i)  # type: ignore[operator]

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return time.perf_counter() - started


async def main() -> dict[str, float]:
    """Measure both sides once and print the figures."""
    url = await scratch_database(POSTGRES_URL, prefix="flashclaim_bench")
    pool = await asyncpg.create_pool(url, min_size=CONCURRENCY, max_size=CONCURRENCY)
    try:
        await pool.execute("CREATE TABLE wallets (user_id text PRIMARY KEY,"
                           " cents bigint NOT NULL CHECK (cents >= 0))")  # fmt: skip
        await pool.executemany("INSERT INTO wallets VALUES ($1, $2)",
                               [(f"u{u}", 10**9) for u in range(USERS)])  # fmt: skip
        ledger = Ledger(pool, SystemClock())
        for u in range(USERS):
            await ledger.grant(f"u{u}", 10**9, 30, f"bench-{u}")

        async def plain(i: int) -> None:
            async with pool.acquire() as conn, conn.transaction():
                await conn.execute(
                    "UPDATE wallets SET cents = cents - $2 WHERE user_id = $1 AND cents >= $2",
                    f"u{i % USERS}", 137,
                )  # fmt: skip

        async def credit(i: int) -> None:
            await ledger.lock(f"order-{i}", f"u{i % USERS}", 137, ttl_ms=600_000)
            await ledger.confirm(f"order-{i}")

        baseline_s = await _spread(SPENDS, plain)
        ledger_s = await _spread(SPENDS, credit)
    finally:
        await pool.close()
        await drop_database(POSTGRES_URL, url)
    figures = {
        "spends": SPENDS,
        "concurrency": CONCURRENCY,
        "baseline_spends_per_s": round(SPENDS / baseline_s, 1),
        "ledger_spends_per_s": round(SPENDS / ledger_s, 1),
    }
    figures["ratio"] = round(figures["ledger_spends_per_s"] / figures["baseline_spends_per_s"], 3)
    print(f"credit: plain asyncpg UPDATE {figures['baseline_spends_per_s']:.0f} spends/s;"
          f" ledger lock+confirm {figures['ledger_spends_per_s']:.0f} spends/s"
          f" (ratio {figures['ratio']}, {CONCURRENCY} concurrent, {SPENDS} spends)")  # fmt: skip
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "credit_bench.json").write_text(json.dumps(figures, indent=2))
    return figures


if __name__ == "__main__":
    asyncio.run(main())
