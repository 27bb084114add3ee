"""A/B two variants of one piece of the claim path, in one process, against a real Redis.

``python -m bench.ab SCENARIO [SCENARIO ...]`` (``BENCH_ROUNDS``, 5; ``BENCH_AB_SECONDS``, 3):
each scenario's two variants take turns (A B, then B A, ...) for that many seconds per
turn, each turn counting the claims it decided and this process's CPU time; the medians
give ratios B / A of claims per second and of CPU per claim (the cost per core, steadier
than wall-clock rates on a shared machine). Before
the real pair, the scenario runs A against A: that ratio is the noise floor of this
machine at this moment (about +-4 % on the 2-core VM), so a B / A inside it is no gain.

Both variants share the process, the Redis (AOF, ``appendfsync everysec``, as the bench's)
and the moment, so the machine's load moves both alike. What a scenario measures is the
worker's side of the claim path (our CPU plus the Redis round trips), one batch in flight
at a time, ``BATCH`` claims per batch (the batch size ``make bench`` sees when accepting).
The scenarios live in ``bench/ab_cases.py``.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from gateway.stack.servers import RedisServer

ROUNDS = int(os.environ.get("BENCH_ROUNDS", "5"))
SECONDS = float(os.environ.get("BENCH_AB_SECONDS", "3"))
BATCH = 28

#: One unit of work: decide one batch, return how many claims it decided.
Step = Callable[[], Awaitable[int]]


@dataclass(frozen=True)
class Pair:
    """What a scenario hands the harness: two ways of doing the same work."""

    a_name: str
    a: Step
    b_name: str
    b: Step


@dataclass(frozen=True)
class Turn:
    """One variant's turn: claims per wall second and this process's CPU per claim."""

    per_s: float
    cpu_us: float


async def rate(step: Step, seconds: float) -> Turn:
    """Call ``step`` back to back for ``seconds``: claims/s and worker CPU µs per claim."""
    done = 0
    started, cpu = time.perf_counter(), time.process_time()
    deadline = started + seconds
    while time.perf_counter() < deadline:
        done += await step()
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    return Turn(done / wall, cpu / max(done, 1) * 1e6)


@dataclass(frozen=True)
class Comparison:
    """Medians over the rounds; ratios are per round (B against the A of its round)."""

    a: Turn
    b: Turn
    per_s_ratio: float  # B / A claims per second: > 1 is faster
    cpu_ratio: float  # B / A CPU per claim: < 1 is cheaper

    def line(self) -> str:
        return (
            f"{self.a.per_s:,.0f} vs {self.b.per_s:,.0f} claims/s (B/A {self.per_s_ratio:.3f}),"
            f" {self.a.cpu_us:.1f} vs {self.b.cpu_us:.1f} CPU us/claim (B/A {self.cpu_ratio:.3f})"
        )


async def compare(a: Step, b: Step, rounds: int, seconds: float) -> Comparison:
    """Interleaved turns (A B, B A, ...), medians and median per-round ratios."""
    await rate(a, 0.5)  # warm both: connections, the script cache, the allocator
    await rate(b, 0.5)
    a_turns, b_turns = [], []
    for round_ in range(rounds):
        if round_ % 2 == 0:
            a_turns.append(await rate(a, seconds))
            b_turns.append(await rate(b, seconds))
        else:
            b_turns.append(await rate(b, seconds))
            a_turns.append(await rate(a, seconds))
    pairs = list(zip(a_turns, b_turns, strict=True))
    return Comparison(
        Turn(
            statistics.median(t.per_s for t in a_turns),
            statistics.median(t.cpu_us for t in a_turns),
        ),
        Turn(
            statistics.median(t.per_s for t in b_turns),
            statistics.median(t.cpu_us for t in b_turns),
        ),
        statistics.median(y.per_s / x.per_s for x, y in pairs),
        statistics.median(y.cpu_us / x.cpu_us for x, y in pairs),
    )


async def run_scenario(name: str, redis_url: str) -> None:
    """Print A/A (noise floor) and A/B for one scenario."""
    from bench.ab_cases import SCENARIOS

    async with SCENARIOS[name](redis_url) as pair:
        noise = await compare(pair.a, pair.a, ROUNDS, SECONDS)
        print(f"{name} A/A ({pair.a_name} twice): {noise.line()}", flush=True)
        result = await compare(pair.a, pair.b, ROUNDS, SECONDS)
        print(f"{name} A/B (A {pair.a_name}; B {pair.b_name}): {result.line()}", flush=True)


def main(argv: list[str]) -> int:
    from bench.ab_cases import SCENARIOS

    names = argv or sorted(SCENARIOS)
    unknown = [name for name in names if name not in SCENARIOS]
    if unknown:
        print(f"unknown scenario(s) {unknown}; known: {', '.join(sorted(SCENARIOS))}")
        return 2
    work = Path(tempfile.mkdtemp(prefix="flashclaim-ab-"))
    server = RedisServer(work, aof=True, fsync="everysec").start()
    print(f"A/B: {ROUNDS} interleaved rounds of {SECONDS:g} s per variant, {BATCH} claims a batch")
    try:
        for name in names:
            asyncio.run(run_scenario(name, server.url))
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
