"""Fixtures of the coupon-use tests: campaigns in PostgreSQL, coupons as the consumer stores
them, a gateway on the manual clock, and the order tables emptied between tests."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import pytest

from gateway.campaigns.ops import CampaignOps
from gateway.campaigns.spec import Campaign, decode_spec
from gateway.claim.events import ClaimEvent
from gateway.handoff.persist import insert_claims
from tests.credit.conftest import credit_pool, ledger, plans, topups  # noqa: F401 (orders paid with credit)

# The hand-off fault tests' own servers (a Redis with an AOF, a PostgreSQL) serve ours too.
from tests.handoff.test_faults import own_postgres, own_redis  # noqa: F401
from tests.helpers import DAY_MS, T0_MS, spec

_ids = itertools.count()

#: A cart of 600 yuan: two digital items and one book.
CART: dict[str, Any] = {
    "amountCents": 60_000,
    "items": [
        {"sku": "phone", "category": "digital", "brand": "acme", "priceCents": 40_000,
         "quantity": 1},
        {"sku": "cable", "category": "digital", "brand": "acme", "priceCents": 5_000,
         "quantity": 2},
        {"sku": "novel", "category": "books", "priceCents": 10_000, "quantity": 1},
    ],
    "channel": "app",
    "city": "shanghai",
}  # fmt: skip


@pytest.fixture
async def orders_pool(pool: asyncpg.Pool) -> asyncpg.Pool:
    """The test database with no orders, refunds or events left from another test."""
    await pool.execute("TRUNCATE coupon_refunds, coupon_orders, coupon_events, campaign_voids")
    return pool


Give = Callable[..., Awaitable[str]]
MakeCampaign = Callable[..., Awaitable[Campaign]]


@pytest.fixture
def make_campaign(ops: CampaignOps) -> MakeCampaign:
    """A published campaign built by ``spec(**overrides)``."""

    async def make(**overrides: Any) -> Campaign:
        campaign = await ops.create(decode_spec(spec(**overrides)))
        return await ops.publish(campaign.id)

    return make


@pytest.fixture
def give(orders_pool: asyncpg.Pool) -> Give:
    """Store a coupon of ``campaign`` for ``user`` as the consumer would; return its id."""

    async def give_(
        campaign: Campaign,
        user: str = "u1",
        *,
        claimed_ms: int = T0_MS,
        expires_ms: int = T0_MS + 7 * DAY_MS,
    ) -> str:
        coupon_id = str(uuid.uuid4())
        event = ClaimEvent(
            coupon_id=coupon_id,
            campaign_id=campaign.id,
            user_id=user,
            device_id="dev-1",
            request_id=f"req-{next(_ids):08d}",
            channel="seckill",
            value_cents=campaign.value_cents,
            claimed_at_ms=claimed_ms,
            expires_at_ms=expires_ms,
        )
        async with orders_pool.acquire() as conn:
            assert await insert_claims(conn, [event]) == 1
        return coupon_id

    return give_


def use_body(order: str, coupons: list[str], **overrides: Any) -> dict[str, Any]:
    """A lock request for ``CART`` (or what the overrides change)."""
    return {**CART, "orderId": order, "couponIds": coupons, **overrides}
