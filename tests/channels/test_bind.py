"""Bulk bind: within stock and limits, idempotent per (job, user), resumable after a crash."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from gateway.campaigns.ops import keys_of
from gateway.channels.bind import BindRunner, count_users, request_id_for
from gateway.channels.bind_store import BindJobs
from tests.channels.conftest import outbox_users
from tests.helpers import T0_MS, published


class Crash(Exception):
    """The process dying between deciding a batch and committing its checkpoint."""


class CrashingRunner(BindRunner):
    """Dies before the checkpoint of its ``crash_at``-th batch (its claims decided, its
    report lines written)."""

    def __init__(self, *args, crash_at: int, **kwargs):
        super().__init__(*args, **kwargs)
        self._left = crash_at

    async def _checkpoint(self, *args):
        self._left -= 1
        if self._left == 0:
            raise Crash
        return await super()._checkpoint(*args)


def users_csv(path: Path, n: int, *, header: bool = True) -> Path:
    lines = (["user_id"] if header else []) + [f"user-{i}" for i in range(n)]
    path.write_text("\n".join(lines) + "\n")
    return path


def report_rows(path: Path) -> list[list[str]]:
    rows = [line.split(",") for line in path.read_text().splitlines()]
    assert rows[0] == ["user_id", "reason", "coupon_id"]
    return rows[1:]


async def test_crash_mid_bind_and_resume_nobody_twice_exact_stock(
    claims, pool, redis, ops, clock, tmp_path
):
    clock.set(T0_MS + 1)
    # A per-user limit of 5: only the job's idempotence keeps a user at one coupon.
    campaign = await published(ops, stock=130, perUserLimit=5)
    source = users_csv(tmp_path / "users.csv", 200)
    report = tmp_path / "report.csv"
    jobs = BindJobs(pool)
    job = f"job-{campaign.id}"

    with pytest.raises(Crash):
        await CrashingRunner(claims, jobs, batch=40, crash_at=3).run(
            job, campaign.id, source, report
        )
    before = await jobs.get(job)
    assert before is not None
    assert before.done == 80  # two batches committed; the third was decided, not committed
    assert int(await redis.hget(keys_of(campaign).counters, "issued")) == 120

    state = await BindRunner(claims, jobs, batch=40).run(job, campaign.id, source, report)

    assert state.status == "done"
    assert state.total == state.done == 200
    assert state.reasons == {"ACCEPTED": 130, "SOLD_OUT": 70}
    keys = keys_of(campaign)
    assert int(await redis.hget(keys.counters, "issued")) == 130
    winners = await outbox_users(redis, keys.outbox)
    assert len(winners) == 130
    assert max(Counter(winners).values()) == 1  # nobody twice
    rows = report_rows(report)
    assert [row[0] for row in rows] == [f"user-{i}" for i in range(200)]  # each once, in order
    assert {row[0] for row in rows if row[1] == "ACCEPTED"} == set(winners)

    # Running the finished job again changes nothing.
    again = await BindRunner(claims, jobs, batch=40).run(job, campaign.id, source, report)
    assert again.done == 200
    assert int(await redis.hget(keys.counters, "issued")) == 130


async def test_a_rerun_under_a_new_job_id_meets_the_campaign_limits(
    claims, pool, redis, ops, clock, tmp_path
):
    clock.set(T0_MS + 1)
    campaign = await published(ops, stock=100, perUserLimit=1)
    source = users_csv(tmp_path / "users.csv", 10, header=False)
    jobs = BindJobs(pool)
    first = await BindRunner(claims, jobs).run(
        "a-" + campaign.id, campaign.id, source, tmp_path / "a"
    )
    second = await BindRunner(claims, jobs).run(
        "b-" + campaign.id, campaign.id, source, tmp_path / "b"
    )
    assert first.reasons == {"ACCEPTED": 10}
    assert second.reasons == {"USER_LIMIT": 10}


async def test_bad_lines_are_reported_not_claimed(claims, pool, ops, clock, tmp_path):
    clock.set(T0_MS + 1)
    campaign = await published(ops, stock=10)
    source = tmp_path / "users.csv"
    source.write_text('user_id,name\nalice,A\n\n"bad id",B\nbob\n')
    assert count_users(source) == 3
    report = tmp_path / "report.csv"
    state = await BindRunner(claims, BindJobs(pool)).run(
        "j-" + campaign.id, campaign.id, source, report
    )
    assert state.reasons == {"ACCEPTED": 2, "INVALID_REQUEST": 1}
    assert [row[:2] for row in report_rows(report)] == [
        ["alice", "ACCEPTED"],
        ['"""bad id"""', "INVALID_REQUEST"],
        ["bob", "ACCEPTED"],
    ]


def test_request_ids_are_per_job_and_user_and_fit_the_claim_api():
    assert request_id_for("j1", "u1") == request_id_for("j1", "u1")
    assert (
        len({request_id_for("j1", "u1"), request_id_for("j2", "u1"), request_id_for("j1", "u2")})
        == 3
    )
    assert len(request_id_for("j1", "u1")) <= 64


async def test_admin_api_shows_progress(client, claims, pool, ops, clock, tmp_path):
    from tests.helpers import ADMIN_TOKEN

    clock.set(T0_MS + 1)
    campaign = await published(ops, stock=10)
    source = users_csv(tmp_path / "users.csv", 5)
    await BindRunner(claims, BindJobs(pool)).run(
        "p-" + campaign.id, campaign.id, source, tmp_path / "r"
    )
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    response = await client.get(f"/admin/bind-jobs/p-{campaign.id}", headers=headers)
    body = await response.json()
    assert response.status == 200
    assert body["done"] == body["total"] == 5
    assert body["status"] == "done"
    assert body["reasons"] == {"ACCEPTED": 5}
    assert "usersPerSecond" in body
    assert "etaSeconds" in body
    missing = await client.get("/admin/bind-jobs/nope", headers=headers)
    assert missing.status == 404
