"""Writing claims to PostgreSQL: one COPY per batch, duplicates absorbed.

The coupon id is the primary key and the same claim always carries the same coupon id,
so a redelivered message (relay retry, consumer restart, rebalance) inserts nothing.

A batch is first copied (binary COPY, the fastest way in) straight into ``coupons``
inside a savepoint: almost every batch is new rows only. COPY cannot skip a duplicate, so
when one is there (a redelivery) the copy fails on the primary key, the savepoint is rolled
back and the batch takes the staged way (``insert_claims_staged``): COPY into a temporary
staging table of the connection, then ``INSERT ... SELECT ... ON CONFLICT DO NOTHING``. The
staging table empties itself at commit. Either way rows go in in coupon id order: two
consumers writing overlapping batches (a rebalance redelivers a batch another member is
still writing) then wait for each other instead of deadlocking on the primary key, which
they did when each inserted in its own batch's order. The older one-statement form
(``unnest`` of nine arrays) stays as ``insert_claims_unnest``, the baseline
``bench/ab.py persist`` compares against.
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


COLUMNS = [
    "coupon_id",
    "campaign_id",
    "user_id",
    "device_id",
    "request_id",
    "channel",
    "value_cents",
    "claimed_at",
    "expires_at",
    "code_hash",  # the redeem code's keyed hash (migration 0023)
    "new_user",  # the claimant's layer as the token stated it (0032, statistics)
    "member_level",
    "tags",
]

STAGING = """
CREATE TEMPORARY TABLE IF NOT EXISTS coupons_in (
    coupon_id uuid, campaign_id text, user_id text, device_id text, request_id text,
    channel text, value_cents bigint, claimed_at timestamptz, expires_at timestamptz,
    code_hash text, new_user boolean, member_level integer, tags text[]
) ON COMMIT DELETE ROWS
"""

MOVE = f"""
INSERT INTO coupons ({", ".join(COLUMNS)})
SELECT {", ".join(COLUMNS)} FROM coupons_in ORDER BY coupon_id
ON CONFLICT (coupon_id) DO NOTHING
"""


def _at(epoch_ms: int) -> datetime:
    return datetime.fromtimestamp(epoch_ms / 1000, UTC)


async def insert_claims(
    conn: asyncpg.pool.PoolConnectionProxy, claims: Sequence[ClaimEvent]
) -> int:
    """Insert the claims not stored yet; return how many were new. Outside a transaction
    this opens one of its own (the staged way needs one: see ``insert_claims_staged``)."""
    if not conn.is_in_transaction():
        async with conn.transaction():
            return await insert_claims(conn, claims)
    rows = _rows(claims)
    try:
        async with conn.transaction():  # a savepoint: a failed COPY leaves nothing behind
            await conn.copy_records_to_table("coupons", records=rows, columns=COLUMNS)
    except asyncpg.UniqueViolationError:
        return await _staged(conn, rows)
    return len(rows)


async def insert_claims_staged(
    conn: asyncpg.pool.PoolConnectionProxy, claims: Sequence[ClaimEvent]
) -> int:
    """The staged way alone (COPY into staging, then one INSERT ... SELECT); the fallback
    of ``insert_claims`` and the baseline ``bench/ab.py persist-direct`` compares it with.
    The staging table is emptied at commit, so outside a transaction this opens one of its
    own (in autocommit the COPY's rows would be gone before the move)."""
    if not conn.is_in_transaction():
        async with conn.transaction():
            return await insert_claims_staged(conn, claims)
    return await _staged(conn, _rows(claims))


async def _staged(conn: asyncpg.pool.PoolConnectionProxy, rows: list[_Row]) -> int:
    await conn.execute(STAGING)
    await conn.copy_records_to_table("coupons_in", records=rows, columns=COLUMNS)
    status = await conn.execute(MOVE)  # "INSERT 0 <rows>"
    return int(status.rsplit(" ", 1)[1])


_Row = tuple[
    str,
    str,
    str,
    str,
    str,
    str,
    int,
    datetime,
    datetime,
    str | None,
    bool | None,
    int | None,
    list[str] | None,
]


def _rows(claims: Sequence[ClaimEvent]) -> list[_Row]:
    """COPY records in coupon id order (the order of the ids' bytes, whichever way an id
    is spelt: with or without hyphens, any case)."""
    ordered = sorted(claims, key=lambda c: c.coupon_id.replace("-", "").lower())
    return [
        (
            c.coupon_id,  # text: asyncpg's uuid codec takes it as it is
            c.campaign_id,
            c.user_id,
            c.device_id,
            c.request_id,
            c.channel,
            c.value_cents,
            _at(c.claimed_at_ms),
            _at(c.expires_at_ms),
            c.code or None,
            c.new_user,
            c.level,
            list(c.tags) or None,
        )
        for c in ordered
    ]


async def insert_claims_unnest(
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
