"""What every scenario shares.

* Options (``--run-id``, ``--stock``, ``--countdown``, gates...) on Locust's command line.
* The run's campaigns: each scenario *declares* the campaigns it needs; at the start of a
  run the master (or the single local runner) creates and publishes them through the admin
  API, and every runner reads them back (so workers learn T0 in distributed mode).
* ``Shopper``: a FastHttpUser with a synthetic identity (user id, device, client IP sent as
  X-Forwarded-For, a minted token) and a ``claim`` call that tells business refusals
  (SOLD_OUT, USER_LIMIT, ...: the gateway doing its job) from failures (5xx, timeouts,
  unexpected answers). Requests are named by outcome, so Locust's table counts reasons.
* The verdict: when the run ends, ``flashclaim verify`` drains the pipeline and checks every
  campaign of the run; a broken invariant, a failure ratio or p95 over its gate makes
  Locust exit non-zero.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import requests
from locust import FastHttpUser, events
from locust.env import Environment
from locust.runners import WorkerRunner

from gateway.infra.auth import mint
from gateway.reasons import BUSINESS_REFUSALS

CLAIM_PATH = "/api/coupon/issue"

Spec = Callable[[Any], dict[str, Any]]  # parsed options -> campaign spec (id filled in)
_declared: dict[str, Spec] = {}
#: A scenario's own checks, run by the verdict after ``flashclaim verify`` drained the
#: pipeline (so PostgreSQL holds every claim); each prints its findings and returns whether
#: it passed. (A quitting listener of a scenario's own may run before the verdict's.)
after_verify: list[Callable[[Environment], bool]] = []
campaigns: dict[str, dict[str, Any]] = {}  # short name -> the campaign as the admin API shows it


@events.init_command_line_parser.add_listener
def _options(parser: Any) -> None:
    parser.add_argument(
        "--run-id",
        default=os.environ.get("LOADTEST_RUN_ID") or time.strftime("%d%H%M%S"),
        help="names this run's campaigns lt-<run>-<name>; set it for distributed runs",
    )
    parser.add_argument("--stock", type=int, default=500, help="stock of the hot campaign")
    parser.add_argument("--countdown", type=float, default=5.0, help="seconds from start to T0")
    parser.add_argument("--user-pool", type=int, default=50_000, help="synthetic user ids")
    parser.add_argument("--verify-wait", type=float, default=60.0, help="drain wait, seconds")
    parser.add_argument("--no-verify", action="store_true", help="skip the verdict")
    parser.add_argument("--max-fail-ratio", type=float, default=0.01, help="gate, 0..1")
    parser.add_argument("--max-p95-ms", type=float, default=0.0, help="gate; 0 turns it off")


def options_of(environment: Environment) -> Any:
    """The parsed command line (always there when Locust runs a locustfile)."""
    return environment.parsed_options


def declare(name: str, spec: Spec) -> None:
    """Ask for a campaign named ``name`` in this run, built from the options at start."""
    _declared[name] = spec


def campaign_id(options: Any, name: str) -> str:
    return f"lt-{options.run_id}-{name}"


def cash_off(face_value_cents: int, stock: int, **fields: Any) -> dict[str, Any]:
    """A "so much off an order of five times as much" campaign spec."""
    return {
        "kind": "cash_off",
        "faceValueCents": face_value_cents,
        "thresholdCents": face_value_cents * 5,
        "stock": stock,
    } | fields


def window(starts_in_s: float, *, hours: float = 6.0) -> dict[str, str]:
    """``startsAt``/``endsAt`` fields for a campaign opening ``starts_in_s`` from now."""
    start = datetime.now(UTC) + timedelta(seconds=starts_in_s)
    return {
        "startsAt": start.isoformat(),
        "endsAt": (start + timedelta(hours=hours)).isoformat(),
    }


def admin(host: str, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    """Call the gateway's admin API; raise with the gateway's own error text."""
    response = requests.request(
        method,
        f"{host}/admin{path}",
        json=body,
        headers={"Authorization": f"Bearer {os.environ['FLASHCLAIM_ADMIN_TOKEN']}"},
        timeout=10,
    )
    if response.status_code >= 300:
        raise RuntimeError(f"admin {method} {path}: {response.status_code} {response.text}")
    result: dict[str, Any] = response.json()
    return result


@events.test_start.add_listener
def _make_campaigns(environment: Environment, **_: Any) -> None:
    try:
        for variable in ("FLASHCLAIM_ADMIN_TOKEN", "FLASHCLAIM_JWT_SECRET"):
            if not os.environ.get(variable):
                raise RuntimeError(f"{variable} is not set: use the gateway's (make exports both)")
        _create_and_read(environment)
    except (RuntimeError, requests.RequestException) as exc:
        print(f"\nflashclaim load test: cannot set up the run's campaigns: {exc}\n", flush=True)
        environment.process_exit_code = 2
        if environment.runner is not None:
            environment.runner.quit()


def _create_and_read(environment: Environment) -> None:
    options, host = options_of(environment), str(environment.host)
    if not isinstance(environment.runner, WorkerRunner):
        for name, spec in _declared.items():
            body = {"id": campaign_id(options, name), "name": f"load test {name}"} | spec(options)
            admin(host, "POST", "/campaigns", body)
            admin(host, "POST", f"/campaigns/{body['id']}/publish")
    for name in _declared:
        campaigns[name] = admin(host, "GET", f"/campaigns/{campaign_id(options, name)}")


def starts_at(name: str) -> float:
    """The epoch second a campaign of this run opens (T0 for the seckill)."""
    return datetime.fromisoformat(campaigns[name]["startsAt"]).timestamp()


def top_up(environment: Environment, name: str, stock: int) -> None:
    """Add stock to a campaign mid-run, as an operator would (the second wave)."""
    admin(
        str(environment.host),
        "POST",
        f"/campaigns/{campaign_id(options_of(environment), name)}/topup",
        {"stock": stock},
    )


class Shopper(FastHttpUser):
    """A synthetic shopper: identity, token, and a claim call that classifies answers."""

    abstract = True

    def on_start(self) -> None:
        self.new_identity()

    def new_identity(self, user_id: str | None = None) -> None:
        """Become another shopper: user id, phone, client IP and a fresh token."""
        pool = options_of(self.environment).user_pool
        self.user_id = user_id or f"u{random.randrange(pool):07d}"
        self.device_id = f"{self.user_id}-phone"
        self.ip = f"10.{random.randrange(256)}.{random.randrange(256)}.{random.randrange(1, 255)}"
        self.token = user_token(self.user_id)

    def claim(
        self,
        name: str,
        *,
        request_id: str | None = None,
        device_id: str | None = None,
        token: str | None = None,
        ip: str | None = None,
    ) -> dict[str, Any] | None:
        """Claim from this run's campaign ``name``; the answer, or None on a timeout."""
        body = {
            "campaignId": campaign_id(options_of(self.environment), name),
            "requestId": request_id or new_request_id(),
            "deviceId": device_id or self.device_id,
            "channel": "app",
        }
        headers = {
            "Authorization": f"Bearer {token or self.token}",
            "X-Forwarded-For": ip or self.ip,
        }
        with self.client.post(
            CLAIM_PATH, json=body, headers=headers, catch_response=True, name="claim"
        ) as response:
            if response.status_code == 0:  # the client gave up waiting
                response.request_meta["name"] = "claim: timed out"
                response.success()
                return None
            reply: dict[str, Any] = response.json() if response.text else {}
            reason = str(reply.get("reason", "?"))
            response.request_meta["name"] = f"claim: {reason}"
            if reason == "ACCEPTED" or reason in BUSINESS_REFUSALS:
                response.success()
            else:
                response.failure(f"{response.status_code} {reason}")
            return reply

    def expect(self, name: str, status: int, reason: str, **request: Any) -> None:
        """Send a bad request; anything but the stable refusal asked for is a failure."""
        with self.client.request(catch_response=True, name=name, **request) as response:
            got = response.json().get("reason") if response.text else None
            if (response.status_code, got) == (status, reason):
                response.success()
            else:
                response.failure(f"expected {status} {reason}, got {response.status_code} {got}")


_tokens: dict[str, str] = {}


def user_token(user_id: str, **claims: Any) -> str:
    """A valid token for a synthetic user (cached: minting costs more than a claim)."""
    if not claims and user_id in _tokens:
        return _tokens[user_id]
    token = mint(
        os.environ["FLASHCLAIM_JWT_SECRET"], user_id, expires_s=int(time.time()) + 86_400, **claims
    )
    if not claims:
        _tokens[user_id] = token
    return token


def new_request_id() -> str:
    return uuid.uuid4().hex


def backoff(attempt: int, *, base_s: float = 0.05, cap_s: float = 2.0) -> float:
    """Exponential back-off with full jitter (what well-behaved SDKs do)."""
    return random.uniform(0, min(cap_s, base_s * 2**attempt))


@events.quitting.add_listener
def _verdict(environment: Environment, **_: Any) -> None:
    if isinstance(environment.runner, WorkerRunner) or environment.process_exit_code == 2:
        return  # a worker, or a run that never set up its campaigns
    options = options_of(environment)
    total = environment.stats.total
    gates = [f"failure ratio {total.fail_ratio:.4f} (gate {options.max_fail_ratio})"]
    failed = total.fail_ratio > options.max_fail_ratio
    p95 = total.get_response_time_percentile(0.95) or 0.0
    gates.append(f"p95 {p95:.0f} ms (gate {options.max_p95_ms or 'off'})")
    failed |= bool(options.max_p95_ms) and p95 > options.max_p95_ms
    errors = environment.runner.exceptions if environment.runner else {}
    for error in errors.values():  # a broken check inside a scenario (two coupons, ...)
        print(f"scenario error x{error['count']}: {error['msg']}")
    gates.append(f"{len(errors)} scenario errors")
    failed |= bool(errors)
    print("\nLocust gates: " + "; ".join(gates) + (" -> FAIL" if failed else " -> ok"))
    if not options.no_verify:
        failed |= not _verify(options, str(environment.host))
        for check in after_verify:
            failed |= not check(environment)
    environment.process_exit_code = 1 if failed else 0  # our gates decide, nothing else


def _verify(options: Any, host: str) -> bool:
    """Run ``flashclaim verify`` for this run's campaigns; print its table."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "gateway.cli",
            "verify",
            "--prefix",
            campaign_id(options, ""),
            "--metrics-url",
            f"{host}/metrics",
            "--wait",
            str(options.verify_wait),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    print(result.stdout if result.returncode in (0, 1) else result.stdout + result.stderr)
    return result.returncode == 0
