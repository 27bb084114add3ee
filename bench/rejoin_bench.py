"""How long rows stop after a consumer process is SIGKILLed and started again.

``python -m bench.rejoin_bench`` (``BENCH_ROUNDS``, 2): for each way of joining the group,
a ``flashclaim consumer`` process persists claims from a 12-partition topic; it is killed
with SIGKILL (no leave-group, no commit), a new process is started at once with the same
settings, and more claims are produced. The figure is the time from the kill until every
one of them is a row. The ways:

- ``dynamic``: a new member id per process. The broker keeps the dead member's partitions
  until its session times out (``FLASHCLAIM_CONSUMER_SESSION_TIMEOUT_MS``), then rebalances;
- ``static``: ``FLASHCLAIM_CONSUMER_INSTANCE_ID`` names the process; a process restarted under
  the same name takes the dead one's place and partitions at once, where the broker
  supports static membership (KIP-345).

Printed and written to ``bench/out/rejoin_bench.json``; a process start costs its Python
imports (about a second), included in every figure.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import asyncpg
import msgspec

from bench.claim_bench import OUT, POSTGRES_URL
from bench.handoff_ab import produce, sample_events
from gateway.claim import events
from gateway.infra import clients
from gateway.infra.settings import Settings, to_env
from gateway.stack.servers import KafkaBroker, drop_database, scratch_database

ROUNDS = int(os.environ.get("BENCH_ROUNDS", "2"))
CLAIMS = 200
#: name: (FLASHCLAIM_CONSUMER_INSTANCE_ID, FLASHCLAIM_CONSUMER_SESSION_TIMEOUT_MS)
WAYS = {
    "dynamic, 10 s session": ("", 10_000),  # aiokafka's default, the setting's before
    "static, 10 s session": ("consumer-0", 10_000),
    "dynamic, 6 s session": ("", 6_000),  # the setting's default
    "static, 6 s session": ("consumer-0", 6_000),
}


async def stored(settings: Settings, claims: list[events.ClaimEvent]) -> int:
    """How many of ``claims`` are rows (the topic also holds other rounds' claims)."""
    conn = await asyncpg.connect(settings.database_url)
    try:
        ids = [claim.coupon_id for claim in claims]
        return int(
            await conn.fetchval(
                "SELECT count(*) FROM coupons WHERE coupon_id = ANY($1::uuid[])", ids
            )
        )
    finally:
        await conn.close()


async def wait_rows(
    settings: Settings, claims: list[events.ClaimEvent], within_s: float = 120.0
) -> None:
    deadline = time.monotonic() + within_s
    while (found := await stored(settings, claims)) < len(claims):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{found} of {len(claims)} rows after {within_s:.0f} s")
        await asyncio.sleep(0.05)


@contextmanager
def consumer_process(settings: Settings) -> Iterator[subprocess.Popen[bytes]]:
    env = {**os.environ, **to_env(msgspec.structs.replace(settings, log_level="WARNING"))}
    process = subprocess.Popen([sys.executable, "-m", "gateway.cli", "consumer"], env=env)
    try:
        yield process
    finally:
        if process.poll() is None:
            process.terminate()
            process.wait(30)


def one_kill(settings: Settings) -> float:
    """Seconds from a SIGKILL until the claims produced after it are all rows."""
    first, second = sample_events(CLAIMS), sample_events(CLAIMS)
    with consumer_process(settings) as process:
        asyncio.run(produce(settings, first))
        asyncio.run(wait_rows(settings, first))
        process.send_signal(signal.SIGKILL)
        killed = time.perf_counter()
        process.wait()
    with consumer_process(settings):
        asyncio.run(produce(settings, second))
        asyncio.run(wait_rows(settings, second))
        return time.perf_counter() - killed


async def empty(settings: Settings) -> None:
    conn = await asyncpg.connect(settings.database_url)
    try:
        await conn.execute("TRUNCATE coupons CASCADE")
    finally:
        await conn.close()


def main() -> int:
    broker = KafkaBroker().start()
    database_url = asyncio.run(scratch_database(POSTGRES_URL, prefix="flashclaim_rejoin"))
    base = Settings.from_env(
        {}, database_url=database_url, kafka_bootstrap=broker.bootstrap, claims_topic="rejoin"
    )
    figures: dict[str, list[float]] = {way: [] for way in WAYS}
    try:
        asyncio.run(clients.ensure_topics(base))
        for round_ in range(ROUNDS):
            for n, (way, (instance, session_ms)) in enumerate(WAYS.items()):
                settings = msgspec.structs.replace(
                    base,
                    consumer_group=f"rejoin-{n}-{round_}",
                    consumer_instance_id=instance,
                    consumer_session_timeout_ms=session_ms,
                )
                asyncio.run(empty(settings))
                figures[way].append(one_kill(settings))
                print(f"round {round_} {way}: rows again {figures[way][-1]:.1f} s after the kill")
    finally:
        broker.stop()
        asyncio.run(drop_database(POSTGRES_URL, database_url))
    print(f"\nconsumer rows again after a SIGKILL and a restart, median of {ROUNDS}")
    for way, seconds in figures.items():
        each = ", ".join(f"{s:.1f}" for s in seconds)
        print(f"{way:<22} {statistics.median(seconds):5.1f} s  ({each})")
    OUT.mkdir(exist_ok=True)
    (OUT / "rejoin_bench.json").write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
