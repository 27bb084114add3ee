"""The use figures (GMV, discount, average paid, subsidy rate, ROI, coupons per user) against
a hand-computed fixture: real orders locked, confirmed and refunded through the redemption
code, on two channels, across a day boundary of the campaign's zone (Shanghai)."""

from __future__ import annotations

import asyncio
import csv
import io
import uuid

import msgspec
import orjson
import pytest
from prometheus_client import REGISTRY

from gateway.claim.events import ClaimEvent
from gateway.handoff.persist import insert_claims
from gateway.redemption import orders
from gateway.redemption.cart import RefundRequest, UseRequest
from gateway.stats import gauges
from tests.helpers import ADMIN_TOKEN, auth, child_env, flashclaim, published
from tests.stats.conftest import at

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
TTL = 15 * 60_000

# user, claim channel, order, amount, confirmed at (Shanghai). u3's 00:10 on 12 Nov is
# still 11 Nov in UTC: it counts on the campaign's 12 Nov.
ORDERS = [
    ("u1", "h5", "A", 60_000, "2026-11-11 10:00"),
    ("u2", "h5", "B", 80_000, "2026-11-11 23:50"),  # refunded whole on 13 Nov
    ("u3", "app", "C", 55_000, "2026-11-12 00:10"),  # 9,000 of 45,000 paid refunded
    ("u4", "h5", "D", 100_000, "2026-11-12 09:00"),
    ("u4", "h5", "E", 50_000, "2026-11-13 08:00"),  # u4's second coupon
]


def usage_row(day, channel, uses, orders_, discount, gmv, paid, average, subsidy, roi):
    return {"day": day, "channel": channel, "uses": uses, "orders": orders_,
            "discountCents": discount, "gmvCents": gmv, "paidCents": paid,
            "averagePaidCents": average, "subsidyRate": subsidy, "roi": roi}  # fmt: skip


# Worked out by hand (each coupon takes 10,000 off: "100 off 500"):
# 11 Nov h5: A (60,000, paid 50,000); B used and refunded whole on 13 Nov: it leaves its
#   use day. Subsidy 10,000 / 60,000; ROI (60,000 - 10,000) / 10,000 = 5.
# 12 Nov app: C 55,000, paid 45,000; 9,000 refunded with 10,000 * 9,000 // 45,000 = 2,000
#   of discount: discount 8,000, paid 36,000, GMV 55,000 - 11,000 = 44,000; ROI 4.5.
# 12 Nov h5: D 100,000, paid 90,000; subsidy 0.1, ROI 9.  13 Nov h5: E 50,000, paid 40,000.
# Total: 4 uses, 4 orders, discount 38,000, GMV 254,000, paid 216,000, average 54,000,
#   subsidy 38,000 / 254,000 = 0.149606, ROI 216,000 / 38,000 = 5.684211;
#   users u1, u3, u4 (u2's use came back): 4 / 3 = 1.333333 coupons per user.
EXPECTED_ROWS = [
    usage_row("2026-11-11", "h5", 1, 1, 10_000, 60_000, 50_000, 50_000, 0.166667, 5.0),
    usage_row("2026-11-12", "app", 1, 1, 8_000, 44_000, 36_000, 36_000, 0.181818, 4.5),
    usage_row("2026-11-12", "h5", 1, 1, 10_000, 100_000, 90_000, 90_000, 0.1, 9.0),
    usage_row("2026-11-13", "h5", 1, 1, 10_000, 50_000, 40_000, 40_000, 0.2, 4.0),
]
EXPECTED_TOTAL = usage_row(None, "*", 4, 4, 38_000, 254_000, 216_000, 54_000, 0.149606,
                           5.684211)  # fmt: skip


def _request(order: str, coupon: str, amount: int) -> UseRequest:
    body = {"orderId": order, "amountCents": amount, "channel": "app", "couponIds": [coupon],
            "items": [{"sku": "sku-1", "category": "digital", "priceCents": amount,
                       "quantity": 1}]}  # fmt: skip
    return msgspec.convert(body, UseRequest)


@pytest.fixture
async def used(ops, pool):
    """A campaign whose coupons went through real orders as ``ORDERS`` says."""
    campaign = await published(ops, perUserLimit=2, channels=["h5", "app"], budgetCents=1_000_000)
    async with pool.acquire() as conn:
        for i, (user, channel, order, amount, when) in enumerate(ORDERS):
            coupon = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{campaign.id}/{i}"))
            claim = ClaimEvent(
                coupon_id=coupon, campaign_id=campaign.id, user_id=user,
                device_id=f"dev-{user}", request_id=f"req-{user}-{i:04d}", channel=channel,
                value_cents=campaign.value_cents, claimed_at_ms=at("2026-11-11 00:05"),
                expires_at_ms=at("2026-11-18 00:00"),
            )  # fmt: skip
            assert await insert_claims(conn, [claim]) == 1
            now, order_id = at(when), f"{campaign.id}-{order}"
            await orders.lock(conn, user, _request(order_id, coupon, amount), now_ms=now,
                              ttl_ms=TTL, new_user=False)  # fmt: skip
            assert (await orders.confirm(conn, user, order_id, now)).status == "confirmed"
        # A confirm or a refund repeated counts nothing again.
        assert (
            await orders.confirm(conn, "u1", f"{campaign.id}-A", at("2026-11-11 10:01"))
        ).replayed
        refund_day = at("2026-11-13 12:00")
        await orders.refund(conn, "u2", f"{campaign.id}-B", RefundRequest(), refund_day)
        for _ in range(2):
            state = await orders.refund(
                conn, "u3", f"{campaign.id}-C", RefundRequest(9_000, "r1"), refund_day
            )
        assert state.replayed
    return campaign


async def test_the_use_figures_match_the_hand_computed_fixture(client, used):
    response = await client.get(f"/admin/stats?campaign={used.id}", headers=ADMIN)
    assert response.status == 200
    report = (await response.json())["usage"]
    assert report["rows"] == EXPECTED_ROWS
    assert report["total"] == EXPECTED_TOTAL
    assert (report["users"], report["couponsPerUser"]) == (3, 1.333333)


async def test_a_range_of_use_days(client, used):
    response = await client.get(
        f"/admin/stats?campaign={used.id}&from=2026-11-12&to=2026-11-12", headers=ADMIN
    )
    report = (await response.json())["usage"]
    assert report["rows"] == EXPECTED_ROWS[1:3]
    assert report["total"] == usage_row(None, "*", 2, 2, 18_000, 144_000, 126_000, 63_000,
                                        0.125, 7.0)  # fmt: skip


async def test_the_rollup_equals_the_orders_it_came_from(used, pool):
    """The trigger's sums against the order tables themselves (one coupon per order here)."""
    rolled = await pool.fetchrow(
        "SELECT sum(uses), sum(discount_cents), sum(gmv_cents), sum(paid_cents)"
        " FROM usage_daily WHERE campaign_id = $1",
        used.id,
    )
    counted = await pool.fetchrow(
        "SELECT count(*) FILTER (WHERE o.status <> 'refunded'),"
        " sum(o.discount_cents) - coalesce(sum(r.discount), 0),"
        " sum(o.amount_cents - o.refunded_cents) - coalesce(sum(r.discount), 0),"
        " sum(o.pay_cents - o.refunded_cents)"
        " FROM coupon_orders o JOIN coupons k ON k.order_id = o.order_id AND k.user_id = o.user_id"
        " LEFT JOIN (SELECT user_id, order_id, sum(discount_cents) AS discount"
        "            FROM coupon_refunds GROUP BY 1, 2) r"
        "   ON (r.user_id, r.order_id) = (o.user_id, o.order_id)"
        " WHERE k.campaign_id = $1 AND o.status IN ('confirmed', 'refunded')",
        used.id,
    )
    assert tuple(rolled) == tuple(counted) == (4, 38_000, 254_000, 216_000)


async def test_the_command_prints_the_use_view(settings, used):
    env = child_env(settings)
    as_csv = flashclaim(env, "stats", used.id, "--view", "use", "--format", "csv")
    assert as_csv.returncode == 0, as_csv.stderr
    lines = list(csv.DictReader(io.StringIO(as_csv.stdout)))
    assert [(r["day"], r["channel"], r["gmvCents"], r["averagePaidCents"], r["roi"])
            for r in lines] == [
        ("2026-11-11", "h5", "60000", "50000", "5.0000"),
        ("2026-11-12", "app", "44000", "36000", "4.5000"),
        ("2026-11-12", "h5", "100000", "90000", "9.0000"),
        ("2026-11-13", "h5", "50000", "40000", "4.0000"),
        ("total", "*", "254000", "54000", "5.6842"),
    ]  # fmt: skip
    table = flashclaim(env, "stats", used.id, "--view", "use")
    assert table.stdout.splitlines()[-1].startswith("users 3, coupons per user 1.333;")
    as_json = flashclaim(env, "stats", used.id, "--format", "json")
    assert orjson.loads(as_json.stdout)["usage"]["total"] == EXPECTED_TOTAL


async def test_refused_uses_are_counted_by_reason_on_the_campaigns_day(client, clock, used, pool):
    coupon = str(uuid.uuid4())
    claim = ClaimEvent(
        coupon_id=coupon, campaign_id=used.id, user_id="u9", device_id="dev-u9",
        request_id="req-u9-0001", channel="h5", value_cents=used.value_cents,
        claimed_at_ms=at("2026-11-11 00:05"), expires_at_ms=at("2026-11-18 00:00"),
    )  # fmt: skip
    async with pool.acquire() as conn:
        assert await insert_claims(conn, [claim]) == 1
    clock.set(at("2026-11-12 00:10"))  # 11 Nov in UTC, 12 Nov in Shanghai
    small = {"orderId": f"{used.id}-small", "amountCents": 30_000, "channel": "app",
             "couponIds": [coupon], "items": [{"sku": "s", "category": "digital",
                                               "priceCents": 30_000, "quantity": 1}]}  # fmt: skip
    for _ in range(2):
        response = await client.post("/api/coupon/use", json=small, headers=auth("u9"))
        assert (response.status, (await response.json())["reason"]) == (409, "NOT_APPLICABLE")
    theirs = {**small, "orderId": f"{used.id}-theirs"}
    response = await client.post("/api/coupon/use", json=theirs, headers=auth("u8"))
    assert response.status == 404  # not the user's coupon: no campaign to count it on
    report = await client.get(f"/admin/stats?campaign={used.id}", headers=ADMIN)
    assert (await report.json())["usage"]["failures"] == {"NOT_APPLICABLE": 2}
    other_day = await client.get(
        f"/admin/stats?campaign={used.id}&from=2026-11-11&to=2026-11-11", headers=ADMIN
    )
    assert (await other_day.json())["usage"]["failures"] == {}


async def test_an_order_of_several_coupons_counts_once_per_campaign(ops, pool):
    """Two coupons of one campaign (claimed on two channels) and one of another on a
    1,000-yuan order: each campaign counts the order once (on the channel of its smallest
    coupon id) with its own discount; a whole refund takes everything back."""
    stacked = await published(ops, perUserLimit=2, usage={"perTier": 2})
    shop = await published(ops, usage={"tier": "shop"})
    coupons: dict[str, tuple[str, str]] = {}
    async with pool.acquire() as conn:
        for campaign, channel in ((stacked, "h5"), (stacked, "app"), (shop, "h5")):
            coupon = str(uuid.uuid4())
            claim = ClaimEvent(
                coupon_id=coupon, campaign_id=campaign.id, user_id="m1", device_id="dev-m1",
                request_id=f"req-m1-{len(coupons):04d}", channel=channel,
                value_cents=campaign.value_cents, claimed_at_ms=at("2026-11-11 00:05"),
                expires_at_ms=at("2026-11-18 00:00"),
            )  # fmt: skip
            assert await insert_claims(conn, [claim]) == 1
            coupons[coupon] = (campaign.id, channel)
        order, now = f"{stacked.id}-multi", at("2026-11-11 20:00")
        request = msgspec.convert(
            {"orderId": order, "amountCents": 100_000, "channel": "app",
             "couponIds": list(coupons), "items": [{"sku": "s", "category": "digital",
                                                    "priceCents": 100_000, "quantity": 1}]},
            UseRequest,
        )  # fmt: skip
        await orders.lock(conn, "m1", request, now_ms=now, ttl_ms=TTL, new_user=False)
        assert (await orders.confirm(conn, "m1", order, now)).discount_cents == 30_000
    lead = min(c for c, (campaign_id, _) in coupons.items() if campaign_id == stacked.id)
    rows = await pool.fetch(
        "SELECT campaign_id, channel, uses, discount_cents, orders, gmv_cents, paid_cents"
        " FROM usage_daily WHERE campaign_id = ANY($1::text[]) ORDER BY 1, 2",
        [stacked.id, shop.id],
    )
    found = {(r["campaign_id"], r["channel"]): tuple(r)[2:] for r in rows}
    other = "app" if coupons[lead][1] == "h5" else "h5"
    assert found == {
        (stacked.id, coupons[lead][1]): (1, 10_000, 1, 100_000, 70_000),
        (stacked.id, other): (1, 10_000, 0, 0, 0),
        (shop.id, "h5"): (1, 10_000, 1, 100_000, 70_000),
    }
    async with pool.acquire() as conn:
        await orders.refund(conn, "m1", order, RefundRequest(), at("2026-11-12 09:00"))
    left = await pool.fetch(
        "SELECT uses, discount_cents, orders, gmv_cents, paid_cents FROM usage_daily"
        " WHERE campaign_id = ANY($1::text[])",
        [stacked.id, shop.id],
    )
    assert {tuple(r) for r in left} == {(0, 0, 0, 0, 0)}
    users = await pool.fetch(
        "SELECT uses FROM usage_users WHERE campaign_id = ANY($1::text[])", [stacked.id, shop.id]
    )
    assert {r["uses"] for r in users} == {0}


async def test_the_reconcilers_round_rolls_up_exposures_and_sets_the_gauges(
    client, used, redis, pool, clock
):
    clock.set(at("2026-11-12 09:00"))
    body = {"viewerId": "dev-g", "views": [{"campaignId": used.id, "channel": "h5"}] * 2}
    assert (await client.post("/api/exposures", json=body)).status == 200
    await gauges.refresh(pool, redis, clock, 1.0)
    views = await pool.fetchval(
        "SELECT views FROM exposure_daily WHERE campaign_id = $1 AND channel = 'h5'"
        " AND day = '2026-11-12'",
        used.id,
    )
    assert views == 2

    def gauge(name: str, **labels: str) -> float | None:
        return REGISTRY.get_sample_value(name, {"campaign": used.id, **labels})

    figures = {f: gauge("flashclaim_stats_use", figure=f) for f in gauges.FIGURES}
    assert figures == {"uses": 4, "orders": 4, "discount_cents": 38_000,
                       "gmv_cents": 254_000, "paid_cents": 216_000}  # fmt: skip
    budget = {
        s: gauge("flashclaim_stats_budget_cents", state=s) for s in ("planned", "spent", "left")
    }
    assert budget == {"planned": 1_000_000, "spent": 50_000, "left": 950_000}


async def test_concurrent_confirms_and_refunds_count_each_order_once(ops, pool):
    """40 orders of one campaign confirmed at once on several connections, then 20 of them
    refunded at once (10 whole, 10 in part): the rollups equal the order tables."""
    campaign = await published(ops, channels=[])
    users = [f"c{i}" for i in range(40)]
    async with pool.acquire() as conn:
        for i, user in enumerate(users):
            coupon = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{campaign.id}/{user}"))
            claim = ClaimEvent(
                coupon_id=coupon, campaign_id=campaign.id, user_id=user, device_id="d",
                request_id=f"req-{user}", channel=("h5", "app")[i % 2],
                value_cents=campaign.value_cents, claimed_at_ms=at("2026-11-11 00:05"),
                expires_at_ms=at("2026-11-18 00:00"),
            )  # fmt: skip
            assert await insert_claims(conn, [claim]) == 1
            order = _request(f"{campaign.id}-{user}", coupon, 50_000 + 1_000 * i)
            await orders.lock(conn, user, order, now_ms=at("2026-11-11 10:00"), ttl_ms=TTL,
                              new_user=False)  # fmt: skip

    async def confirm(user: str) -> None:
        async with pool.acquire() as conn:
            await orders.confirm(conn, user, f"{campaign.id}-{user}", at("2026-11-11 10:01"))

    async def refund(i: int, user: str) -> None:
        request = RefundRequest() if i < 10 else RefundRequest(7_000, "part")
        async with pool.acquire() as conn:
            await orders.refund(conn, user, f"{campaign.id}-{user}", request,
                                at("2026-11-12 10:00"))  # fmt: skip

    await asyncio.gather(*(confirm(user) for user in users))
    await asyncio.gather(*(refund(i, user) for i, user in enumerate(users[:20])))
    rolled = await pool.fetchrow(
        "SELECT sum(uses), sum(orders), sum(discount_cents), sum(gmv_cents), sum(paid_cents)"
        " FROM usage_daily WHERE campaign_id = $1",
        campaign.id,
    )
    counted = await pool.fetchrow(
        "SELECT count(*) FILTER (WHERE o.status = 'confirmed'),"
        " count(*) FILTER (WHERE o.status = 'confirmed'),"
        " sum(o.discount_cents) - coalesce(sum(r.discount), 0),"
        " sum(o.amount_cents - o.refunded_cents) - coalesce(sum(r.discount), 0),"
        " sum(o.pay_cents - o.refunded_cents)"
        " FROM coupon_orders o LEFT JOIN (SELECT user_id, order_id, sum(discount_cents)"
        " AS discount FROM coupon_refunds GROUP BY 1, 2) r"
        " ON (r.user_id, r.order_id) = (o.user_id, o.order_id) WHERE o.order_id LIKE $1",
        f"{campaign.id}-%",
    )
    assert tuple(rolled) == tuple(counted)
    assert rolled[0] == 30
    users_with_use = await pool.fetchval(
        "SELECT users FROM usage_campaigns WHERE campaign_id = $1", campaign.id
    )
    assert users_with_use == 30
