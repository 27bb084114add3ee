"""The funnel per user layer: the token's facts travel from the claim (claim.lua's outbox
entry) through the relay's event and the consumer's insert to the coupon row; claims and
use per layer match a hand-computed fixture."""

from __future__ import annotations

import csv
import io

import msgspec
import pytest

from gateway.campaigns.ops import keys_of
from gateway.claim.events import ClaimEvent
from gateway.handoff.persist import insert_claims
from gateway.redemption import orders
from gateway.redemption.cart import UseRequest
from tests.helpers import ADMIN_TOKEN, child_env, claim, flashclaim, published
from tests.stats.conftest import at

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}

# user: token facts; orders of 600 and 800 yuan for n1 and r1, each 100 off.
USERS = {
    "n1": {"new_user": True, "level": 1, "tags": ["student"]},
    "n2": {"new_user": True, "level": 2},
    "r1": {"level": 3, "tags": ["student", "vip"]},
    "r2": {},
}
ORDERS = {"n1": 60_000, "r1": 80_000}


def layer(name, claims, used, use_rate, uses=0, orders_=0, discount=0, gmv=0, paid=0,
          average=None, subsidy=None, roi=None):  # fmt: skip
    return {"layer": name, "claims": claims, "used": used, "useRate": use_rate, "uses": uses,
            "orders": orders_, "discountCents": discount, "gmvCents": gmv, "paidCents": paid,
            "averagePaidCents": average, "subsidyRate": subsidy, "roi": roi}  # fmt: skip


N1 = (1, 1, 10_000, 60_000, 50_000, 50_000, 0.166667, 5.0)
R1 = (1, 1, 10_000, 80_000, 70_000, 70_000, 0.125, 7.0)
# By hand: new = n1, n2 (n1 used); returning = r1, r2 (r1 used); levels one user each;
# tag:student = n1 + r1: 20,000 off 140,000, paid 120,000 over 2 orders, ROI 6.
EXPECTED = [
    layer("level:0", 1, 0, 0.0),
    layer("level:1", 1, 1, 1.0, *N1),
    layer("level:2", 1, 0, 0.0),
    layer("level:3", 1, 1, 1.0, *R1),
    layer("new", 2, 1, 0.5, *N1),
    layer("returning", 2, 1, 0.5, *R1),
    layer("tag:student", 2, 2, 1.0, 2, 2, 20_000, 140_000, 120_000, 60_000, 0.142857, 6.0),
    layer("tag:vip", 1, 1, 1.0, *R1),
]


@pytest.fixture
async def layered(client, ops, redis, pool, clock):
    """Claims through the gateway, stored from their outbox entries; n1 and r1 use theirs."""
    campaign = await published(ops, channels=[])
    clock.set(at("2026-11-11 01:00"))
    coupons = {}
    for user, facts in USERS.items():
        status, data = await claim(client, user, campaign.id, claims=facts)
        assert status == 200, data
        coupons[user] = data["couponId"]
    entries = await redis.xrange(keys_of(campaign).outbox)
    events = [ClaimEvent.from_outbox(fields) for _, fields in entries]
    async with pool.acquire() as conn:
        assert await insert_claims(conn, events) == 4
        for user, amount in ORDERS.items():
            order, now = f"{campaign.id}-{user}", at("2026-11-11 12:00")
            request = msgspec.convert(
                {"orderId": order, "amountCents": amount, "channel": "app",
                 "couponIds": [coupons[user]], "items": [{"sku": "s", "category": "digital",
                                                          "priceCents": amount, "quantity": 1}]},
                UseRequest,
            )  # fmt: skip
            await orders.lock(conn, user, request, now_ms=now, ttl_ms=60_000, new_user=False)
            await orders.confirm(conn, user, order, now)
    return campaign, events


async def test_the_claim_carries_the_tokens_facts_to_the_coupon_row(layered, pool):
    campaign, events = layered
    facts = {e.user_id: (e.new_user, e.level, e.tags) for e in events}
    assert facts == {"n1": (True, 1, ("student",)), "n2": (True, 2, ()),
                     "r1": (False, 3, ("student", "vip")), "r2": (False, 0, ())}  # fmt: skip
    rows = await pool.fetch(
        "SELECT user_id, new_user, member_level, tags FROM coupons WHERE campaign_id = $1",
        campaign.id,
    )
    assert {r["user_id"]: tuple(r)[1:] for r in rows} == {
        "n1": (True, 1, ["student"]), "n2": (True, 2, None),
        "r1": (False, 3, ["student", "vip"]), "r2": (False, 0, None),
    }  # fmt: skip


async def test_the_funnel_per_layer_matches_the_hand_computed_fixture(client, layered):
    campaign, _ = layered
    response = await client.get(f"/admin/stats?campaign={campaign.id}", headers=ADMIN)
    assert (await response.json())["layers"] == EXPECTED


def test_an_outbox_entry_of_an_older_script_has_no_layer():
    old = {"coupon": "0" * 32, "campaign": "c1", "user": "u", "device": "d", "request": "r",
           "channel": "h5", "value": "100", "at": "1", "expires": "2"}  # fmt: skip
    event = ClaimEvent.from_outbox(old)
    assert (event.new_user, event.level, event.tags) == (None, None, ())


async def test_the_command_prints_the_layers(settings, layered):
    campaign, _ = layered
    shown = flashclaim(child_env(settings), "stats", campaign.id, "--view", "layers",
                       "--format", "csv")  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    lines = list(csv.DictReader(io.StringIO(shown.stdout)))
    assert [(r["layer"], r["claims"], r["gmvCents"]) for r in lines] == [
        (e["layer"], str(e["claims"]), str(e["gmvCents"])) for e in EXPECTED
    ]
