"""Bulk bind: give a campaign's coupon to every user of a list, through the claim path.

The list is a CSV whose first column is a user id (a ``user_id`` header is skipped), read
as a stream, so ten million lines cost no memory. Users are decided in batches through
the same ``ClaimService`` as every claim (channel ``bind``): stock, budget, limits,
blocklists and the exclusion group hold exactly as for a click. Each claim's requestId is
derived from (job, user), so deciding a user twice replays the first answer.

Crash safety: after each batch the report lines are flushed to disk, then the checkpoint
(the input's and the report's byte offsets, counts by reason) is committed in PostgreSQL.
A resumed job truncates its report to the checkpoint and reads on from there; the users of
the batch in flight when it died are decided again and get their coupon replayed, never a
second one (as long as the replay records live: ``FLASHCLAIM_REPLAY_TTL_S``; a campaign's
per-user limit holds regardless).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from gateway.channels.bind_store import BindJobs, JobState
from gateway.claim.service import ClaimRequest, ClaimService, Outcome
from gateway.identifiers import USER_ID_PATTERN
from gateway.infra.auth import Claimant
from gateway.reasons import Reason

CHANNEL = "bind"
_USER_ID = re.compile(USER_ID_PATTERN)

Progress = Callable[[JobState], None]


def request_id_for(job_id: str, user_id: str) -> str:
    """The requestId of ``user_id``'s claim in ``job_id``: the same on every run."""
    return "bind-" + hashlib.blake2b(f"{job_id}\x00{user_id}".encode(), digest_size=16).hexdigest()


def device_for(user_id: str) -> str:
    """A device id of the user's own: an operator's list must not trip device limits."""
    return "bind-" + hashlib.blake2b(user_id.encode(), digest_size=8).hexdigest()


def count_users(source: Path) -> int:
    """Lines that may hold a user (the header and blank lines aside)."""
    total = 0
    with source.open("rb") as lines:
        for i, line in enumerate(lines):
            if line.strip() and not (i == 0 and _is_header(line)):
                total += 1
    return total


def _is_header(line: bytes) -> bool:
    return line.split(b",", 1)[0].strip().lower() in (b"user_id", b"userid", b"user")


class BindRunner:
    """Runs (or resumes) one bind job."""

    def __init__(
        self, claims: ClaimService, jobs: BindJobs, *, batch: int = 2000,
        progress: Progress | None = None,
    ) -> None:  # fmt: skip
        self._claims = claims
        self._jobs = jobs
        self._batch = batch
        self._progress = progress

    async def run(self, job_id: str, campaign_id: str, source: Path, report: Path) -> JobState:
        """Bind every user of ``source``; writes ``report`` (user, reason, coupon)."""
        state = await self._jobs.start(job_id, campaign_id, str(source))
        if state.total == 0:
            state = await self._jobs.set_total(job_id, count_users(source))
        if state.status == "done":
            return state
        report.open("ab").close()  # create it if new
        with source.open("rb") as reader, report.open("r+b") as writer:
            writer.truncate(state.report_offset)
            writer.seek(state.report_offset)
            if state.report_offset == 0:
                writer.write(b"user_id,reason,coupon_id\n")
            reader.seek(state.input_offset)
            while True:
                users, offset = _read_batch(reader, self._batch)
                if not users:  # the end of the list
                    break
                outcomes = await self._decide(job_id, campaign_id, users)
                writer.write(_report_lines(users, outcomes))
                writer.flush()
                os.fsync(writer.fileno())
                counts = Counter(o.reason.value for o in outcomes)
                state = await self._checkpoint(job_id, len(users), offset, writer.tell(), counts)
                if self._progress is not None:
                    self._progress(state)
        return await self._jobs.finish(job_id)

    async def _checkpoint(
        self, job_id: str, done: int, input_offset: int, report_offset: int, counts: Counter[str]
    ) -> JobState:
        return await self._jobs.checkpoint(job_id, done, input_offset, report_offset, counts)

    async def _decide(self, job_id: str, campaign_id: str, users: list[str]) -> list[Outcome]:
        return list(await asyncio.gather(*(self._one(job_id, campaign_id, u) for u in users)))

    async def _one(self, job_id: str, campaign_id: str, user: str) -> Outcome:
        if not _USER_ID.match(user):
            return Outcome(Reason.INVALID_REQUEST)
        who = Claimant(user, False, 0, "", 0, 0)
        request = ClaimRequest(campaign_id, request_id_for(job_id, user), device_for(user), CHANNEL)
        return await self._claims.grant(who, request)


def _read_batch(reader: BinaryIO, size: int) -> tuple[list[str], int]:
    """Up to ``size`` users from the reader, and the offset after them."""
    users: list[str] = []
    while len(users) < size:
        at = reader.tell()
        line = reader.readline()
        if not line:
            break
        first = line.split(b",", 1)[0].strip()
        if not first or (at == 0 and _is_header(line)):
            continue
        users.append(first.decode("utf-8", "replace"))
    return users, reader.tell()


def _report_lines(users: list[str], outcomes: list[Outcome]) -> bytes:
    return "".join(
        f"{_csv(user)},{outcome.reason.value},{outcome.coupon_id}\n"
        for user, outcome in zip(users, outcomes, strict=True)
    ).encode()


def _csv(value: str) -> str:
    """A user id as a CSV field (ids that are not valid are quoted as read)."""
    if _USER_ID.match(value):
        return value
    return '"' + value.replace('"', '""') + '"'
