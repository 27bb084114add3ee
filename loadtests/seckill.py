"""Seckill T0 herd: everyone waits for midnight, then presses "claim" at once.

Users are spawned during the countdown and wait on the shared wall-clock T0 (the hot
campaign's ``startsAt``, ``--countdown`` seconds after the run starts). Most fire a little
early, are told NOT_STARTED and retry with the same requestId after a short jittered pause,
as seckill pages do. Stock is small (``--stock``); after sell-out, a shopper who was refused
leaves and another arrives, so the gateway also faces a sold-out herd.
"""

from __future__ import annotations

import random
import time
from typing import Any

import gevent
from locust import constant, task

from loadtests.common import Shopper, cash_off, declare, new_request_id, starts_at, window

HOT = "seckill"


def _hot(options: Any) -> dict[str, Any]:
    spec = cash_off(2000, options.stock, perUserLimit=1, perDeviceLimit=1)
    return spec | window(options.countdown)


declare(HOT, _hot)


class SeckillBuyer(Shopper):
    """Waits for T0 on the countdown page, then claims until it has an answer."""

    wait_time = constant(0)

    def on_start(self) -> None:
        super().on_start()
        self.request_id = new_request_id()
        # Most pages fire up to a second early (clock skew, impatient thumbs).
        self.fire_at = starts_at(HOT) - random.uniform(-0.2, 1.0)

    @task
    def press_claim(self) -> None:
        gevent.sleep(max(0.0, self.fire_at - time.time()))
        reply = self.claim(HOT, request_id=self.request_id)
        reason = reply.get("reason") if reply else None
        if reason in (None, "NOT_STARTED", "OVERLOADED", "RATE_LIMITED"):
            gevent.sleep(random.uniform(0.1, 0.3))  # the page retries the same requestId
            return
        # Won, sold out or at a limit: this shopper leaves; the next one arrives.
        self.new_identity()
        self.request_id = new_request_id()
        self.fire_at = 0.0
        gevent.sleep(random.uniform(0.0, 0.05))
