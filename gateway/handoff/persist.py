"""Writing claims to PostgreSQL: one statement per batch, duplicates absorbed.

The coupon id is the primary key and the same claim always carries the same coupon id,
so a redelivered message (relay retry, consumer restart, rebalance) inserts nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from uuid import UUID

import asyncpg

from gateway.claim.events import ClaimEvent

INSERT = """
INSERT INTO coupons (coupon_id, campaign_id, user_id, device_id, request_id, channel,
                     value_cents, claimed_at, expires_at)
SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
                     $7::bigint[], $8::timestamptz[], $9::timestamptz[])
ON CONFLICT (coupon_id) DO NOTHING
RETURNING coupon_id
"""


def _at(epoch_ms: int) -> datetime:
    return datetime.fromtimestamp(epoch_ms / 1000, UTC)


async def insert_claims(
    conn: asyncpg.pool.PoolConnectionProxy, claims: Sequence[ClaimEvent]
) -> int:
    """Insert the claims not stored yet, in one round trip; return how many were new."""
    rows = await conn.fetch(
        INSERT,
        [UUID(c.coupon_id) for c in claims],
        [c.campaign_id for c in claims],
        [c.user_id for c in claims],
        [c.device_id for c in claims],
        [c.request_id for c in claims],
        [c.channel for c in claims],
        [c.value_cents for c in claims],
        [_at(c.claimed_at_ms) for c in claims],
        [_at(c.expires_at_ms) for c in claims],
    )
    return len(rows)
