"""Claim windows in Asia/Shanghai: daily times, weekdays, days of the month, midnight and
month ends; NOT_STARTED says when the next window opens."""

from __future__ import annotations

from datetime import datetime

import pytest

from gateway.claim.service import ClaimRequest
from gateway.rules.spec import ClaimWindows, DailyWindow
from gateway.rules.windows import WindowClock, state_at
from tests.helpers import SHANGHAI, claim, published, snapshot


def at(text: str) -> int:
    """Epoch ms of a Shanghai wall time ``YYYY-MM-DD HH:MM[:SS.fff]``."""
    return int(datetime.fromisoformat(text).replace(tzinfo=SHANGHAI).timestamp() * 1000)


START, END = at("2026-11-01 00:00"), at("2027-03-01 00:00")
# Fridays 22:00 to Saturdays 02:00 (2026-11-13 is a Friday)
FRIDAY_NIGHTS = ClaimWindows(daily=[DailyWindow("22:00", "02:00")], weekdays=[5])
# the last day of each month, 10:00-12:00 and 23:30 to 00:30 the next day
MONTH_ENDS = ClaimWindows(
    daily=[DailyWindow("10:00", "12:00"), DailyWindow("23:30", "00:30")], month_days=[-1]
)


def state(now: str, windows: ClaimWindows, end: int = END):
    return state_at(at(now), windows, SHANGHAI, START, end)


@pytest.mark.parametrize(
    ("now", "is_open", "edge"),
    [
        ("2026-11-13 21:59:59.999", False, "2026-11-13 22:00"),
        ("2026-11-13 22:00", True, "2026-11-14 02:00"),
        ("2026-11-13 23:59:59.999", True, "2026-11-14 02:00"),
        ("2026-11-14 00:00", True, "2026-11-14 02:00"),  # Saturday, in Friday's window
        ("2026-11-14 01:59:59.999", True, "2026-11-14 02:00"),
        ("2026-11-14 02:00", False, "2026-11-20 22:00"),
        ("2026-11-19 23:00", False, "2026-11-20 22:00"),  # Thursday night: not a Friday
    ],
)
def test_a_window_across_midnight_belongs_to_the_day_it_opens(now, is_open, edge):
    found = state(now, FRIDAY_NIGHTS)
    assert found.open is is_open
    assert (found.until_ms if is_open else found.opens_ms) == at(edge)


@pytest.mark.parametrize(
    ("now", "is_open", "edge"),
    [
        ("2026-11-29 12:00", False, "2026-11-30 10:00"),  # November has 30 days
        ("2026-11-30 11:59:59.999", True, "2026-11-30 12:00"),
        ("2026-11-30 12:00", False, "2026-11-30 23:30"),
        ("2026-12-01 00:29:59.999", True, "2026-12-01 00:30"),  # into the next month
        ("2026-12-01 00:30", False, "2026-12-31 10:00"),
        ("2027-01-31 23:45", True, "2027-02-01 00:30"),
        ("2027-02-01 00:30", False, "2027-02-28 10:00"),  # 2027: February ends on the 28th
    ],
)
def test_the_last_day_of_each_month(now, is_open, edge):
    found = state(now, MONTH_ENDS)
    assert found.open is is_open
    assert (found.until_ms if is_open else found.opens_ms) == at(edge)


def test_the_31st_skips_shorter_months_and_weekdays_combine():
    thirty_first = ClaimWindows(month_days=[31])
    assert state("2026-11-01 08:00", thirty_first).opens_ms == at("2026-12-31 00:00")
    assert state("2026-12-31 23:59", thirty_first).until_ms == at("2027-01-01 00:00")
    sunday_firsts = ClaimWindows(weekdays=[7], month_days=[1])  # 2026-11-01 is a Sunday
    assert state("2026-11-01 08:00", sunday_firsts).open
    assert state("2026-11-02 00:00", sunday_firsts).opens_ms == 0  # next: 2027-08-01, past END


def test_windows_are_clipped_to_the_campaign_and_end_it():
    found = state("2026-11-13 23:00", FRIDAY_NIGHTS, end=at("2026-11-14 00:30"))
    assert (found.open, found.until_ms) == (True, at("2026-11-14 00:30"))
    after = state("2026-11-14 02:00", FRIDAY_NIGHTS, end=at("2026-11-20 22:00"))
    assert (after.open, after.opens_ms) == (False, 0)  # no window left: ENDED


def test_the_clock_remembers_only_while_its_answer_holds():
    clock = WindowClock(FRIDAY_NIGHTS, SHANGHAI, START, END)
    assert not clock.state(at("2026-11-13 21:00")).open
    assert clock.state(at("2026-11-13 22:00")).open
    assert not clock.state(at("2026-11-14 02:00")).open
    assert clock.state(at("2026-11-13 22:30")).open  # a clock stepping back is answered afresh


async def test_claims_follow_the_windows_over_http(client, ops, redis, clock):
    campaign = await published(
        ops,
        stock=10,
        perUserLimit=10,
        startsAt="2026-11-01T00:00:00+08:00",
        endsAt="2027-03-01T00:00:00+08:00",
        windows={"daily": [{"opens": "22:00", "closes": "02:00"}], "weekdays": [5]},
    )
    clock.set(at("2026-11-13 21:59:59.250"))
    before = await snapshot(redis, campaign)
    status, data = await claim(client, "u1", campaign.id)
    assert (status, data["reason"], data["retryAfterMs"]) == (409, "NOT_STARTED", 750)
    assert await snapshot(redis, campaign) == before
    clock.set(at("2026-11-14 01:59:59.999"))  # Saturday, still Friday's window
    assert (await claim(client, "u1", campaign.id))[0] == 200
    clock.set(at("2026-11-14 02:00"))
    status, data = await claim(client, "u1", campaign.id)
    assert (status, data["reason"]) == (409, "NOT_STARTED")
    assert data["retryAfterMs"] == at("2026-11-20 22:00") - at("2026-11-14 02:00")


async def test_no_window_left_is_ended(client, ops, clock):
    campaign = await published(
        ops,
        startsAt="2026-11-01T00:00:00+08:00",
        endsAt="2026-11-30T00:00:00+08:00",
        windows={"monthDays": [-1]},  # November 30 is past the end
    )
    clock.set(at("2026-11-12 10:00"))
    status, data = await claim(client, "u1", campaign.id)
    assert (status, data["reason"]) == (410, "ENDED")


async def test_a_claim_queued_in_a_window_is_refused_once_it_closed(make_client, ops, clock):
    """The gate's second look uses the instant passed to the script, so a claim that
    passed the door at 01:59:59.999 but is decided at 02:00 is refused."""
    from gateway.claim.api import CLAIMS
    from gateway.infra.auth import Claimant

    campaign = await published(
        ops,
        startsAt="2026-11-01T00:00:00+08:00",
        endsAt="2027-03-01T00:00:00+08:00",
        windows={"daily": [{"opens": "22:00", "closes": "02:00"}]},
    )
    client = await make_client()
    service = client.server.app[CLAIMS]
    clock.set(at("2026-11-14 02:00"))
    claimant = Claimant("u1", False, 0, "", 2**40, 0)
    request = ClaimRequest(campaign.id, "req-queued-1", "dev-1", "seckill")
    from gateway.claim.service import _Claim

    [outcome] = await service._decide(campaign.id, [_Claim(request, claimant)])
    assert outcome.reason == "NOT_STARTED"
    assert outcome.retry_after_s == 20 * 3600


async def test_the_public_view_counts_down_to_the_next_window(client, ops, clock):
    campaign = await published(
        ops,
        startsAt="2026-11-01T00:00:00+08:00",
        endsAt="2026-11-20T22:00:00+08:00",  # as next Friday's window would open
        windows={"daily": [{"opens": "22:00", "closes": "02:00"}], "weekdays": [5]},
    )

    async def view(now: str) -> tuple[str, int | None]:
        clock.set(at(now))
        data = await (await client.get(f"/api/campaigns/{campaign.id}/public")).json()
        return data["status"], data["opensAtMs"]

    assert await view("2026-11-13 12:00") == ("upcoming", at("2026-11-13 22:00"))
    assert await view("2026-11-14 01:00") == ("open", None)
    assert await view("2026-11-14 02:00") == ("ended", None)  # no window left


async def test_a_retry_after_the_window_closed_gets_its_coupon(client, ops, clock):
    campaign = await published(
        ops,
        startsAt="2026-11-01T00:00:00+08:00",
        endsAt="2027-03-01T00:00:00+08:00",
        windows={"daily": [{"opens": "22:00", "closes": "02:00"}]},
    )
    clock.set(at("2026-11-14 01:59:59.900"))
    status, first = await claim(client, "u1", campaign.id, request_id="req-late-retry")
    assert status == 200
    clock.set(at("2026-11-14 02:00:00.200"))  # the answer was lost; the page retries
    status, again = await claim(client, "u1", campaign.id, request_id="req-late-retry")
    assert (status, again["couponId"]) == (200, first["couponId"])
    status, other = await claim(client, "u2", campaign.id, request_id="req-late-other")
    assert (status, other["reason"]) == (409, "NOT_STARTED")
