"""The profile lookup's manners: one lookup per user at a time, answers remembered, a
service that failed left alone for a second."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

import pytest

from gateway.infra.clock import ManualClock
from gateway.rules.profiles import DOWN_MS, CachedProfiles, ProfileUnavailable


class Source:
    """A profile source that answers after ``delay_s``, or fails while ``failing``."""

    def __init__(self) -> None:
        self.asked: list[str] = []
        self.delay_s = 0.0
        self.failing = False

    async def attributes(self, user_id: str) -> Mapping[str, float]:
        self.asked.append(user_id)
        await asyncio.sleep(self.delay_s)
        if self.failing:
            raise ProfileUnavailable("down")
        return {"orderCount": float(len(user_id))}


async def test_claims_of_one_user_share_a_lookup_and_its_answer():
    source, clock = Source(), ManualClock(0)
    profiles = CachedProfiles(source, clock, ttl_ms=60_000, timeout_ms=1000)
    source.delay_s = 0.05
    answers = await asyncio.gather(*(profiles.attributes("u1") for _ in range(20)))
    assert answers == [{"orderCount": 2.0}] * 20
    assert await profiles.attributes("u1") == {"orderCount": 2.0}
    assert source.asked == ["u1"]
    clock.advance(60_000)  # remembered no longer
    await profiles.attributes("u1")
    assert source.asked == ["u1", "u1"]


async def test_a_failed_service_is_left_alone_for_a_while():
    source, clock = Source(), ManualClock(0)
    profiles = CachedProfiles(source, clock, ttl_ms=60_000, timeout_ms=20)
    source.delay_s = 0.5  # slower than the timeout
    with pytest.raises(ProfileUnavailable, match="timed out"):
        await profiles.attributes("u1")
    source.delay_s = 0.0
    with pytest.raises(ProfileUnavailable, match="not asked"):
        await profiles.attributes("u2")
    assert source.asked == ["u1"]
    clock.advance(DOWN_MS)
    assert await profiles.attributes("u2") == {"orderCount": 2.0}
    source.failing = True
    with pytest.raises(ProfileUnavailable, match="down"):
        await profiles.attributes("u3")
    with pytest.raises(ProfileUnavailable, match="not asked"):
        await profiles.attributes("u4")
