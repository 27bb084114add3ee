"""Redeem codes: honest redeemers and guessing bots on one campaign.

At the start the run generates 1.5 codes per unit of stock (admin API, CSV) and hands them
out to honest redeemers, one code each: a redeemer sometimes mistypes it first (answered
CODE_MISTYPED, costing nothing), then redeems it, and taps twice (the second must replay
the same coupon); late ones find the campaign SOLD_OUT. Bots from a phone farm (a few
devices and IPs, many accounts) try well-formed codes nobody issued: they must hear only
CODE_INVALID, then CODE_LOCKED. A bot that wins, a code that yields two coupons, or any
other answer fails the run; ``flashclaim verify`` then checks the stock was met exactly
and nobody holds two. Single runner only (the codes live in the runner that made them).
"""

from __future__ import annotations

import os
import random
from typing import Any

import requests
from locust import between, events, task
from locust.env import Environment

from gateway.channels.codes import ALPHABET, generate
from loadtests.common import (
    Shopper,
    admin,
    campaign_id,
    cash_off,
    declare,
    new_request_id,
    options_of,
    window,
)

CAMPAIGN = "codes"
REDEEM_PATH = "/api/coupon/redeem"
HONEST = frozenset({"ACCEPTED", "SOLD_OUT", "CODE_MISTYPED", "RATE_LIMITED"})
GUESSER = frozenset({"CODE_INVALID", "CODE_LOCKED", "RATE_LIMITED"})

_codes: list[str] = []
_coupon_of: dict[str, str] = {}


def _campaign(options: Any) -> dict[str, Any]:
    return cash_off(500, options.stock, perUserLimit=3) | window(0)


declare(CAMPAIGN, _campaign)


@events.test_start.add_listener
def _make_codes(environment: Environment, **_: Any) -> None:
    if environment.process_exit_code == 2:
        return
    options = options_of(environment)
    host, cid = str(environment.host), campaign_id(options, CAMPAIGN)
    admin(host, "GET", f"/campaigns/{cid}")  # it exists (the codes come back as CSV)
    response = requests.post(
        f"{host}/admin/campaigns/{cid}/codes",
        json={"count": options.stock * 3 // 2},
        headers={"Authorization": f"Bearer {os.environ['FLASHCLAIM_ADMIN_TOKEN']}"},
        timeout=60,
    )
    response.raise_for_status()
    _codes.extend(line.split(",")[0] for line in response.text.splitlines()[1:])
    random.shuffle(_codes)


class _Redeemer(Shopper):
    abstract = True

    def redeem(
        self, code: str, request_id: str, allowed: frozenset[str], **who: Any
    ) -> dict[str, Any]:
        body = {
            "code": code,
            "requestId": request_id,
            "deviceId": who.get("device", self.device_id),
        }
        headers = {
            "Authorization": f"Bearer {self.token}",
            "X-Forwarded-For": who.get("ip", self.ip),
        }
        with self.client.post(
            REDEEM_PATH, json=body, headers=headers, catch_response=True, name="redeem"
        ) as response:
            reply: dict[str, Any] = response.json() if response.text else {}
            reason = str(reply.get("reason", "?"))
            response.request_meta["name"] = f"redeem: {reason}"
            if reason in allowed:
                response.success()
            else:
                response.failure(f"{response.status_code} {reason}")
            return reply


class HonestRedeemer(_Redeemer):
    """Has one code from the operator's CSV, types it (maybe wrong first), taps twice."""

    weight = 3
    wait_time = between(0.0, 0.5)

    @task
    def redeem_my_code(self) -> None:
        if not _codes:
            return
        code = _codes.pop()
        self.new_identity()
        if random.random() < 0.1:
            i = random.randrange(len(code.replace("-", "")))
            plain = code.replace("-", "")
            typo = (
                plain[:i] + random.choice([c for c in ALPHABET if c != plain[i]]) + plain[i + 1 :]
            )
            self.redeem(typo, new_request_id(), HONEST)
        request_id = new_request_id()
        first = self.redeem(code, request_id, HONEST)
        if first.get("reason") != "ACCEPTED":
            return
        again = self.redeem(code, request_id, HONEST)
        if again.get("couponId") != first["couponId"]:
            raise AssertionError(f"{code}: a retry got another coupon")
        if _coupon_of.setdefault(code, first["couponId"]) != first["couponId"]:
            raise AssertionError(f"{code}: two coupons from one code")


class GuessingBot(_Redeemer):
    """A phone farm: a few devices and IPs, many accounts, codes made up."""

    weight = 1
    wait_time = between(0.0, 0.05)

    @task
    def guess(self) -> None:
        self.new_identity()
        farm = random.randrange(4)
        reply = self.redeem(
            next(generate(1)),
            new_request_id(),
            GUESSER,
            device=f"farm-{farm}",
            ip=f"10.66.0.{farm}",
        )
        if reply.get("reason") == "ACCEPTED":
            raise AssertionError("a bot guessed a code")
