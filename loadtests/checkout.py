"""Checkout: claim at T0, top up shopping credit, then pay with the coupon and credit.

Each simulated shopper claims from the run's campaign, tops up 100 yuan of credit under
the run's plan (+5 bonus) through the signed payment callback, asks for a quote (coupon
first, then credit), locks the coupon and the quoted credit to a new order (retrying the
same request: a retry must answer the same), then confirms it (paid), cancels it,
confirms and refunds it, or abandons it (the lock runs out). Every answer is checked
against what it must be; at the end, besides the claim verdict, ``flashclaim reconcile``
must find this run's coupons agreeing with their audit trail and no discount money past
the budget, and the credit verdict must find the ledger whole to the cent (``flashclaim
credit reconcile``: balances equal the journal) and each shopper's credit where this run
put it (available + held = topped up - spent on confirmed, unrefunded orders).
Needs ``FLASHCLAIM_CREDIT_PAYMENT_SECRET``, the gateway's (``make`` exports a demo one).
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import uuid
from collections import Counter
from typing import Any

import requests
from locust import between, events, task
from locust.env import Environment
from locust.runners import LocalRunner, WorkerRunner

from gateway.credit.topups import signature
from loadtests.common import (
    Shopper,
    admin,
    after_verify,
    campaign_id,
    cash_off,
    declare,
    options_of,
    user_token,
    window,
)


def _spec(options: Any) -> dict[str, Any]:
    stock = options.stock * 20
    return cash_off(2_000, stock, perUserLimit=1, budgetCents=2_000 * stock) | window(0)


declare("checkout", _spec)
CART = {
    "amountCents": 30_000,
    "channel": "app",
    "items": [{"sku": "kettle", "category": "home", "priceCents": 15_000, "quantity": 2}],
}


TOPUP_CENTS, BONUS_CENTS = 10_000, 500  # the run's plan: top up 100, get 105
#: What this process did to each shopper's credit: topped up, and spent (confirmed orders
#: less refunds), for the credit verdict (the local runner's; workers keep their own).
credited: Counter[str] = Counter()
spent: Counter[str] = Counter()
#: Requests sent whose answer was not counted (the run stopped while they were in flight,
#: or the answer was lost): the verdict sends each again (all are idempotent), counts it.
in_flight: dict[str, tuple[str, str, str, dict[str, str], str]] = {}


def count(user: str, kind: str, answer: dict[str, Any]) -> bool:
    """Count what an answer did to ``user``'s credit; whether it was a final answer."""
    if kind == "payment" and answer.get("status") == "paid":
        credited[user] += TOPUP_CENTS + BONUS_CENTS
    elif kind == "confirm" and answer.get("reason") == "CONFIRMED":
        spent[user] += answer["creditCents"]
    elif kind == "refund" and answer.get("reason") == "REFUNDED":
        spent[user] -= answer["refundedCreditCents"]
    else:
        return False
    return True


def plan_id(options: Any) -> str:
    return campaign_id(options, "credit")


@events.test_start.add_listener
def _make_plan(environment: Environment, **_: Any) -> None:
    """The run's credit plan, through the admin API (once, by the master or local runner)."""
    if isinstance(environment.runner, WorkerRunner) or environment.process_exit_code == 2:
        return
    try:
        if len(os.environ.get("FLASHCLAIM_CREDIT_PAYMENT_SECRET", "")) < 32:
            raise RuntimeError("FLASHCLAIM_CREDIT_PAYMENT_SECRET is not set: use the gateway's")
        admin(str(environment.host), "POST", "/credit/plans", {
            "id": plan_id(options_of(environment)), "name": "load test credit",
            "tiers": [{"payCents": TOPUP_CENTS, "bonusCents": BONUS_CENTS}],
            "bonusValidDays": 30})  # fmt: skip
    except (RuntimeError, requests.RequestException) as exc:
        print(f"\ncheckout: cannot set up the run's credit plan: {exc}\n", flush=True)
        environment.process_exit_code = 2
        if environment.runner is not None:
            environment.runner.quit()


class CheckoutShopper(Shopper):
    """Claims a coupon, then checks out with it."""

    wait_time = between(0.05, 0.3)

    def call(self, name: str, path: str, body: Any, want: set[str]) -> dict[str, Any] | None:
        """POST as this shopper; the answer's reason must be one of ``want``."""
        headers = {"Authorization": f"Bearer {self.token}", "X-Forwarded-For": self.ip}
        with self.client.post(path, json=body, headers=headers, catch_response=True,
                              name=name) as response:  # fmt: skip
            reply: dict[str, Any] = response.json() if response.text else {}
            reason = str(reply.get("reason", response.status_code))
            response.request_meta["name"] = f"{name}: {reason}"
            if reason in want or (name in ("quote", "top-up") and response.status_code < 300):
                response.success()
                return reply
            response.failure(f"{response.status_code} {reason}")
            return None

    @task
    def shop(self) -> None:
        self.new_identity()
        claimed = self.claim("checkout")
        if not claimed or claimed.get("reason") != "ACCEPTED":
            return
        coupon = claimed["couponId"]
        self.top_up()
        quoted = self.call("quote", "/api/checkout/quote", CART, set())
        usable = [c["couponId"] for c in (quoted or {}).get("coupons", []) if c["applies"]]
        if quoted is not None and (coupon not in usable or not quoted["best"]["couponIds"]):
            raise AssertionError(f"the quote does not offer the claimed coupon: {quoted}")
        credit = quoted["credit"]["creditCents"] if quoted else 0
        order = uuid.uuid4().hex[:16]
        use = {**CART, "orderId": order, "couponIds": [coupon], "creditCents": credit}
        # Another shopper of the same user may spend the credit between quote and lock.
        want = {"LOCKED", "INSUFFICIENT_CREDIT"}
        locked = self.call("use", "/api/coupon/use", use, want)
        again = self.call("use (retry)", "/api/coupon/use", use, want)
        if locked and again and locked != again and locked["reason"] == "LOCKED":
            raise AssertionError(f"a retried lock answered otherwise: {locked} / {again}")
        if (locked or again or {}).get("reason") != "LOCKED":
            return
        base = f"/api/coupon/use/{order}"
        fate = random.choice(["confirm", "cancel", "refund", "abandon"])
        if fate in ("confirm", "refund"):
            self.sent(f"{order}:confirm", "confirm", f"{base}/confirm")
            paid = self.call("confirm", f"{base}/confirm", None, {"CONFIRMED"})
            paid = self.call("confirm (retry)", f"{base}/confirm", None, {"CONFIRMED"}) or paid
            if paid and count(self.user_id, "confirm", paid):
                in_flight.pop(f"{order}:confirm")
        if fate == "refund":
            self.sent(f"{order}:refund", "refund", f"{base}/refund")
            refunded = self.call("refund", f"{base}/refund", None, {"REFUNDED"})
            if refunded and count(self.user_id, "refund", refunded):
                in_flight.pop(f"{order}:refund")
        if fate == "cancel":
            self.call("cancel", f"{base}/cancel", None, {"CANCELLED"})

    def top_up(self) -> None:
        """100 yuan of credit: a top-up order, then the provider's signed callback."""
        options = options_of(self.environment)
        body = {"planId": plan_id(options), "payCents": TOPUP_CENTS,
                "requestId": uuid.uuid4().hex}  # fmt: skip
        topup = self.call("top-up", "/api/credit/topups", body, set())
        if topup is None:
            return
        raw = json.dumps({"topupId": topup["topupId"], "paymentId": f"lt-{topup['topupId']}",
                          "amountCents": TOPUP_CENTS}).encode()  # fmt: skip
        secret = os.environ["FLASHCLAIM_CREDIT_PAYMENT_SECRET"]
        headers = {"Content-Type": "application/json",
                   "X-Flashclaim-Signature": signature(secret, raw)}  # fmt: skip
        key = f"{topup['topupId']}:payment"
        in_flight[key] = (self.user_id, "payment", "/api/credit/payments", headers, raw.decode())
        with self.client.post("/api/credit/payments", data=raw.decode(), headers=headers,
                              catch_response=True, name="payment") as response:  # fmt: skip
            if response.status_code == 200 and count(self.user_id, "payment", response.json()):
                in_flight.pop(key)
                response.success()
            else:
                response.failure(f"{response.status_code} {response.text[:200]}")

    def sent(self, key: str, kind: str, path: str) -> None:
        """Note a request about to go out, until its answer is counted."""
        headers = {"Authorization": f"Bearer {self.token}", "X-Forwarded-For": self.ip}
        in_flight[key] = (self.user_id, kind, path, headers, "")


def _use_verdict(environment: Environment) -> bool:
    """Every coupon of this run agrees with its audit trail; no discount past the budget.
    Run by the verdict after ``flashclaim verify`` drained the pipeline (``after_verify``)."""
    options = options_of(environment)
    result = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "reconcile", "--no-kafka", "--json"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    try:
        report = json.loads(result.stdout)
    except json.JSONDecodeError:
        print(f"use verdict: reconcile failed: {result.stderr}")
        return False
    mine = [c for c in report["campaigns"] if c["campaign_id"] == campaign_id(options, "checkout")]
    bad = [
        c
        for c in mine
        if c["use"]["drifted"]
        or (
            c["use"]["budget_cents"] is not None
            and c["use"]["discount_cents"] > c["use"]["budget_cents"]
        )
    ]
    for c in mine:
        use = c["use"]
        print(f"use verdict: {c['campaign_id']}: used {use['used']}, locked {use['locked']},"
              f" refunded {use['refunded']}, discount {use['discount_cents']} cents,"
              f" drifted {use['drifted']}")  # fmt: skip
    print(f"use verdict: {'FAIL' if bad or not mine else 'PASS'}")
    return not (bad or not mine)


def _credit_verdict(environment: Environment) -> bool:
    """The ledger balances to the cent, and each shopper's credit is where this run put it."""
    result = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "credit", "reconcile", "--json"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    problems = (
        [] if result.returncode == 0 else [f"credit reconcile: {result.stdout}{result.stderr}"]
    )
    if isinstance(environment.runner, LocalRunner):  # a master does not see its workers' tallies
        for user, kind, path, headers, data in list(in_flight.values()):
            answer = requests.post(f"{environment.host}{path}", data=data, headers=headers,
                                   timeout=10)  # fmt: skip
            if not count(user, kind, answer.json()):
                problems.append(f"{user}: {kind} again answered {answer.text[:200]}")
        for user, cents in credited.items():
            headers = {"Authorization": f"Bearer {user_token(user)}"}
            answer = requests.get(f"{environment.host}/api/credit", headers=headers, timeout=10)
            balance = answer.json()
            have = balance["availableCents"] + balance["heldCents"]
            if have != cents - spent[user]:
                problems.append(f"{user}: {have} cents, expected {cents - spent[user]}")
    total, used = sum(credited.values()), sum(spent.values())
    print(f"credit verdict: {len(credited)} shoppers topped up {total} cents, spent {used}")
    for problem in problems[:20]:
        print(f"credit verdict: {problem}")
    print(f"credit verdict: {'FAIL' if problems else 'PASS'}")
    return not problems


after_verify.extend([_use_verdict, _credit_verdict])  # their FAIL fails the run's exit code
