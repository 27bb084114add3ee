"""Checkout: claim at T0, then use the coupon the way an order service does.

Each simulated shopper claims from the run's campaign, asks for a quote, locks the coupon
to a new order (retrying the same request on a timeout: a retry must answer the same),
then confirms it (paid), cancels it, confirms and refunds it, or abandons it (the lock
runs out). Every answer is checked against what it must be; at the end, besides the claim
verdict, ``flashclaim reconcile`` must find this run's coupons agreeing with their audit
trail and no discount money past the budget (no coupon used twice, nothing lost).
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import uuid
from typing import Any

from locust import between, events, task
from locust.env import Environment
from locust.runners import WorkerRunner

from loadtests.common import Shopper, campaign_id, cash_off, declare, options_of, window


def _spec(options: Any) -> dict[str, Any]:
    stock = options.stock * 20
    return cash_off(2_000, stock, perUserLimit=1, budgetCents=2_000 * stock) | window(0)


declare("checkout", _spec)
CART = {
    "amountCents": 30_000,
    "channel": "app",
    "items": [{"sku": "kettle", "category": "home", "priceCents": 15_000, "quantity": 2}],
}


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
            if reason in want or (name == "quote" and response.status_code == 200):
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
        quoted = self.call("quote", "/api/checkout/quote", CART, set())
        usable = [c["couponId"] for c in (quoted or {}).get("coupons", []) if c["applies"]]
        if quoted is not None and (coupon not in usable or not quoted["best"]["couponIds"]):
            raise AssertionError(f"the quote does not offer the claimed coupon: {quoted}")
        order = uuid.uuid4().hex[:16]
        use = {**CART, "orderId": order, "couponIds": [coupon]}
        locked = self.call("use", "/api/coupon/use", use, {"LOCKED"})
        again = self.call("use (retry)", "/api/coupon/use", use, {"LOCKED"})
        if locked and again and locked != again:
            raise AssertionError(f"a retried lock answered otherwise: {locked} / {again}")
        base = f"/api/coupon/use/{order}"
        fate = random.choice(["confirm", "cancel", "refund", "abandon"])
        if fate in ("confirm", "refund"):
            self.call("confirm", f"{base}/confirm", None, {"CONFIRMED"})
            self.call("confirm (retry)", f"{base}/confirm", None, {"CONFIRMED"})
        if fate == "refund":
            self.call("refund", f"{base}/refund", None, {"REFUNDED"})
        if fate == "cancel":
            self.call("cancel", f"{base}/cancel", None, {"CANCELLED"})


@events.quitting.add_listener
def _use_verdict(environment: Environment, **_: Any) -> None:
    """Every coupon of this run agrees with its audit trail; no discount past the budget."""
    if isinstance(environment.runner, WorkerRunner) or environment.process_exit_code == 2:
        return
    options = options_of(environment)
    if options.no_verify:
        return
    result = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "reconcile", "--no-kafka", "--json"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    try:
        report = json.loads(result.stdout)
    except json.JSONDecodeError:
        print(f"use verdict: reconcile failed: {result.stderr}")
        environment.process_exit_code = 1
        return
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
    if bad or not mine:
        print("use verdict: FAIL")
        environment.process_exit_code = 1
    else:
        print("use verdict: PASS")
