"""``make bench`` (credit): spends per second of the ledger against plain asyncpg, and an
order paid with a coupon and credit against the same order with the coupon alone.

All sides run in the same process, on the same scratch database, with the same number of
concurrent tasks (``BENCH_CREDIT_CONCURRENCY``, default 16) over ``BENCH_CREDIT_USERS``
users (default 200), alternating over ``BENCH_ROUNDS`` rounds (default 3) of
``BENCH_CREDIT_SPENDS`` spends each (default 1500), so each round's ratios compare runs
seconds apart:

- baseline: one conditional ``UPDATE wallets SET cents = cents - $2 WHERE user_id = $1
  AND cents >= $2`` per spend, in its own transaction: the least a correct spend costs;
- ledger: ``Ledger.lock`` then ``Ledger.confirm`` (two transactions: the idempotent
  entry, the user's lock, the proportional split, the hold and its parts, the journal
  lines, the deferred balance check);
- coupon order: ``orders.lock`` + ``orders.confirm`` of one coupon (what
  ``redemption_bench`` measures), and the same with ``creditCents`` (the credit hold and
  its spend inside the order's two transactions).

Prints the figures and ratios per round and their medians; writes
``bench/out/credit_bench.json``.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import statistics
import time
from collections.abc import Awaitable, Callable

import asyncpg
import msgspec

from bench.claim_bench import OUT, POSTGRES_URL
from bench.redemption_bench import CART, give, setup
from gateway.credit.ledger import Ledger
from gateway.infra.clock import SystemClock
from gateway.redemption import orders
from gateway.redemption.cart import UseRequest
from gateway.stack.servers import drop_database, scratch_database

SPENDS = int(os.environ.get("BENCH_CREDIT_SPENDS", "1500"))
USERS = int(os.environ.get("BENCH_CREDIT_USERS", "200"))
CONCURRENCY = int(os.environ.get("BENCH_CREDIT_CONCURRENCY", "16"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
Job = Callable[[], Awaitable[None]]


async def _rate(jobs: list[Job]) -> float:
    """Jobs per second, run on CONCURRENCY tasks."""
    queue = list(reversed(jobs))

    async def worker() -> None:
        while queue:
            await queue.pop()()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return len(jobs) / (time.perf_counter() - started)


def _order_jobs(pool: asyncpg.Pool, owned: list[tuple[str, str]], credit: int) -> list[Job]:
    async def pair(user: str, coupon: str) -> None:
        now_ms = int(time.time() * 1000)
        body = {**CART, "orderId": f"o-{coupon}", "couponIds": [coupon], "creditCents": credit}
        request = msgspec.convert(body, UseRequest)
        async with pool.acquire() as conn:
            state = await orders.lock(conn, user, request, now_ms=now_ms, ttl_ms=900_000,
                                      new_user=False)  # fmt: skip
            assert (state.status, state.credit_cents) == ("locked", credit)
            confirmed = await orders.confirm(conn, user, request.order_id, now_ms)
            assert confirmed.status == "confirmed"

    return [functools.partial(pair, u, c) for u, c in owned]


async def main() -> dict[str, object]:
    """Measure every side in alternating rounds and print the figures."""
    url = await scratch_database(POSTGRES_URL, prefix="flashclaim_bench")
    pool = await asyncpg.create_pool(url, min_size=CONCURRENCY, max_size=CONCURRENCY)
    rounds = []
    try:
        await pool.execute("CREATE TABLE wallets (user_id text PRIMARY KEY,"
                           " cents bigint NOT NULL CHECK (cents >= 0))")  # fmt: skip
        await pool.executemany("INSERT INTO wallets VALUES ($1, $2)",
                               [(f"u{u}", 10**9) for u in range(USERS)])  # fmt: skip
        ledger = Ledger(pool, SystemClock())
        for u in range(USERS):
            await ledger.grant(f"u{u}", 10**9, 30, f"bench-{u}")
        campaign = (await setup(pool, int(time.time() * 1000)))[2]

        async def plain(i: int) -> None:
            async with pool.acquire() as conn, conn.transaction():
                await conn.execute(
                    "UPDATE wallets SET cents = cents - $2 WHERE user_id = $1 AND cents >= $2",
                    f"u{i % USERS}", 137,
                )  # fmt: skip

        async def spend(r: int, i: int) -> None:
            await ledger.lock(f"order-{r}-{i}", f"u{i % USERS}", 137, ttl_ms=600_000)
            await ledger.confirm(f"order-{r}-{i}")

        for r in range(ROUNDS):
            users = [f"u{i % USERS}" for i in range(SPENDS)]
            now_ms = int(time.time() * 1000)
            alone = list(zip(users, await give(pool, campaign, users, now_ms), strict=True))
            paired = list(zip(users, await give(pool, campaign, users, now_ms), strict=True))
            figures = {
                "baseline": await _rate([functools.partial(plain, i) for i in range(SPENDS)]),
                "ledger": await _rate([functools.partial(spend, r, i) for i in range(SPENDS)]),
                "coupon_order": await _rate(_order_jobs(pool, alone, 0)),
                "coupon_credit_order": await _rate(_order_jobs(pool, paired, 137)),
            }
            rounds.append(figures)
            print(f"credit round {r + 1}: plain UPDATE {figures['baseline']:,.0f} spends/s,"
                  f" ledger lock+confirm {figures['ledger']:,.0f}"
                  f" ({figures['ledger'] / figures['baseline']:.3f});"
                  f" order lock+confirm coupon {figures['coupon_order']:,.0f}/s,"
                  f" coupon+credit {figures['coupon_credit_order']:,.0f}/s"
                  f" ({figures['coupon_credit_order'] / figures['coupon_order']:.2f})")  # fmt: skip
    finally:
        await pool.close()
        await drop_database(POSTGRES_URL, url)
    result: dict[str, object] = {
        "rounds": rounds,
        "spends_per_round": SPENDS,
        "concurrency": CONCURRENCY,
        "ledger_ratio_median": statistics.median(r["ledger"] / r["baseline"] for r in rounds),
        "credit_order_ratio_median": statistics.median(
            r["coupon_credit_order"] / r["coupon_order"] for r in rounds
        ),
    }
    print(f"credit: ledger / plain UPDATE (median) {result['ledger_ratio_median']:.3f};"
          f" coupon+credit order / coupon order (median)"
          f" {result['credit_order_ratio_median']:.2f}")  # fmt: skip
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "credit_bench.json").write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    asyncio.run(main())
