"""Request-rate caps per user, device and IP, kept in each worker's memory.

GCRA (the generic cell rate algorithm): one float per key, the instant at which the
key's bucket will be empty again. It answers in a dictionary look-up, before any Redis
work, which is the point: abusive rates must cost the gateway as little as possible.
The caps are per worker process; with N workers behind ``SO_REUSEPORT`` a client
spread over several connections can reach at most N times the cap.
"""

from __future__ import annotations


class RateLimiter:
    """Allows ``rate`` events per second per key, with bursts up to ``burst``."""

    def __init__(self, rate: float, burst: int, max_keys: int = 200_000) -> None:
        self.enabled = rate > 0
        self._interval = 1.0 / rate if rate > 0 else 0.0
        self._tolerance = self._interval * burst
        self._max_keys = max_keys
        self._tat: dict[str, float] = {}

    def check(self, key: str, now: float) -> float:
        """Record one event for ``key`` at ``now`` (seconds); return 0.0 if it is allowed,
        else the seconds to wait before the next event would be."""
        if not self.enabled:
            return 0.0
        tat = self._tat.get(key, now)
        tat = max(tat, now)
        wait = tat + self._interval - self._tolerance - now
        if wait > 0:
            return wait
        if len(self._tat) >= self._max_keys:
            self._forget_idle(now)
        self._tat[key] = tat + self._interval
        return 0.0

    def _forget_idle(self, now: float) -> None:
        """Drop keys whose bucket has emptied: they are indistinguishable from new ones."""
        self._tat = {key: tat for key, tat in self._tat.items() if tat > now}
        if len(self._tat) >= self._max_keys:  # all busy: keep the newest half
            keep = list(self._tat.items())[len(self._tat) // 2 :]
            self._tat = dict(keep)
