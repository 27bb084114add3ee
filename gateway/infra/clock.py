"""The one clock, and the calendar days campaigns count in.

All time in flashclaim comes from a ``Clock``. The gateway reads it once per script
call and passes the time into Lua, so tests (and rehearsals) move time by moving the
clock, never by sleeping. Per-day limits follow the campaign's own time zone: a
Double-11 day starts at midnight Asia/Shanghai, whatever zone the servers run in.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol
from zoneinfo import ZoneInfo


class Clock(Protocol):
    """Something that tells the time in epoch milliseconds."""

    def now_ms(self) -> int:
        """Milliseconds since the Unix epoch."""
        ...


class SystemClock:
    """The wall clock."""

    def now_ms(self) -> int:
        """Milliseconds since the Unix epoch, from the system clock."""
        return time.time_ns() // 1_000_000


class ManualClock:
    """A clock that moves only when told to: for tests and rehearsals."""

    def __init__(self, now_ms: int) -> None:
        self._now_ms = now_ms

    def now_ms(self) -> int:
        """The time this clock was last set to."""
        return self._now_ms

    def set(self, now_ms: int) -> None:
        """Jump to ``now_ms``."""
        self._now_ms = now_ms

    def advance(self, ms: int) -> None:
        """Move forward by ``ms`` milliseconds."""
        self._now_ms += ms


@dataclass(frozen=True, slots=True)
class Day:
    """One calendar day in a campaign's time zone, as an epoch-millisecond interval."""

    label: str
    start_ms: int
    end_ms: int

    def contains(self, now_ms: int) -> bool:
        """Whether ``now_ms`` falls inside this day."""
        return self.start_ms <= now_ms < self.end_ms


def day_of(now_ms: int, zone: ZoneInfo) -> Day:
    """The calendar day in ``zone`` that contains the instant ``now_ms``."""
    local = datetime.fromtimestamp(now_ms / 1000, zone)
    start = local.replace(hour=0, minute=0, second=0, microsecond=0)
    end = (start + timedelta(days=1)).replace(tzinfo=None).replace(tzinfo=zone)
    return Day(
        label=start.strftime("%Y%m%d"),
        start_ms=int(start.timestamp() * 1000),
        end_ms=int(end.timestamp() * 1000),
    )


def iso_ms(epoch_ms: int, zone: ZoneInfo) -> str:
    """RFC 3339 text of an epoch-millisecond instant, in ``zone``."""
    return datetime.fromtimestamp(epoch_ms / 1000, zone).isoformat(timespec="milliseconds")
