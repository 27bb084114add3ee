"""Abuse: what a coupon gateway meets besides shoppers, with honest users alongside.

* a phone farm: one device behind many accounts (the per-device limit must hold);
* a proxy: one client IP behind many users (the per-IP rate cap answers RATE_LIMITED);
* broken and forged clients: expired tokens, tokens signed with the wrong key, ``alg:
  none``, garbage, malformed bodies, unknown fields, the wrong content type; each must
  get its stable 4xx reason and change nothing;
* honest shoppers, who must keep getting coupons.

The verifier then shows no device and no user past its limit.
"""

from __future__ import annotations

import base64
import json
import random
import time
from typing import Any

from locust import between, task

from loadtests.common import (
    CLAIM_PATH,
    Shopper,
    campaign_id,
    cash_off,
    declare,
    new_request_id,
    user_token,
    window,
)

CAMPAIGN = "abuse"
FARM_DEVICE = "farm-device-0001"
PROXY_IP = "203.0.113.7"


def _campaign(options: Any) -> dict[str, Any]:
    return cash_off(800, options.stock * 20, perUserLimit=1, perDeviceLimit=2) | window(0)


declare(CAMPAIGN, _campaign)


class PhoneFarm(Shopper):
    """A new account every time, always on the same phone."""

    weight = 2
    wait_time = between(0.0, 0.05)

    @task
    def farm(self) -> None:
        self.new_identity()
        self.claim(CAMPAIGN, device_id=FARM_DEVICE)


class Proxy(Shopper):
    """Many users behind one IP address."""

    weight = 2
    wait_time = between(0.0, 0.01)

    @task
    def through_proxy(self) -> None:
        self.new_identity()
        self.claim(CAMPAIGN, ip=PROXY_IP)


class BrokenClient(Shopper):
    """Bad tokens and bad bodies; every one must get its stable refusal."""

    weight = 1
    wait_time = between(0.0, 0.05)

    def _body(self) -> dict[str, str]:
        return {
            "campaignId": campaign_id(self.environment.parsed_options, CAMPAIGN),
            "requestId": new_request_id(),
            "deviceId": self.device_id,
            "channel": "app",
        }

    def _post(self, token: str, **request: Any) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {token}", **request.pop("headers", {})}
        return {"method": "POST", "url": CLAIM_PATH, "headers": headers, **request}

    @task
    def bad_tokens(self) -> None:
        expired = user_token(self.user_id, exp=int(time.time()) - 60)
        forged = self.token[:-4] + ("AAAA" if not self.token.endswith("AAAA") else "BBBB")
        header = base64.urlsafe_b64encode(b'{"alg":"none","typ":"JWT"}').rstrip(b"=").decode()
        payload = base64.urlsafe_b64encode(json.dumps({"sub": "mallory"}).encode())
        unsigned = f"{header}.{payload.rstrip(b'=').decode()}."
        tokens = {"expired": expired, "forged": forged, "alg none": unsigned, "garbage": "x.y.z"}
        for name, token in tokens.items():
            post = self._post(token, json=self._body())
            self.expect(f"bad token: {name}", 401, "UNAUTHORIZED", **post)

    @task
    def bad_bodies(self) -> None:
        body = self._body()
        as_json = {"Content-Type": "application/json"}
        cases: dict[str, tuple[int, dict[str, Any]]] = {
            "not json": (400, {"data": b"{claim", "headers": as_json}),
            "missing field": (422, {"json": {k: v for k, v in body.items() if k != "deviceId"}}),
            "unknown field": (422, {"json": body | {"discount": 100}}),
            "bad requestId": (422, {"json": body | {"requestId": "x"}}),
            "wrong type": (422, {"json": body | {"channel": 7}}),
            "form post": (415, {"data": b"a=1", "headers": {"Content-Type": "text/plain"}}),
        }
        for name, (status, request) in cases.items():
            post = self._post(self.token, **request)
            self.expect(f"bad body: {name}", status, "INVALID_REQUEST", **post)


class HonestShopper(Shopper):
    """An ordinary shopper on their own phone and network."""

    weight = 3
    wait_time = between(0.05, 0.2)

    @task
    def shop(self) -> None:
        self.new_identity(f"honest-{random.randrange(10**9):09d}")
        self.claim(CAMPAIGN)
