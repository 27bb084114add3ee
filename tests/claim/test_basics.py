"""The claim endpoint's happy path and replay."""

from __future__ import annotations

from tests.helpers import T0_MS, claim, published


async def test_accepted_claim_returns_coupon(client, ops, clock):
    campaign = await published(ops)
    clock.set(T0_MS + 1)
    status, data = await claim(client, "alice", campaign.id)
    assert status == 200, data
    assert data["code"] == 0
    assert data["reason"] == "ACCEPTED"
    assert len(data["couponId"]) == 36
    assert data["expiresAt"].startswith("2026-11-18T00:00:00.001+08:00")
