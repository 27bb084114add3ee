"""Per-day limits and daily stock roll over at midnight in the campaign's time zone."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from gateway.infra.clock import day_of
from tests.helpers import SHANGHAI, claim, published

UTC = ZoneInfo("UTC")


def at(text: str) -> int:
    return int(datetime.fromisoformat(text).timestamp() * 1000)


def test_shanghai_day_starts_at_16_utc():
    day = day_of(at("2026-11-11T15:59:59.999+00:00"), SHANGHAI)
    assert day.label == "20261111"
    assert day.end_ms == at("2026-11-11T16:00:00+00:00")
    assert day_of(at("2026-11-11T16:00:00+00:00"), SHANGHAI).label == "20261112"
    assert day_of(at("2026-11-11T16:00:00+00:00"), UTC).label == "20261111"


async def test_daily_limits_reset_at_shanghai_midnight_not_utc(client, ops, clock):
    campaign = await published(
        ops,
        stock=10,
        dailyStock=2,
        perUserLimit=5,
        perUserDailyLimit=1,
        validity={"mode": "end_of_claim_day"},
    )
    clock.set(at("2026-11-11T23:59:59.000+08:00"))
    code, first = await claim(client, "u1", campaign.id)
    assert code == 200
    assert first["expiresAt"] == "2026-11-12T00:00:00.000+08:00"
    assert (await claim(client, "u1", campaign.id))[1]["reason"] == "USER_DAILY_LIMIT"
    assert (await claim(client, "u2", campaign.id))[0] == 200
    assert (await claim(client, "u3", campaign.id))[1]["reason"] == "DAILY_SOLD_OUT"

    clock.set(at("2026-11-12T00:00:00.000+08:00"))  # 16:00 UTC: a new day in Shanghai
    code, second = await claim(client, "u1", campaign.id)
    assert code == 200, second
    assert second["expiresAt"] == "2026-11-13T00:00:00.000+08:00"
    assert (await claim(client, "u3", campaign.id))[0] == 200
    assert (await claim(client, "u4", campaign.id))[1]["reason"] == "DAILY_SOLD_OUT"


async def test_campaign_in_another_zone_rolls_over_there(client, ops, clock):
    campaign = await published(
        ops,
        timeZone="America/Los_Angeles",
        perUserLimit=5,
        perUserDailyLimit=1,
        startsAt="2026-11-10T00:00:00-08:00",
        endsAt="2026-11-20T00:00:00-08:00",
    )
    clock.set(at("2026-11-11T23:30:00-08:00"))
    assert (await claim(client, "u1", campaign.id))[0] == 200
    clock.set(at("2026-11-12T00:00:00+08:00"))  # Shanghai midnight: still the 11th in LA
    assert (await claim(client, "u1", campaign.id))[1]["reason"] == "USER_DAILY_LIMIT"
    clock.set(at("2026-11-12T00:00:00-08:00"))
    assert (await claim(client, "u1", campaign.id))[0] == 200
