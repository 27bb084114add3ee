"""Double-11 night: the whole evening in one run, as a LoadTestShape.

The run's length (``--run-time``) is split into stages; user counts are multiples of
``--users`` (the base):

=============  =======  ====================================================
stage          share    users
=============  =======  ====================================================
warm-up        0-20 %   base x 0.2: sky-drop browsing
countdown      20-35 %  base x 0.5: seckill pages open, waiting for T0
T0 spike       35-50 %  base x 3: everyone presses claim at T0
decay          50-70 %  base x 1: the herd thins, the hot campaign sold out
second wave    70-90 %  base x 2: operators top up the hot campaign; a new herd
wind-down      90-100%  base x 0.3
=============  =======  ====================================================

T0 (the hot campaign's ``startsAt``) falls at 35 % of the run. Seckill buyers and app
openers (from the seckill and sky-drop scenarios) share the night.
"""

from __future__ import annotations

from typing import Any

from locust import LoadTestShape, events

from loadtests.common import options_of, top_up
from loadtests.seckill import HOT, SeckillBuyer
from loadtests.skydrop import AppOpener

__all__ = ["AppOpener", "Double11Night", "SeckillBuyer"]

STAGES = [  # (ends at share of the run, users as a multiple of the base)
    (0.20, 0.2),
    (0.35, 0.5),
    (0.50, 3.0),
    (0.70, 1.0),
    (0.90, 2.0),
    (1.00, 0.3),
]
T0_SHARE = 0.35
SECOND_WAVE_SHARE = 0.70


@events.init.add_listener
def _t0_at_the_spike(environment: Any, **_: Any) -> None:
    options = options_of(environment)
    if options and options.run_time:
        options.countdown = options.run_time * T0_SHARE


class Double11Night(LoadTestShape):
    """Warm-up, countdown, T0 spike, decay, the top-up's second wave, wind-down."""

    use_common_options = True  # -u is the base, -t the length of the night
    topped_up = False

    def tick(self) -> tuple[int, float] | None:
        assert self.runner is not None
        environment = self.runner.environment
        options = options_of(environment)
        length = float(options.run_time or 60)
        elapsed = self.get_run_time()
        if elapsed >= length:
            return None
        if elapsed >= length * SECOND_WAVE_SHARE and not self.topped_up:
            self.topped_up = True
            top_up(environment, HOT, options.stock)
        share = elapsed / length
        multiple = next(users for end, users in STAGES if share < end)
        users = max(1, round(options.num_users * multiple))
        return users, max(1.0, float(options.num_users))
