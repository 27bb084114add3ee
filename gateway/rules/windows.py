"""When a campaign with claim windows is open, and when it next opens.

Windows repeat by the campaign's own calendar (daily times, weekdays, days of the month,
in its time zone), so the answer is computed from the clock the claim is decided with,
never from a timer. ``WindowClock`` remembers its last answer for as long as it stays
true (until the open window closes, or the next one opens), so a herd pays for one
computation per window edge, not one per claim.
"""

from __future__ import annotations

import calendar
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from gateway.rules.spec import ClaimWindows, minutes

#: How far ahead a next opening is looked for (rare combinations such as "Mondays that
#: are the 31st" recur within a few years).
HORIZON_DAYS = 3 * 366


@dataclass(frozen=True, slots=True)
class WindowState:
    """Open until ``until_ms``; or closed, opening at ``opens_ms`` (0: never again)."""

    open: bool
    until_ms: int = 0
    opens_ms: int = 0


def qualifies(day: date, windows: ClaimWindows) -> bool:
    """Whether claims may open on ``day`` (weekday and day-of-month filters)."""
    if windows.weekdays and day.isoweekday() not in windows.weekdays:
        return False
    if not windows.month_days:
        return True
    last = calendar.monthrange(day.year, day.month)[1]
    return day.day in windows.month_days or (day.day == last and -1 in windows.month_days)


def _at(day: date, minute: int, zone: ZoneInfo) -> int:
    """Epoch ms of wall time ``minute`` after ``day``'s midnight in ``zone`` (aware datetime
    arithmetic is wall-clock arithmetic, so a DST day still opens at its local hour)."""
    local = datetime(day.year, day.month, day.day, tzinfo=zone) + timedelta(minutes=minute)
    return int(local.timestamp() * 1000)


def _spans(day: date, windows: ClaimWindows, zone: ZoneInfo) -> list[tuple[int, int]]:
    """The open intervals starting on ``day``, in epoch ms, by start."""
    if not qualifies(day, windows):
        return []
    if not windows.daily:
        return [(_at(day, 0, zone), _at(day + timedelta(days=1), 0, zone))]
    spans = []
    for window in windows.daily:
        opens, closes = minutes(window.opens), minutes(window.closes)
        end_day = day if closes > opens else day + timedelta(days=1)
        spans.append((_at(day, opens, zone), _at(end_day, closes, zone)))
    return sorted(spans)


def _days_from(first: date) -> Iterator[date]:
    for offset in range(HORIZON_DAYS):
        yield first + timedelta(days=offset)


def state_at(
    now_ms: int, windows: ClaimWindows, zone: ZoneInfo, start_ms: int, end_ms: int
) -> WindowState:
    """Whether claims are open at ``now_ms``, within the campaign's ``start_ms``-``end_ms``."""
    today = datetime.fromtimestamp(now_ms / 1000, zone).date()
    for day in _days_from(today - timedelta(days=1)):  # yesterday's window may cross midnight
        if _at(day, 0, zone) >= end_ms:
            break
        for opens, closes in _spans(day, windows, zone):
            opens, closes = max(opens, start_ms), min(closes, end_ms)
            if closes <= now_ms or closes <= opens:
                continue
            if opens <= now_ms:
                return WindowState(True, until_ms=closes)
            return WindowState(False, opens_ms=opens)
    return WindowState(False)


class WindowClock:
    """A campaign's windows with the last answer remembered while it holds."""

    def __init__(self, windows: ClaimWindows, zone: ZoneInfo, start_ms: int, end_ms: int) -> None:
        self._windows, self._zone = windows, zone
        self._start_ms, self._end_ms = start_ms, end_ms
        self._valid = (0, 0)  # [from, until) in which _state is the answer
        self._state = WindowState(False)

    def state(self, now_ms: int) -> WindowState:
        """Open or closed at ``now_ms`` (the same answer for the same instant, always)."""
        low, high = self._valid
        if low <= now_ms < high:
            return self._state
        state = state_at(now_ms, self._windows, self._zone, self._start_ms, self._end_ms)
        high = state.until_ms if state.open else state.opens_ms or self._end_ms
        self._state, self._valid = state, (now_ms, high)
        return state
