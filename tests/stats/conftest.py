"""The stats tests' shared fixture: a campaign with claims, status changes and exposures
whose figures are worked out by hand in the tests."""

from __future__ import annotations

import uuid
from datetime import datetime

import pytest

from gateway.claim.events import ClaimEvent
from gateway.handoff.persist import insert_claims
from tests.helpers import SHANGHAI, published


def at(text: str) -> int:
    """Epoch ms of a Shanghai wall-clock time."""
    return int(datetime.fromisoformat(text).replace(tzinfo=SHANGHAI).timestamp() * 1000)


# user, channel, claimed at (Shanghai). u8 claims at 00:10 on 12 Nov in Shanghai, which is
# still 11 Nov in UTC: it must count on the campaign's 12 Nov.
CLAIMS = [
    ("u1", "h5", "2026-11-11 10:00"),
    ("u2", "h5", "2026-11-11 10:01"),
    ("u3", "h5", "2026-11-11 10:02"),
    ("u4", "h5", "2026-11-11 10:03"),
    ("u7", "h5", "2026-11-11 23:30"),
    ("u5", "app", "2026-11-11 12:00"),
    ("u6", "app", "2026-11-11 12:30"),
    ("u8", "h5", "2026-11-12 00:10"),
]

EXPOSURES = [  # channel, day, views, unique viewers (as the rollup writes them)
    ("h5", "2026-11-11", 40, 25),
    ("app", "2026-11-11", 10, 8),
    ("*", "2026-11-11", 50, 30),
    ("h5", "2026-11-12", 20, 15),
    ("*", "2026-11-12", 20, 15),
]


def event(campaign_id, user, channel, when):
    return ClaimEvent(
        coupon_id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"{campaign_id}/{user}")),
        campaign_id=campaign_id,
        user_id=user,
        device_id=f"dev-{user}",
        request_id=f"req-{user}-0001",
        channel=channel,
        value_cents=10_000,
        claimed_at_ms=at(when),
        expires_at_ms=at(when) + 7 * 86_400_000,
    )


@pytest.fixture
async def campaign(ops, pool):
    await pool.execute("TRUNCATE exposure_daily")
    campaign = await published(ops, budgetCents=1_000_000, channels=["h5", "app"])
    events = [event(campaign.id, *claim) for claim in CLAIMS]
    async with pool.acquire() as conn:
        assert await insert_claims(conn, events[:5]) == 5
        assert await insert_claims(conn, events) == 3  # a redelivered batch: 5 absorbed
        assert await insert_claims(conn, events) == 0
    await pool.execute(
        "UPDATE coupons SET status = 'used' WHERE user_id = ANY($1::text[])",
        ["u1", "u2", "u3", "u5", "u8"],
    )
    await pool.execute("UPDATE coupons SET status = 'refunded' WHERE user_id = 'u1'")
    await pool.execute("UPDATE coupons SET status = 'used' WHERE false")  # no rows: no change
    await pool.executemany(
        "INSERT INTO exposure_daily VALUES ($1, $2, $3::text::date, $4, $5, now())",
        [(campaign.id, *exposure) for exposure in EXPOSURES],
    )
    return campaign
