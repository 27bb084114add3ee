"""Bind jobs in PostgreSQL: each job's checkpoint, counts and progress.

One row per job (``migrations/0021_bind_jobs.sql``). The runner commits a checkpoint
after every batch; the admin API and the CLI read the same row for done / total / rate /
ETA, so progress is visible from anywhere while a job runs on an operator's machine.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime

import asyncpg
import msgspec
import orjson


class JobState(msgspec.Struct, rename="camel"):
    """A bind job as it stands."""

    job_id: str
    campaign_id: str
    source: str
    total: int
    done: int
    input_offset: int
    report_offset: int
    reasons: dict[str, int]
    status: str  # running | done
    started_at: datetime
    updated_at: datetime

    @property
    def rate(self) -> float:
        """Users decided per second since the job started (0 before any)."""
        elapsed = (self.updated_at - self.started_at).total_seconds()
        return self.done / elapsed if elapsed > 0 else 0.0

    @property
    def eta_s(self) -> float | None:
        """Seconds left at the job's rate (None while no rate is known)."""
        rate = self.rate
        return max(self.total - self.done, 0) / rate if rate else None


class JobProgress(JobState, kw_only=True):
    """A bind job with its rate and ETA, as the admin API answers it."""

    users_per_second: float
    eta_seconds: float | None


class JobMismatch(ValueError):
    """The job id exists for another campaign or list."""


_COLUMNS = (
    "job_id, campaign_id, source, total, done, input_offset, report_offset, reasons, status,"
    " started_at, updated_at"
)


class BindJobs:
    """The ``bind_jobs`` table."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def start(self, job_id: str, campaign_id: str, source: str) -> JobState:
        """The job's row, created if new. A job id names one campaign and one list."""
        await self._pool.execute(
            "INSERT INTO bind_jobs (job_id, campaign_id, source) VALUES ($1, $2, $3)"
            " ON CONFLICT (job_id) DO NOTHING",
            job_id,
            campaign_id,
            source,
        )
        state = await self.get(job_id)
        if state is None or state.campaign_id != campaign_id:
            raise JobMismatch(f"job {job_id} belongs to campaign {state and state.campaign_id}")
        return state

    async def get(self, job_id: str) -> JobState | None:
        """A job, or None."""
        row = await self._pool.fetchrow(
            f"SELECT {_COLUMNS} FROM bind_jobs WHERE job_id = $1", job_id
        )
        return None if row is None else _state(row)

    async def set_total(self, job_id: str, total: int) -> JobState:
        """Record how many users the list holds."""
        return await self._returning("SET total = $2", job_id, total)

    async def checkpoint(
        self, job_id: str, done: int, input_offset: int, report_offset: int, counts: Counter[str]
    ) -> JobState:
        """Commit one batch: users decided, where to resume, reasons counted."""
        return await self._returning(
            "SET done = done + $2, input_offset = $3, report_offset = $4,"
            " reasons = (SELECT coalesce(jsonb_object_agg(key, total), '{}'::jsonb) FROM"
            "  (SELECT key, sum(value::bigint) AS total FROM"
            "   (SELECT * FROM jsonb_each_text(reasons)"
            "    UNION ALL SELECT * FROM jsonb_each_text($5::jsonb)) AS parts"
            "   GROUP BY key) AS sums),"
            " updated_at = now()",
            job_id,
            done,
            input_offset,
            report_offset,
            orjson.dumps(counts).decode(),
        )

    async def finish(self, job_id: str) -> JobState:
        """Mark the job done."""
        return await self._returning("SET status = 'done', updated_at = now()", job_id)

    async def _returning(self, assignments: str, *args: object) -> JobState:
        row = await self._pool.fetchrow(
            f"UPDATE bind_jobs {assignments} WHERE job_id = $1 RETURNING {_COLUMNS}", *args
        )
        if row is None:
            raise LookupError(f"no bind job {args[0]}")
        return _state(row)


def _state(row: asyncpg.Record) -> JobState:
    data = dict(row)
    reasons = data["reasons"]
    data["reasons"] = orjson.loads(reasons) if isinstance(reasons, str) else reasons
    return JobState(**data)


def progress(state: JobState) -> JobProgress:
    """The job with its rate and ETA."""
    return JobProgress(
        **msgspec.structs.asdict(state),
        users_per_second=round(state.rate, 1),
        eta_seconds=None if state.eta_s is None else round(state.eta_s, 1),
    )
