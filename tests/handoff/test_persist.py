"""The consumer's write: COPY into staging, then one INSERT ... SELECT that skips what is
already stored (redeliveries, duplicates inside one batch)."""

from __future__ import annotations

import uuid

from gateway.claim.events import ClaimEvent
from gateway.handoff.persist import insert_claims

T = 1_800_000_000_000


def event(n: int) -> ClaimEvent:
    return ClaimEvent(
        coupon_id=str(uuid.UUID(int=n + 1)),
        campaign_id="persist",
        user_id=f"user-{n}",
        device_id=f"dev-{n}",
        request_id=f"req-{n:08d}",
        channel="seckill",
        value_cents=500 + n,
        claimed_at_ms=T + n,
        expires_at_ms=T + 86_400_000,
    )


async def test_duplicates_are_absorbed_and_rows_are_exact(pool):
    await pool.execute("DELETE FROM coupons WHERE campaign_id = 'persist'")
    async with pool.acquire() as conn:
        async with conn.transaction():
            assert await insert_claims(conn, [event(0), event(1), event(1)]) == 2
        async with conn.transaction():  # a redelivery overlapping the first batch
            assert await insert_claims(conn, [event(1), event(2)]) == 1
        async with conn.transaction():
            assert await insert_claims(conn, [event(2)]) == 0
        assert await conn.fetchval("SELECT count(*) FROM coupons_in") == 0  # emptied
    rows = await pool.fetch(
        "SELECT coupon_id::text, user_id, value_cents,"
        " (extract(epoch FROM claimed_at) * 1000)::bigint AS at"
        " FROM coupons WHERE campaign_id = 'persist' ORDER BY value_cents"
    )
    assert [tuple(r) for r in rows] == [
        (event(n).coupon_id, f"user-{n}", 500 + n, T + n) for n in range(3)
    ]
