"""The consumer's write: one COPY straight into coupons, or, when the batch holds a
duplicate, COPY into staging and one INSERT ... SELECT that skips what is already stored
(redeliveries, duplicates inside one batch)."""

from __future__ import annotations

import asyncio
import random
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


async def test_overlapping_batches_written_at_once_store_each_row_once(pool):
    """Four members write overlapping batches (a rebalance's redeliveries) in random order
    at the same time: no deadlock, every claim stored once, counted new exactly once."""
    await pool.execute("DELETE FROM coupons WHERE campaign_id = 'persist'")
    claims = [event(n) for n in range(10, 1010)]
    shuffled = random.Random(7)
    batches = [shuffled.sample(claims[i * 200 : i * 200 + 400], 400) for i in range(4)]

    async def write(batch: list[ClaimEvent]) -> int:
        async with pool.acquire() as conn, conn.transaction():
            return await insert_claims(conn, batch)

    new = await asyncio.gather(*(write(batch) for batch in batches))
    assert sum(new) == 1000
    stored = await pool.fetchval("SELECT count(*) FROM coupons WHERE campaign_id = 'persist'")
    assert stored == 1000


async def test_a_batch_waiting_on_another_member_does_not_deadlock(pool):
    """Member A holds coupon x uncommitted; member B's batch [y, x] arrives meanwhile and
    waits for x; then A writes y. Rows go in in coupon id order, so B waits at x before
    taking y and A goes through; unsorted, B would hold y while waiting for x, and A's
    y would wait for B: a deadlock. B's copy then meets the committed x and B falls back
    to the staged way, which stores nothing new."""
    await pool.execute("DELETE FROM coupons WHERE campaign_id = 'persist'")
    x, y = event(20), event(21)  # x sorts before y
    async with pool.acquire() as a, pool.acquire() as b:
        in_a, in_b = a.transaction(), b.transaction()
        await in_a.start()
        assert await insert_claims(a, [x]) == 1
        await in_b.start()
        b_writes = asyncio.create_task(insert_claims(b, [y, x]))
        await asyncio.sleep(0.3)  # B is waiting for x (if slower, the test is only easier)
        assert await insert_claims(a, [y]) == 1
        await in_a.commit()
        assert await b_writes == 0
        await in_b.commit()
    stored = await pool.fetchval("SELECT count(*) FROM coupons WHERE campaign_id = 'persist'")
    assert stored == 2
