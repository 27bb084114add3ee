"""Retry storm: impatient clients time out and retry with the same requestId.

Each client gives up on an answer after ``LOADTEST_CLIENT_TIMEOUT`` seconds (50 ms by
default, so a loaded gateway makes many of them time out), then retries the same
requestId with exponential back-off and full jitter. Every answer for one requestId must
name the same coupon: a retry that gets a different coupon fails the run here, and the
verifier's duplicate and over-limit checks catch the rest.
"""

from __future__ import annotations

import os
from typing import Any

import gevent
from locust import between, task

from loadtests.common import Shopper, backoff, cash_off, declare, new_request_id, window

CAMPAIGN = "retry"
ATTEMPTS = 6


def _campaign(options: Any) -> dict[str, Any]:
    return cash_off(500, options.stock * 20, perUserLimit=2) | window(0)


declare(CAMPAIGN, _campaign)


class ImpatientClient(Shopper):
    """Claims once per visit, retrying through time-outs with the same requestId."""

    network_timeout = float(os.environ.get("LOADTEST_CLIENT_TIMEOUT", "0.05"))
    wait_time = between(0.0, 0.2)

    @task
    def claim_with_retries(self) -> None:
        self.new_identity()
        request_id, coupon = new_request_id(), None
        for attempt in range(ATTEMPTS):
            reply = self.claim(CAMPAIGN, request_id=request_id)
            reason = reply.get("reason") if reply else None
            if reply is not None and reason == "ACCEPTED":
                if coupon is not None and reply["couponId"] != coupon:
                    raise AssertionError(f"{request_id}: two coupons for one requestId")
                coupon = reply["couponId"]
                if attempt == 0:  # a duplicate tap: must replay the same coupon
                    continue
                return
            if reason not in (None, "OVERLOADED", "RATE_LIMITED", "UNAVAILABLE"):
                return  # a final refusal (limit, sold out): the page shows it
            gevent.sleep(backoff(attempt))
