"""``make bench`` (coupon use): lock + confirm pairs/s and quotes/s against PostgreSQL.

The baseline, measured in the same run on the same table: a plain asyncpg conditional
``UPDATE coupons … WHERE status = 'unused' RETURNING`` (lock) and ``… WHERE status =
'locked' RETURNING`` (confirm) per coupon, no order row, no events. Ours: the real
``orders.lock`` + ``orders.confirm`` (order row, row locks, rule checks, per-item
allocation, audit events), the same pairs with ``orders.confirm_in_transaction`` (the
step-by-step confirm, A/B against the one-statement confirm in the same rounds), and
``usable_coupons`` + ``quote`` for a wallet of 12 coupons.
Baseline and ours alternate over ``BENCH_ROUNDS`` rounds of ``BENCH_PAIRS`` pairs at
``BENCH_CONCURRENCY`` tasks; the ratio of each round compares runs seconds apart.
Figures are printed and written to ``bench/out/redemption_bench.json``.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import json
import os
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

import asyncpg
import msgspec

from bench.claim_bench import OUT, POSTGRES_URL
from gateway.campaigns.spec import decode_spec
from gateway.campaigns.store import CampaignStore
from gateway.claim.events import ClaimEvent
from gateway.handoff.persist import insert_claims
from gateway.redemption import orders
from gateway.redemption.cart import Cart, UseRequest
from gateway.redemption.quote import quote
from gateway.redemption.wallet import usable_coupons
from gateway.stack.servers import drop_database, scratch_database

ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
PAIRS = int(os.environ.get("BENCH_PAIRS", "2000"))
CONCURRENCY = int(os.environ.get("BENCH_CONCURRENCY", "16"))
TIERS = ("shop", "category", "platform")
CART = {
    "amountCents": 60_000,
    "channel": "app",
    "items": [{"sku": "phone", "category": "digital", "priceCents": 50_000, "quantity": 1},
              {"sku": "novel", "category": "books", "priceCents": 10_000, "quantity": 1}],
}  # fmt: skip
_ids = itertools.count()


async def setup(pool: asyncpg.Pool, now_ms: int) -> list[str]:
    """Three campaigns (one per tier), published as specs in PostgreSQL."""
    store = CampaignStore(pool)
    start = datetime.now(UTC) - timedelta(minutes=1)
    names = []
    for tier in TIERS:
        name = f"bench-{tier}"
        spec = {"id": name, "name": name, "kind": "cash_off", "faceValueCents": 1_000,
                "thresholdCents": 5_000, "stock": 10**8, "startsAt": start.isoformat(),
                "endsAt": (start + timedelta(days=2)).isoformat(),
                "validity": {"mode": "days_after_claim", "days": 7},
                "usage": {"tier": tier}}  # fmt: skip
        await store.create(decode_spec(spec))
        names.append(name)
    return names


async def give(pool: asyncpg.Pool, campaign: str, users: list[str], now_ms: int) -> list[str]:
    """One coupon per user of ``campaign``; their ids, in user order."""
    events = [
        ClaimEvent(
            str(uuid.uuid4()),
            campaign,
            user,
            "dev",
            f"req-{next(_ids):010d}",
            "app",
            1_000,
            now_ms,
            now_ms + 7 * 86_400_000,
        )
        for user in users
    ]
    async with pool.acquire() as conn:
        await insert_claims(conn, events)
    return [e.coupon_id for e in events]


async def timed(jobs: list[Callable[[], Awaitable[None]]]) -> float:
    """Jobs per second at ``CONCURRENCY`` tasks."""
    queue = list(reversed(jobs))

    async def worker() -> None:
        while queue:
            await queue.pop()()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return len(jobs) / (time.perf_counter() - started)


def baseline_jobs(pool: asyncpg.Pool, coupons: list[str]) -> list[Callable[[], Awaitable[None]]]:
    async def pair(coupon: str) -> None:
        order = f"b-{coupon}"
        async with pool.acquire() as conn:
            locked = await conn.fetchrow(
                "UPDATE coupons SET status = 'locked', order_id = $2, lock_expires_at = now()"
                " + interval '15 minutes' WHERE coupon_id = $1 AND status = 'unused'"
                " RETURNING coupon_id", coupon, order)  # fmt: skip
            assert locked is not None
            used = await conn.fetchrow(
                "UPDATE coupons SET status = 'used', used_at = now() WHERE coupon_id = $1"
                " AND status = 'locked' AND order_id = $2 RETURNING coupon_id",
                coupon, order)  # fmt: skip
            assert used is not None

    return [functools.partial(pair, c) for c in coupons]


Confirm = Callable[[asyncpg.pool.PoolConnectionProxy, str, str, int], Awaitable[orders.OrderState]]


def our_jobs(
    pool: asyncpg.Pool,
    owned: list[tuple[str, str]],
    now_ms: int,
    confirm: Confirm = orders.confirm,
) -> list[Callable[[], Awaitable[None]]]:
    async def pair(user: str, coupon: str) -> None:
        order = f"o-{coupon}"
        request = msgspec.convert({**CART, "orderId": order, "couponIds": [coupon]}, UseRequest)
        async with pool.acquire() as conn:
            state = await orders.lock(conn, user, request, now_ms=now_ms, ttl_ms=900_000,
                                      new_user=False)  # fmt: skip
            assert state.status == "locked"
            confirmed = await confirm(conn, user, order, now_ms)
            assert confirmed.status == "confirmed"

    return [functools.partial(pair, u, c) for u, c in owned]


def quote_jobs(
    pool: asyncpg.Pool, users: list[str], now_ms: int
) -> list[Callable[[], Awaitable[None]]]:
    cart = msgspec.convert(CART, Cart)

    async def one(user: str) -> None:
        held = await usable_coupons(pool, user, now_ms)
        assert quote(held, cart, now_ms, new_user=False).best.discount_cents > 0

    return [functools.partial(one, u) for u in users]


async def run() -> dict[str, object]:
    url = await scratch_database(POSTGRES_URL, prefix="flashclaim_bench")
    pool = await asyncpg.create_pool(url, min_size=CONCURRENCY, max_size=CONCURRENCY)
    now_ms = int(time.time() * 1000)
    try:
        campaigns = await setup(pool, now_ms)
        wallet_users = [f"w{i}" for i in range(200)]
        for campaign in campaigns:  # 12 coupons each: 4 per tier
            for _ in range(4):
                await give(pool, campaign, wallet_users, now_ms)
        rounds = []
        for r in range(ROUNDS):
            users = [f"r{r}-{i}" for i in range(PAIRS)]
            base = await give(pool, campaigns[2], users, now_ms)
            ours = await give(pool, campaigns[2], users, now_ms)
            stepwise = await give(pool, campaigns[2], users, now_ms)
            baseline = await timed(baseline_jobs(pool, base))
            pairs = await timed(our_jobs(pool, list(zip(users, ours, strict=True)), now_ms))
            steps = await timed(our_jobs(pool, list(zip(users, stepwise, strict=True)), now_ms,
                                         orders.confirm_in_transaction))  # fmt: skip
            quotes = await timed(quote_jobs(pool, wallet_users * 5, now_ms))
            rounds.append({"baseline": baseline, "pairs": pairs, "pairs_stepwise": steps,
                           "quotes": quotes})  # fmt: skip
            print(f"round {r + 1}: baseline {baseline:,.0f} pairs/s, lock+confirm"
                  f" {pairs:,.0f} pairs/s ({pairs / baseline:.2f}), with the stepwise"
                  f" confirm {steps:,.0f} ({steps / baseline:.2f}), quotes {quotes:,.0f}/s"
                  f" ({quotes / baseline:.2f})")  # fmt: skip
    finally:
        await pool.close()
        await drop_database(POSTGRES_URL, url)
    return {
        "rounds": rounds,
        "pairs_ratio_median": statistics.median(r["pairs"] / r["baseline"] for r in rounds),
        "pairs_stepwise_ratio_median": statistics.median(
            r["pairs_stepwise"] / r["baseline"] for r in rounds
        ),
        "quotes_ratio_median": statistics.median(r["quotes"] / r["baseline"] for r in rounds),
        "concurrency": CONCURRENCY,
        "pairs_per_round": PAIRS,
    }


def main() -> int:
    """Run, print, write the figures."""
    figures = asyncio.run(run())
    print(f"lock+confirm / baseline (median): {figures['pairs_ratio_median']:.2f}"
          f" (stepwise confirm {figures['pairs_stepwise_ratio_median']:.2f});"
          f" quotes / baseline (median): {figures['quotes_ratio_median']:.2f}")  # fmt: skip
    OUT.mkdir(exist_ok=True)
    (OUT / "redemption_bench.json").write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
