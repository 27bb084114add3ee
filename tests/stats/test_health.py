"""The health check against the hand-computed fixture of ``conftest.py``."""

from __future__ import annotations

import pytest

from gateway.reasons import Reason
from gateway.stats import abuse, gauges
from gateway.stats.health import health
from tests.helpers import auth, child_env, claim, flashclaim, published
from tests.stats.conftest import at


async def test_budget_burn_use_swings_and_expiring_coupons(campaign, pool):
    # The campaign runs 11-13 Nov (Shanghai) with 1,000,000 cents: the plan is 333,333,
    # 666,666 and 1,000,000 cents by the end of each day. Claims drew 70,000 on 11 Nov
    # (7 coupons of 10,000) and 10,000 on 12 Nov.
    report = await health(pool, campaign.id, at("2026-11-16 00:00"))
    assert report is not None
    assert [(b.day, b.drawn_cents, b.cumulative_cents, b.planned_cumulative_cents)
            for b in report.burn] == [
        ("2026-11-11", 70_000, 70_000, 333_333),
        ("2026-11-12", 10_000, 80_000, 666_666),
        ("2026-11-13", 0, 80_000, 1_000_000),
    ]  # fmt: skip
    assert [b.ahead_of_plan for b in report.burn] == [
        pytest.approx(70_000 / 333_333 - 1, abs=1e-6),  # -79 %
        pytest.approx(80_000 / 666_666 - 1, abs=1e-6),  # -88 %
        pytest.approx(-0.92),
    ]
    # 11 Nov: 7 claims, used u2, u3, u5 (u1 refunded): 3/7; 12 Nov: u8 used, 1/1: +57 points
    assert [(u.day, u.claims, u.used, u.use_rate, u.change, u.swing) for u in report.use] == [
        ("2026-11-11", 7, 3, 0.428571, None, False),
        ("2026-11-12", 1, 1, 1.0, 0.571429, True),
    ]
    # Unused: u4 (expires 18 Nov 10:03), u6 (12:30), u7 (23:30); all within 3 days of 16 Nov.
    assert (report.expiring_soon, report.expired_unused) == (3, 0)
    later = await health(pool, campaign.id, at("2026-11-18 12:00"))
    assert later is not None
    assert (later.expiring_soon, later.expired_unused) == (2, 1)
    assert await health(pool, "no-such-campaign", at("2026-11-16 00:00")) is None


async def test_the_command_prints_the_check(settings, campaign):
    from tests.helpers import child_env, flashclaim

    done = flashclaim(child_env(settings), "health", campaign.id)
    assert done.returncode == 0, done.stderr
    assert "2026-11-12           1         1   100.00%    +57.1%  SWING" in done.stdout
    assert "expired unused" in done.stdout


async def test_abuse_refusals_per_day_of_the_campaigns_zone(client, ops, redis, pool, clock):
    """Refusals tallied by the claim path, added to Redis by the worker, copied into
    PostgreSQL by the reconciler's round (twice: nothing counts twice), folded into the
    campaign's days: 23:30 and 00:30 in Shanghai are one UTC day but two campaign days."""
    campaign = await published(ops, perDeviceLimit=1, budgetCents=1_000_000)
    await ops.block(campaign.id, ["bot"], [])
    clock.set(at("2026-11-11 23:30"))
    for _ in range(2):
        assert (await claim(client, "bot", campaign.id))[1]["reason"] == "BLOCKED"
    code = {"code": "NOSUCHCODE42", "requestId": "req-code-1", "deviceId": "dev-g"}
    response = await client.post("/api/coupon/redeem", json=code, headers=auth("guesser"))
    guessed = (await response.json())["reason"]
    assert guessed.startswith("CODE_")
    await abuse.TALLY.flush(redis, clock.now_ms())
    clock.set(at("2026-11-12 00:30"))
    assert (await claim(client, "bot", campaign.id))[1]["reason"] == "BLOCKED"
    assert (await claim(client, "u1", campaign.id, device="d1"))[0] == 200
    assert (await claim(client, "u2", campaign.id, device="d1"))[1]["reason"] == "DEVICE_LIMIT"
    await abuse.TALLY.flush(redis, clock.now_ms())
    for _ in range(2):
        await gauges.refresh(pool, redis, clock, 1.0)
    report = await health(pool, campaign.id, clock.now_ms())
    assert report is not None
    days = {a.day: a.refusals for a in report.abuse}
    assert days["2026-11-11"]["BLOCKED"] == 2
    assert days["2026-11-11"][guessed] >= 1  # every campaign's code guessing
    assert {k: v for k, v in days["2026-11-12"].items() if not k.startswith("CODE_")} == {
        "BLOCKED": 1, "DEVICE_LIMIT": 1}  # fmt: skip


async def test_the_rollup_command_copies_abuse_tallies(settings, redis, pool, clock):
    clock.set(at("2026-11-20 08:00"))
    abuse.TALLY.note("c-roll", Reason.RATE_LIMITED)
    abuse.TALLY.note("c-roll", Reason.RATE_LIMITED)
    await abuse.TALLY.flush(redis, clock.now_ms())
    done = flashclaim(child_env(settings), "rollup")
    assert done.returncode == 0, done.stderr
    assert "abuse row(s)" in done.stdout
    stored = await pool.fetchval(
        "SELECT refusals FROM abuse_hourly WHERE campaign_id = 'c-roll' AND reason = $1",
        "RATE_LIMITED",
    )
    assert stored == 2
