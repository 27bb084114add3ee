"""Brute force against redeem codes: failed attempts counted per user, device and IP,
with a lockout.

Each wrong (or used) code adds one failure to the user's, the device's and the IP's count
of the window (``FLASHCLAIM_CODE_FAILURE_WINDOW_S``); whichever reaches its cap
(``CODE_MAX_FAILURES`` for users and devices, ``CODE_IP_MAX_FAILURES`` for an IP, many
people may share one) is locked out for ``CODE_LOCKOUT_S``: every attempt is answered
CODE_LOCKED without a lookup, right codes included, so a locked guesser learns nothing.
The counts live in Redis, shared by every worker. Typos caught by the check character
never get here.
"""

from __future__ import annotations

from redis.asyncio import Redis

from gateway.infra.settings import Settings
from gateway.keys import code_failures, code_lock


class CodeGuard:
    """Who may try a code now, and what a failure costs."""

    def __init__(self, redis: Redis, settings: Settings) -> None:
        self._redis = redis
        self._window_s = settings.code_failure_window_s
        self._lockout_s = settings.code_lockout_s
        self._caps = {
            "user": settings.code_max_failures,
            "device": settings.code_max_failures,
            "ip": settings.code_ip_max_failures,
        }

    async def locked_for(self, user: str, device: str, ip: str) -> float:
        """Seconds until the longest lockout of these three ends (0: free to try)."""
        async with self._redis.pipeline(transaction=False) as pipe:
            for kind, who in _subjects(user, device, ip):
                pipe.pttl(code_lock(kind, who))
            ttls: list[int] = await pipe.execute()
        return max(0, *ttls) / 1000

    async def failed(self, user: str, device: str, ip: str) -> float:
        """Count one failure; the lockout it started, in seconds (0: none)."""
        subjects = _subjects(user, device, ip)
        async with self._redis.pipeline(transaction=False) as pipe:
            for kind, who in subjects:
                key = code_failures(kind, who)
                pipe.set(key, 0, ex=self._window_s, nx=True)  # the window opens (Redis 6.2 too)
                pipe.incr(key)  # keeps the window's expiry
            replies = await pipe.execute()
        tripped = [
            (kind, who)
            for (kind, who), count in zip(subjects, replies[1::2], strict=True)
            if int(count) >= self._caps[kind]
        ]
        if not tripped:
            return 0.0
        async with self._redis.pipeline(transaction=False) as pipe:
            for kind, who in tripped:
                pipe.set(code_lock(kind, who), 1, ex=self._lockout_s)
                pipe.delete(code_failures(kind, who))
            await pipe.execute()
        return float(self._lockout_s)


def _subjects(user: str, device: str, ip: str) -> list[tuple[str, str]]:
    return [("user", user), ("device", device), ("ip", ip or "-")]
