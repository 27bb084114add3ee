"""Caps on using coupons (the documents' 设置领取和核销频率上限): locks per user and per IP,
and failed locks per user, in each worker's memory (GCRA, as the claim path's caps).

A bot that tries coupon ids, or cycles orders to hold coupons from others, meets the
failed-lock cap: past it, the user's locks are refused with RATE_LIMITED until the cap
refills. Per worker process, like every rate cap here: N workers allow N times the cap.
"""

from __future__ import annotations

from gateway.infra.ratelimit import RateLimiter
from gateway.infra.settings import Settings


class UseCaps:
    """The caps one worker applies to locks."""

    def __init__(self, settings: Settings) -> None:
        per_min = settings.lock_user_per_min
        self.user = RateLimiter(per_min / 60, max(per_min, 1))
        self.ip = RateLimiter(settings.lock_ip_per_min / 60, max(settings.lock_ip_per_min, 1))
        failures = settings.failed_lock_user_per_hour
        # The cap's last failure finds the bucket full and blocks what follows.
        self.failed = RateLimiter(failures / 3600, max(failures - 1, 1))
        self._blocked: dict[str, float] = {}

    def wait_s(self, user: str, ip: str, now_s: float) -> float:
        """Seconds to wait before this lock may be tried (0: go ahead); counts it."""
        blocked = self._blocked.get(user, 0.0) - now_s
        if blocked > 0:
            return blocked
        self._blocked.pop(user, None)
        return max(self.user.check(user, now_s), self.ip.check(ip, now_s) if ip else 0.0)

    def failed_lock(self, user: str, now_s: float) -> None:
        """Count a refused lock; past the cap the user waits until it refills."""
        wait = self.failed.check(user, now_s)
        if wait > 0:
            if len(self._blocked) > 100_000:
                self._blocked = {u: t for u, t in self._blocked.items() if t > now_s}
            self._blocked[user] = now_s + wait
