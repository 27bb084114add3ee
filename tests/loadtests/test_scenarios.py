"""Every Locust scenario runs headless against the real local stack and gets a PASS verdict.

Short, bounded runs (seconds, a few dozen users): they prove the scenarios drive the stack
as intended and that the verifier checks what it must; the figures come from ``make bench``
and from SREs' own longer runs.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid
from pathlib import Path

import asyncpg
import pytest

from gateway.stack.servers import free_port
from tests.local_stack import LocalStack

LOCUST_TIMEOUT_S = 100

ROOT = Path(__file__).resolve().parents[2]


def run_scenario(
    stack: LocalStack,
    scenario: str,
    *args: str,
    users: int = 40,
    seconds: int = 6,
    run_id: str = "",
    **env: str,
) -> tuple[str, str]:
    """Run ``loadtests/<scenario>.py`` headless; (its run id, its output). Exit 0 asserted."""
    run_id = run_id or uuid.uuid4().hex[:8]
    result = subprocess.run(
        [
            sys.executable, "-m", "locust", "-f", f"loadtests/{scenario}.py", "--headless",
            "-u", str(users), "-r", str(users), "-t", f"{seconds}s",
            "--host", stack.base_url, "--run-id", run_id, "--verify-wait", "30",
            "--only-summary", *args,
        ],
        env={**stack.env, **env},
        capture_output=True,
        text=True,
        timeout=LOCUST_TIMEOUT_S,
        check=False,
    )  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "VERDICT: PASS" in output, output
    return run_id, output


def verdict_row(output: str, run_id: str, name: str) -> str:
    return next(line for line in output.splitlines() if line.startswith(f"lt-{run_id}-{name} "))


def test_seckill_herd_sells_exactly_the_stock(local_stack):
    run_id, output = run_scenario(
        local_stack, "seckill", "--stock", "60", "--countdown", "3", users=60, seconds=7
    )
    row = verdict_row(output, run_id, "seckill").split()
    assert row[1:4] == ["60", "60", "60"]  # stock, accepted, rows: sold out, all persisted
    assert "NOT_STARTED" in output  # the early herd
    assert "SOLD_OUT" in output  # then the sold-out herd


def test_skydrop_limits_and_budgets_hold(local_stack):
    # 10 s: enough opens to spend a budget of 120 coupons even on a loaded machine (6 s gave 93)
    run_id, output = run_scenario(
        local_stack, "skydrop", "--stock", "40", "--user-pool", "200", seconds=10
    )
    assert "USER_DAILY_LIMIT" in verdict_row(output, run_id, "skydrop-1")
    assert "BUDGET_EXHAUSTED" in verdict_row(output, run_id, "skydrop-0")


def test_checkout_uses_coupons_and_the_use_verdict_passes(local_stack):
    _, output = run_scenario(local_stack, "checkout", "--stock", "20", "--user-pool", "400")
    assert "use verdict: PASS" in output
    assert "use: LOCKED" in output
    assert "confirm: CONFIRMED" in output


def test_retry_storm_replays_one_coupon_per_request(local_stack):
    run_id, output = run_scenario(
        local_stack, "retry_storm", "--stock", "100", LOADTEST_CLIENT_TIMEOUT="0.004"
    )
    assert "claim: timed out" in output  # clients did give up and retry
    row = verdict_row(output, run_id, "retry").split()
    assert int(row[2]) > 0
    assert row[4:6] == ["0", "0"]  # no duplicate, none lost


def test_abuse_meets_its_limits(local_stack):
    run_id, output = run_scenario(local_stack, "abuse", "--user-pool", "100000")
    row = verdict_row(output, run_id, "abuse")
    assert "DEVICE_LIMIT" in row  # the phone farm was stopped at the device limit
    for probe in ("bad token: forged", "bad token: alg none", "bad body: unknown field"):
        assert probe in output


def test_double11_night_tops_up_for_the_second_wave(local_stack):
    run_id, output = run_scenario(
        local_stack, "double11", "--stock", "30", "--user-pool", "2000", users=30, seconds=10
    )
    row = verdict_row(output, run_id, "seckill").split()
    assert row[1] == "60"  # 30 at T0, 30 more from the top-up
    assert int(row[2]) > 30  # the second wave claimed from the top-up


def test_distributed_mode_master_creates_workers_claim(local_stack):
    run_id, port = uuid.uuid4().hex[:8], str(free_port())
    worker = subprocess.Popen(
        [sys.executable, "-m", "locust", "-f", "loadtests/seckill.py", "--worker",
         "--master-port", port, "--run-id", run_id],
        env=local_stack.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        _, output = run_scenario(
            local_stack, "seckill", "--master", "--master-bind-port", port,
            "--expect-workers", "1", "--stock", "20", "--countdown", "2", run_id=run_id,
        )  # fmt: skip
    finally:
        worker.wait(timeout=30)  # the master tells its worker to quit
    assert verdict_row(output, run_id, "seckill").split()[1:4] == ["20", "20", "20"]


async def test_verifier_fails_a_run_with_a_duplicate(local_stack):
    run_id, _ = await asyncio.to_thread(
        run_scenario, local_stack, "seckill", "--stock", "5", "--countdown", "1", users=5
    )
    conn = await asyncpg.connect(local_stack.env["FLASHCLAIM_DATABASE_URL"])
    try:  # a second row for a requestId that already has one: what a broken consumer would do
        await conn.execute(
            "INSERT INTO coupons (coupon_id, campaign_id, user_id, device_id, request_id,"
            " channel, value_cents, claimed_at, expires_at)"
            " SELECT gen_random_uuid(), campaign_id, user_id, device_id, request_id, channel,"
            " value_cents, claimed_at, expires_at FROM coupons WHERE campaign_id = $1 LIMIT 1",
            f"lt-{run_id}-seckill",
        )
    finally:
        await conn.close()
    result = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "gateway.cli", "verify", "--prefix", f"lt-{run_id}-", "--wait", "5"],
        env=local_stack.env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "VERDICT: FAIL" in result.stdout
    for problem in ("oversold: 6 > stock 5", "duplicates: 1", "users over limit: 1"):
        assert problem in result.stdout


@pytest.fixture(autouse=True)
def _in_repo_root(monkeypatch):
    monkeypatch.chdir(ROOT)


def test_verifier_fails_when_no_campaign_matches(local_stack):
    result = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "verify", "--prefix", "lt-no-such-run-"],
        env=local_stack.env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1
    assert "no published campaign id starts with 'lt-no-such-run-'" in result.stdout


def test_codes_honest_redeemers_win_and_bots_are_locked_out(local_stack):
    run_id, output = run_scenario(local_stack, "codes", "--stock", "40", users=20)
    assert "redeem: ACCEPTED" in output
    assert "redeem: CODE_LOCKED" in output
    assert " 40 " in verdict_row(output, run_id, "codes")


def test_skydrop_open_drops_at_most_k_by_the_dice_and_rows_match(local_stack):
    run_id, output = run_scenario(
        local_stack, "skydrop_open", "--stock", "40", "--user-pool", "150", users=20, seconds=10
    )
    assert "skydrop verdict: PASS" in output, output
    assert f"lt-{run_id}-sd-lucky tried" in output
    assert "open: 1 dropped" in output
    assert int(verdict_row(output, run_id, "sd-small").split()[2]) <= 10  # its stock


def test_bind_job_during_a_seckill_herd_shares_the_stock_exactly(local_stack):
    run_id, output = run_scenario(
        local_stack, "bind_herd", "--stock", "80", "--countdown", "3", "--user-pool", "300",
        users=30, seconds=10,
    )  # fmt: skip
    assert "bind verdict: PASS" in output, output
    assert "herd latency while the job ran" in output
    row = verdict_row(output, run_id, "bind-herd").split()
    assert row[1:4] == ["80", "80", "80"]  # stock, accepted, rows: sold out, all persisted
