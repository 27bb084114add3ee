"""A bind job during a seckill herd: an operator's bulk bind and the T0 herd share one stock.

One campaign (``--stock``, one per user) opens at T0 (``--countdown``). At T0 the runner
starts ``flashclaim bind`` on it (a real child process, its own connections, small batches
so it interleaves with the herd) for ``--bind-users`` users; a fifth of them are herd users
too (``h<run>-…``), who then race themselves on two channels. The herd presses "claim" as in
``seckill`` (early taps retried with the same requestId).

The verdict, besides ``flashclaim verify`` (stock never passed, nobody over the limit, no
duplicate, every accepted claim stored): the stock is met exactly when demand passed it,
every user holds at most one coupon, the bind report has one line per listed user and its
ACCEPTED lines are exactly the ``bind`` rows in PostgreSQL (user and coupon), the herd's
accepted answers exactly its ``app`` rows. The herd's claim latency is printed while the
job ran and outside it. Single runner only.
"""

from __future__ import annotations

import csv
import random
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gevent
from locust import constant, events, task
from locust.env import Environment
from locust.runners import WorkerRunner

from loadtests import rows
from loadtests.common import (
    Shopper,
    after_verify,
    campaign_id,
    cash_off,
    declare,
    new_request_id,
    options_of,
    starts_at,
    window,
)

HOT = "bind-herd"


def _hot(options: Any) -> dict[str, Any]:
    return cash_off(1500, options.stock, perUserLimit=1) | window(options.countdown)


declare(HOT, _hot)


@events.init_command_line_parser.add_listener
def _options(parser: Any) -> None:
    parser.add_argument("--bind-users", type=int, default=0, help="users to bind (0: the stock)")


@dataclass
class Run:
    """The bind job and what the herd was told."""

    job: subprocess.Popen[str] | None = None
    report: Path = Path()
    listed: list[str] = field(default_factory=list)
    started: float = 0.0
    ended: float = 0.0
    herd_coupons: dict[str, str] = field(default_factory=dict)  # couponId -> user
    latencies: list[tuple[float, float]] = field(default_factory=list)  # (at, ms)


_run = Run()


def herd_user(options: Any, n: int) -> str:
    return f"h{options.run_id}-{n:06d}"


@events.test_start.add_listener
def _schedule_bind(environment: Environment, **_: Any) -> None:
    """Write the job's user list; start the job, which binds from T0."""
    if environment.process_exit_code == 2 or isinstance(environment.runner, WorkerRunner):
        return
    options = options_of(environment)
    count = options.bind_users or options.stock
    folder = Path(tempfile.mkdtemp(prefix="bind-herd-"))
    both = [herd_user(options, n) for n in range(0, options.user_pool, 5)][: count // 5]
    _run.listed = both + [f"b{options.run_id}-{n:06d}" for n in range(count - len(both))]
    random.shuffle(_run.listed)
    users = folder / "users.csv"
    users.write_text("user_id\n" + "".join(f"{user}\n" for user in _run.listed))
    _run.report = folder / "report.csv"

    # The job's process starts now and waits for T0 with its imports done, so its first
    # batch meets the herd's first taps.
    argv = ["bind", campaign_id(options, HOT), str(users), "--job", f"lt-{options.run_id}",
            "--report", str(_run.report), "--batch", "25"]  # fmt: skip
    at_t0 = (
        "import sys, time; import gateway.cli, gateway.channels.commands;"
        f" time.sleep(max(0.0, {starts_at(HOT)} - time.time()));"
        f" sys.exit(gateway.cli.main({argv!r}))"
    )
    _run.job = subprocess.Popen(
        [sys.executable, "-c", at_t0], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )

    def watch() -> None:
        gevent.sleep(max(0.0, starts_at(HOT) - time.time()))
        _run.started = time.time()
        while _run.job is not None and _run.job.poll() is None:
            gevent.sleep(0.05)
        _run.ended = time.time()

    gevent.spawn(watch)


@events.test_stop.add_listener
def _wait_for_bind(environment: Environment, **_: Any) -> None:
    """The job finishes before the verdict drains and counts."""
    if _run.job is None:
        return
    try:
        _run.job.communicate(timeout=options_of(environment).verify_wait)
    except subprocess.TimeoutExpired:
        _run.job.kill()
        _run.job.communicate()
    _run.ended = _run.ended or time.time()


@events.request.add_listener
def _latency(name: str, response_time: float, **_: Any) -> None:
    if name.startswith("claim"):
        _run.latencies.append((time.time(), response_time))


class HerdBuyer(Shopper):
    """Waits for T0, then claims until it has an answer; then another shopper comes."""

    wait_time = constant(0)

    def on_start(self) -> None:
        self.arrive()
        self.fire_at = starts_at(HOT) - random.uniform(-0.2, 0.5)

    def arrive(self) -> None:
        options = options_of(self.environment)
        self.new_identity(herd_user(options, random.randrange(options.user_pool)))
        self.request_id = new_request_id()

    @task
    def press_claim(self) -> None:
        gevent.sleep(max(0.0, self.fire_at - time.time()))
        reply = self.claim(HOT, request_id=self.request_id)
        reason = reply.get("reason") if reply else None
        if reason in (None, "NOT_STARTED", "OVERLOADED", "RATE_LIMITED", "UNAVAILABLE"):
            gevent.sleep(random.uniform(0.1, 0.3))  # the page retries the same requestId
            return
        if reply and reason == "ACCEPTED":
            _run.herd_coupons[reply["couponId"]] = self.user_id
        self.arrive()
        self.fire_at = 0.0
        gevent.sleep(random.uniform(0.0, 0.05))


def _percentiles(values: list[float]) -> str:
    if not values:
        return "no claims"
    ordered = sorted(values)
    at = [ordered[min(len(ordered) - 1, int(q * len(ordered)))] for q in (0.5, 0.95, 0.99)]
    return f"p50 {at[0]:.0f} ms, p95 {at[1]:.0f} ms, p99 {at[2]:.0f} ms over {len(values)}"


def _report() -> list[tuple[str, str, str]]:
    with _run.report.open(newline="") as lines:
        reader = csv.reader(lines)
        next(reader, None)
        return [(user, reason, coupon) for user, reason, coupon in reader]


def _bind_verdict(environment: Environment) -> bool:
    """The report and the herd's answers against PostgreSQL; the stock met exactly."""
    options = options_of(environment)
    stored = rows.fetch(campaign_id(options, HOT))
    report = _report() if _run.report.exists() else []
    problems = []
    if _run.job is None or _run.job.returncode != 0:
        problems.append(f"the bind job did not finish cleanly: {_run.job and _run.job.returncode}")
    if sorted(user for user, _, _ in report) != sorted(_run.listed):
        problems.append(f"the report has {len(report)} lines for {len(_run.listed)} users")
    bound = {(user, coupon) for user, reason, coupon in report if reason == "ACCEPTED"}
    bind_rows = {(r["user"], r["coupon"]) for r in stored if r["channel"] == "bind"}
    if bound != bind_rows:
        problems.append(f"report ACCEPTED {len(bound)} != bind rows {len(bind_rows)}")
    app_rows = {r["coupon"]: r["user"] for r in stored if r["channel"] == "app"}
    if app_rows != _run.herd_coupons:
        problems.append(f"herd accepted {len(_run.herd_coupons)} != app rows {len(app_rows)}")
    twice = [user for user, n in Counter(r["user"] for r in stored).items() if n > 1]
    if twice:
        problems.append(f"{len(twice)} users hold two coupons, e.g. {twice[0]}")
    if len(stored) != options.stock:
        problems.append(f"{len(stored)} rows for a stock of {options.stock}")
    during = [ms for at, ms in _run.latencies if _run.started <= at <= (_run.ended or at)]
    outside = [ms for at, ms in _run.latencies if not _run.started <= at <= (_run.ended or at)]
    reasons = Counter(reason for _, reason, _ in report)
    print(
        f"bind: {len(report)} users listed, {dict(reasons)};"
        f" herd {len(_run.herd_coupons)} coupons, bind {len(bind_rows)}, rows {len(stored)}"
    )
    print(f"bind: herd latency while the job ran ({_run.ended - _run.started:.1f} s):"
          f" {_percentiles(during)}; outside it: {_percentiles(outside)}")  # fmt: skip
    for problem in problems:
        print(f"bind problem: {problem}")
    print("bind verdict: " + ("FAIL" if problems else "PASS"))
    return not problems


after_verify.append(_bind_verdict)
