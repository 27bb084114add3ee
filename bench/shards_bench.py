"""``make bench`` (stock shards): one hot campaign over 1 and over 4 stock shards, and many
campaigns, on one redis-server, in the same run; the figures ``docs/scaling.md`` uses.

Claims go through ``ClaimService.grant`` in this process (routing, batching per shard,
borrowing, the lean Redis connection; no HTTP, which ``bench/claim_bench.py`` measures):
``CONCURRENCY`` claims in flight, each from a new user, against Redis 7 with AOF
``appendfsync everysec``. Workloads, interleaved for ``BENCH_ROUNDS`` rounds (3) of
``BENCH_SHARDS_SECONDS`` (4) each, so each round compares runs seconds apart:

1. hot, 1 shard     one campaign with stock to spare, every claim accepted;
2. hot, 4 shards    the same with ``stockShards`` 4 (on one Redis: the cost of sharding);
3. 64 campaigns     claims spread over 64 campaigns (smaller batches: the many-campaign case);
4. sold out, 1 / 4 shards  the herd after the last coupon, answered from the worker's memory
                    (the winners set; one per stock shard for a sharded campaign).

Per workload: claims/s (wall), this process's CPU µs per claim (the gateway side), and
Redis's: ``INFO commandstats`` µs inside EVALSHA per claim (the scripts alone) and
``INFO cpu`` (user + sys) µs per claim (the server's whole cost: parsing, the scripts,
replies, the AOF). One master decides at most 1e6 / (Redis CPU µs per claim) claims/s.

Then the drain: ``DRAIN_STOCK`` (20,000) over 4 shards with 70 % of users routed to shard 0,
claimed until sold out: transfers made, µs per claim, and the check that exactly the stock
was issued. Figures are printed and written to ``bench/out/shards_bench.json``.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec

from gateway.campaigns.ops import keys_of, write_campaign
from gateway.campaigns.spec import Campaign, Status, decode_spec
from gateway.claim.service import ClaimRequest, ClaimService
from gateway.infra.auth import Claimant
from gateway.infra.clients import redis_client
from gateway.infra.clock import SystemClock
from gateway.infra.settings import Settings
from gateway.reasons import Reason
from gateway.shards.stock import ShardedStock, all_shards, shard_of
from gateway.stack.servers import RedisServer

ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
SECONDS = float(os.environ.get("BENCH_SHARDS_SECONDS", "4"))
CONCURRENCY = 512
SHARDS = 4
MANY = 64
DRAIN_STOCK = 20_000
OUT = Path(__file__).resolve().parent / "out"
BASES = {"sold out, 4 shards": "sold out, 1 shard"}  # the others compare with "hot, 1 shard"


def campaign(campaign_id: str, stock: int, shards: int) -> Campaign:
    """An active campaign open now, one coupon per user."""
    now = datetime.now(UTC)
    spec = decode_spec(
        {
            "id": campaign_id,
            "name": "bench",
            "kind": "no_threshold",
            "faceValueCents": 500,
            "stock": stock,
            "stockShards": shards,
            "startsAt": (now - timedelta(minutes=1)).isoformat(),
            "endsAt": (now + timedelta(days=1)).isoformat(),
        }
    )
    return msgspec.convert({**msgspec.to_builtins(spec), "status": Status.ACTIVE.value}, Campaign)


class Counts:
    """Redis's and this process's counters, to take differences of."""

    def __init__(self, info: dict[str, Any], stats: dict[str, Any]) -> None:
        self.redis_cpu_s = float(info["used_cpu_user"]) + float(info["used_cpu_sys"])
        evalsha = stats.get("cmdstat_evalsha", {})
        self.script_us = float(evalsha.get("usec", 0))
        self.calls = int(evalsha.get("calls", 0))
        self.own_cpu_s = time.process_time()
        self.wall_s = time.perf_counter()


async def counts(redis: Any) -> Counts:
    return Counts(await redis.info("cpu"), await redis.info("commandstats"))


class Bench:
    def __init__(self, settings: Settings) -> None:
        self.redis = redis_client(settings)
        self.service = ClaimService(self.redis, SystemClock(), settings)
        self.users = 0

    async def run(self, campaign_ids: list[str], seconds: float) -> dict[str, float]:
        """Claims for ``seconds``, new users, spread over ``campaign_ids``."""
        decided = accepted = 0
        deadline = time.perf_counter() + seconds

        async def worker() -> None:
            nonlocal decided, accepted
            while time.perf_counter() < deadline:
                self.users += 1
                outcome = await self.grant(campaign_ids[self.users % len(campaign_ids)])
                decided += 1
                accepted += outcome is Reason.ACCEPTED

        before = await counts(self.redis)
        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
        after = await counts(self.redis)
        return figures(before, after, decided, accepted)

    async def grant(self, campaign_id: str, user: str = "") -> Reason:
        user = user or f"u{self.users}"
        who = Claimant(user, False, 0, "", 2**31, 0)
        request = ClaimRequest(campaign_id, f"r-{user}", f"d-{user}", "seckill")
        return (await self.service.grant(who, request)).reason


def figures(before: Counts, after: Counts, decided: int, accepted: int) -> dict[str, float]:
    n = max(decided, 1)
    return {
        "claims": decided,
        "accepted": accepted,
        "claims_per_s": decided / (after.wall_s - before.wall_s),
        "gateway_cpu_us_per_claim": (after.own_cpu_s - before.own_cpu_s) * 1e6 / n,
        "redis_script_us_per_claim": (after.script_us - before.script_us) / n,
        "redis_cpu_us_per_claim": (after.redis_cpu_s - before.redis_cpu_s) * 1e6 / n,
        "claims_per_script_call": decided / max(after.calls - before.calls, 1),
    }


async def drain(bench: Bench) -> dict[str, float]:
    """A skewed herd over 4 shards until sold out: exact stock, and what borrowing cost."""
    await write_campaign(bench.redis, campaign("drain", DRAIN_STOCK, SHARDS))
    users: list[str] = []
    n = 0
    while len(users) < DRAIN_STOCK * 3 // 2:  # 70 % on shard 0, the rest anywhere
        n += 1
        user = f"drain-{n}"
        if len(users) % 10 < 7 and shard_of(user, SHARDS) != 0:
            continue
        users.append(user)
    queue = iter(users)
    reasons: dict[str, int] = {}

    async def worker() -> None:
        for user in queue:
            reason = await bench.grant("drain", user)
            reasons[reason.value] = reasons.get(reason.value, 0) + 1

    before = await counts(bench.redis)
    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    after = await counts(bench.redis)
    stock = ShardedStock(bench.redis)
    shard_keys = all_shards(keys_of(campaign("drain", DRAIN_STOCK, SHARDS)), SHARDS)
    issued = sum([int(await bench.redis.hget(k.counters, "issued") or 0) for k in shard_keys])
    transfers = sum([await bench.redis.scard(k.credited) for k in shard_keys])
    left = sum(f.left for f in await stock.figures(shard_keys[0], SHARDS))
    result: dict[str, Any] = figures(before, after, len(users), reasons.get("ACCEPTED", 0))
    result.update(issued=issued, left=left, transfers=transfers, reasons=reasons)
    assert issued == DRAIN_STOCK == reasons.get("ACCEPTED"), (issued, reasons)
    return result


async def main() -> None:
    with tempfile.TemporaryDirectory() as data:
        server = RedisServer(Path(data), aof=True, fsync="everysec").start()
        try:
            settings = Settings(redis_url=server.url)
            bench = Bench(settings)
            await bench.service.detect_server()
            workloads = {
                "hot, 1 shard": ["hot-1"],
                "hot, 4 shards": ["hot-4"],
                f"{MANY} campaigns": [f"many-{i}" for i in range(MANY)],
                "sold out, 1 shard": ["gone-1"],
                "sold out, 4 shards": ["gone-4"],
            }
            await write_campaign(bench.redis, campaign("hot-1", 10**9, 1))
            await write_campaign(bench.redis, campaign("hot-4", 10**9, SHARDS))
            for cid, shards in (("gone-1", 1), ("gone-4", SHARDS)):
                await write_campaign(bench.redis, campaign(cid, SHARDS, shards))
            for cid in workloads[f"{MANY} campaigns"]:
                await write_campaign(bench.redis, campaign(cid, 10**9, 1))
            for ids in workloads.values():  # warm-up: caches, scripts loaded
                await bench.run(ids, 0.5)
            runs: dict[str, list[dict[str, float]]] = {name: [] for name in workloads}
            for _ in range(ROUNDS):
                for name, ids in workloads.items():
                    runs[name].append(await bench.run(ids, SECONDS))
            drained = await drain(bench)
            await bench.service.aclose()
            await bench.redis.aclose()
        finally:
            server.stop()
    report(runs, drained)


def report(runs: dict[str, list[dict[str, float]]], drained: dict[str, Any]) -> None:
    columns = ("claims_per_s", "gateway_cpu_us_per_claim", "redis_script_us_per_claim",
               "redis_cpu_us_per_claim", "claims_per_script_call")  # fmt: skip
    print(f"\nstock shards, one redis-server, {ROUNDS} rounds of {SECONDS:.0f} s (medians)")
    print(f"{'workload':<20}{'claims/s':>10}{'gw µs':>8}{'script µs':>11}{'redis µs':>10}"
          f"{'batch':>10}{'1e6/redis µs':>14}  ratio to 1 shard, per round")  # fmt: skip
    medians = {}
    for name, rounds in runs.items():
        med = {c: statistics.median(r[c] for r in rounds) for c in columns}
        medians[name] = med
        base = runs[BASES.get(name, "hot, 1 shard")]
        ratios = [r["claims_per_s"] / b["claims_per_s"] for r, b in
                  zip(rounds, base, strict=True)]  # fmt: skip
        print(f"{name:<20}{med['claims_per_s']:>10,.0f}{med['gateway_cpu_us_per_claim']:>8.1f}"
              f"{med['redis_script_us_per_claim']:>11.1f}{med['redis_cpu_us_per_claim']:>10.1f}"
              f"{med['claims_per_script_call']:>10,.1f}"
              f"{1e6 / med['redis_cpu_us_per_claim']:>14,.0f}"
              f"  {', '.join(f'{x:.2f}' for x in ratios)}")  # fmt: skip
    print(f"drain: {DRAIN_STOCK:,} over {SHARDS} shards, 70 % of users on shard 0: issued "
          f"{drained['issued']:,} (exact), {drained['transfers']} transfers, "
          f"{drained['claims_per_s']:,.0f} claims/s, redis {drained['redis_cpu_us_per_claim']:.1f}"
          f" µs/claim, answers {drained['reasons']}")  # fmt: skip
    OUT.mkdir(exist_ok=True)
    (OUT / "shards_bench.json").write_text(
        json.dumps({"rounds": runs, "medians": medians, "drain": drained}, indent=2)
    )


if __name__ == "__main__":
    asyncio.run(main())
