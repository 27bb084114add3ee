"""``flashclaim codes …`` and ``flashclaim bind …``: the channels' operator commands.

``codes generate`` writes the CSV (to a file, or stdout) and says on stderr how long it
took; ``bind`` runs or resumes a job with a progress bar on stderr (tqdm: done / total,
rate, ETA) and prints the final counts as JSON; ``bind --status`` only reads them.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterable
from pathlib import Path

import msgspec
import orjson
from tqdm import tqdm

from gateway.campaigns.store import CampaignNotFound
from gateway.channels.bind import BindRunner
from gateway.channels.bind_store import BindJobs, JobState, progress
from gateway.channels.code_store import CodeBatches, csv_lines
from gateway.channels.codes import CodeHasher
from gateway.claim.service import ClaimService
from gateway.infra import clients
from gateway.infra.clients import open_clients
from gateway.infra.clock import SystemClock
from gateway.infra.console import progress as say
from gateway.infra.settings import Settings


async def generate_codes(settings: Settings, campaign_id: str, count: int, out: str) -> int:
    """Generate ``count`` codes for a campaign into the CSV ``out`` ("-": stdout)."""
    hasher = CodeHasher.for_settings(settings.code_secret, settings.jwt_secret)
    started = time.perf_counter()
    async with open_clients(settings) as opened:
        try:
            batch_id, codes = await CodeBatches(opened.pool, opened.redis, hasher).create(
                campaign_id, count
            )
        except CampaignNotFound:
            say(f"no campaign {campaign_id}")
            return 1
    _write_csv(out, csv_lines(campaign_id, batch_id, codes))
    say(f"{count} codes in batch {batch_id} in {time.perf_counter() - started:.1f} s")
    return 0


def _write_csv(out: str, chunks: Iterable[bytes]) -> None:
    with contextlib.ExitStack() as stack:
        sink = sys.stdout.buffer if out == "-" else stack.enter_context(Path(out).open("wb"))
        for chunk in chunks:
            sink.write(chunk)
        sink.flush()


async def bind(
    settings: Settings, campaign_id: str, source: str, job_id: str, report: str, batch: int
) -> int:
    """Run (or resume) bind job ``job_id``: every user of ``source`` gets the coupon."""
    # Bind is the operator's own traffic: the per-client request caps do not apply.
    redis = clients.claim_redis_client(settings)
    claims = ClaimService(redis, SystemClock(), settings)
    await claims.detect_server()
    pool = await clients.create_pool(settings.database_url, max_size=2)
    bar = tqdm(unit="user", file=sys.stderr, dynamic_ncols=True, smoothing=0.1)
    try:

        def show(state: JobState) -> None:
            bar.total = state.total
            bar.n = state.done
            bar.set_postfix_str(_top_reasons(state.reasons), refresh=False)
            bar.refresh()

        runner = BindRunner(claims, BindJobs(pool), batch=batch, progress=show)
        state = await runner.run(job_id, campaign_id, Path(source), Path(report))
        show(state)
    finally:
        bar.close()
        await claims.aclose()
        await pool.close()
        await redis.aclose()
    print(_json(state))
    return 0


async def status(settings: Settings, job_id: str) -> int:
    """Print a bind job's progress."""
    async with open_clients(settings) as opened:
        state = await BindJobs(opened.pool).get(job_id)
    if state is None:
        say(f"no bind job {job_id}")
        return 1
    print(_json(state))
    return 0


def _json(state: JobState) -> str:
    data = msgspec.to_builtins(progress(state))
    return orjson.dumps(data, option=orjson.OPT_INDENT_2).decode()


def _top_reasons(reasons: dict[str, int]) -> str:
    top = sorted(reasons.items(), key=lambda item: -item[1])[:3]
    return " ".join(f"{name}={count}" for name, count in top)
