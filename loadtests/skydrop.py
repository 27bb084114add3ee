"""Sky-drop: coupons fall on everyone who opens the app.

App opens arrive as a Poisson process (each simulated user waits an exponential time
between opens); every open claims from each active sky-drop campaign with a fresh
requestId. The user pool is large but finite, so the same shoppers come back: per-day
limits (one per campaign per day) and per-user limits answer many of the claims, and the
smaller campaigns sell out along the way.
"""

from __future__ import annotations

import random
from typing import Any

from locust import task

from loadtests.common import Shopper, cash_off, declare, window

SKY_DROPS = [f"skydrop-{i}" for i in range(5)]
MEAN_GAP_S = 1.0  # mean time between one simulated user's app opens


def _skydrop(index: int) -> Any:
    def spec(options: Any) -> dict[str, Any]:
        face, stock = 300 + 100 * index, options.stock * (index + 1) * 4
        # The budget covers three quarters of the stock: some campaigns run out of money.
        limits = {"perUserLimit": 2, "perUserDailyLimit": 1, "perDeviceLimit": 2}
        return cash_off(face, stock, budgetCents=face * stock * 3 // 4, **limits) | window(0)

    return spec


for _index, _name in enumerate(SKY_DROPS):
    declare(_name, _skydrop(_index))


class AppOpener(Shopper):
    """Opens the app now and then as a random member of the user pool."""

    def wait_time(self) -> float:
        return random.expovariate(1 / MEAN_GAP_S)

    @task
    def open_app(self) -> None:
        self.new_identity()
        for name in SKY_DROPS:
            self.claim(name)
