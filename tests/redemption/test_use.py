"""The coupon-use API end to end: wallet, quote, lock, confirm, cancel, refund, bad input."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.infra.clock import ManualClock
from tests.helpers import T0_MS, auth
from tests.redemption.conftest import CART, use_body

NOW = T0_MS + 3_600_000


@pytest.fixture
def now(clock: ManualClock) -> ManualClock:
    clock.set(NOW)
    return clock


async def post(client: Any, path: str, body: Any = None, user: str = "u1") -> tuple[int, Any]:
    response = await client.post(path, json=body, headers=auth(user))
    return response.status, await response.json()


async def test_the_wallet_lists_coupons_newest_first_with_rule_text(
    client, now, make_campaign, give
):
    campaign = await make_campaign(usage={"scope": {"categories": ["digital"]}})
    older = await give(campaign, claimed_ms=T0_MS)
    newer = await give(campaign, claimed_ms=T0_MS + 60_000)
    await give(campaign, user="someone-else")
    response = await client.get("/api/coupons", headers=auth("u1"))
    wallet = await response.json()
    assert response.status == 200, wallet
    assert [c["couponId"] for c in wallet["coupons"]] == [newer, older]
    first = wallet["coupons"][0]
    assert first["status"] == "unused"
    assert first["ruleText"]["zh"].startswith("满¥500减¥100，仅限digital")
    assert first["usage"]["scope"]["categories"] == ["digital"]
    page = await (await client.get("/api/coupons?limit=1", headers=auth("u1"))).json()
    assert [c["couponId"] for c in page["coupons"]] == [newer]
    rest = await (
        await client.get(f"/api/coupons?limit=1&before={page['next']}", headers=auth("u1"))
    ).json()
    assert [c["couponId"] for c in rest["coupons"]] == [older]


async def test_an_expired_coupon_reads_expired_at_once(client, now, make_campaign, give):
    campaign = await make_campaign()
    await give(campaign, expires_ms=NOW + 1000)
    now.advance(1000)
    wallet = await (await client.get("/api/coupons?status=expired", headers=auth("u1"))).json()
    assert [c["status"] for c in wallet["coupons"]] == ["expired"]
    status, data = await post(
        client, "/api/coupon/use", use_body("o-1", [wallet["coupons"][0]["couponId"]])
    )
    assert (status, data["reason"]) == (409, "COUPON_EXPIRED")


async def test_quote_then_lock_then_confirm(client, now, make_campaign, give, orders_pool):
    campaign = await make_campaign()
    coupon = await give(campaign)
    status, quoted = await post(client, "/api/checkout/quote", CART)
    assert status == 200, quoted
    assert quoted["best"]["couponIds"] == [coupon]
    assert (quoted["best"]["discountCents"], quoted["best"]["payCents"]) == (10_000, 50_000)

    status, locked = await post(client, "/api/coupon/use", use_body("order-1", [coupon]))
    assert status == 200, locked
    assert (locked["code"], locked["reason"]) == (0, "LOCKED")
    assert locked["discountCents"] == quoted["best"]["discountCents"]
    assert locked["allocation"] == quoted["best"]["allocation"]
    assert locked["lockedUntilMs"] == NOW + 900_000

    response = await client.post("/api/coupon/use", json=use_body("order-1", [coupon]),
                                 headers=auth("u1"))  # fmt: skip
    assert response.headers["Idempotent-Replayed"] == "true"
    assert await response.json() == locked

    status, confirmed = await post(client, "/api/coupon/use/order-1/confirm")
    assert (status, confirmed["reason"], confirmed["status"]) == (200, "CONFIRMED", "confirmed")
    again = await post(client, "/api/coupon/use/order-1/confirm")
    assert again == (200, confirmed)
    row = await orders_pool.fetchrow("SELECT status, order_id, discount_cents FROM coupons")
    assert dict(row) == {"status": "used", "order_id": "order-1", "discount_cents": 10_000}
    events = await orders_pool.fetch("SELECT transition FROM coupon_events ORDER BY event_id")
    assert [e["transition"] for e in events] == ["lock", "confirm"]


async def test_an_order_id_is_one_request(client, now, make_campaign, give):
    campaign = await make_campaign()
    a, b = await give(campaign), await give(campaign)
    assert (await post(client, "/api/coupon/use", use_body("o-1", [a])))[0] == 200
    for other in (use_body("o-1", [b]), use_body("o-1", [a], city="beijing")):
        status, data = await post(client, "/api/coupon/use", other)
        assert (status, data["reason"]) == (409, "ORDER_MISMATCH")
    status, data = await post(client, "/api/coupon/use", use_body("o-2", [a]))
    assert (status, data["reason"]) == (409, "COUPON_LOCKED")


async def test_someone_elses_coupon_is_not_found(client, now, make_campaign, give):
    campaign = await make_campaign()
    theirs = await give(campaign, user="u2")
    status, data = await post(client, "/api/coupon/use", use_body("o-1", [theirs]))
    assert (status, data["reason"]) == (404, "COUPON_NOT_FOUND")


async def test_all_or_none(client, now, make_campaign, give, orders_pool):
    usable = await give(await make_campaign())
    wrong_city = await give(await make_campaign(usage={"cities": ["beijing"], "tier": "shop"}))
    status, data = await post(client, "/api/coupon/use", use_body("o-1", [usable, wrong_city]))
    assert (status, data["reason"]) == (409, "NOT_APPLICABLE")
    assert wrong_city in data["message"]
    statuses = await orders_pool.fetch("SELECT status FROM coupons")
    assert {r["status"] for r in statuses} == {"unused"}
    assert await orders_pool.fetchval("SELECT count(*) FROM coupon_orders") == 0
    assert await orders_pool.fetchval("SELECT count(*) FROM coupon_events") == 0


async def test_two_platform_coupons_do_not_stack(client, now, make_campaign, give):
    campaign = await make_campaign(faceValueCents=1_000, thresholdCents=2_000)
    a, b = await give(campaign), await give(campaign)
    status, data = await post(client, "/api/coupon/use", use_body("o-1", [a, b]))
    assert (status, data["reason"]) == (409, "NOT_STACKABLE")


async def test_cancel_returns_the_coupon_and_a_later_lock_may_take_it(
    client, now, make_campaign, give
):
    coupon = await give(await make_campaign())
    await post(client, "/api/coupon/use", use_body("o-1", [coupon]))
    status, data = await post(client, "/api/coupon/use/o-1/cancel")
    assert (status, data["reason"]) == (200, "CANCELLED")
    assert await post(client, "/api/coupon/use/o-1/cancel") == (200, data)
    status, data = await post(client, "/api/coupon/use/o-1/confirm")
    assert (status, data["reason"]) == (409, "ORDER_STATE")
    status, data = await post(client, "/api/coupon/use", use_body("o-2", [coupon]))
    assert (status, data["reason"]) == (200, "LOCKED")


async def test_a_lock_runs_out_once_and_a_late_confirm_is_refused(
    client, now, make_campaign, give, orders_pool
):
    coupon = await give(await make_campaign())
    await post(client, "/api/coupon/use", use_body("o-1", [coupon]))
    now.advance(900_000)
    status, data = await post(client, "/api/coupon/use/o-1/confirm")
    assert (status, data["reason"]) == (409, "LOCK_EXPIRED")
    status, data = await post(client, "/api/coupon/use/o-1/confirm")
    assert (status, data["reason"]) == (409, "LOCK_EXPIRED")
    status, data = await post(client, "/api/coupon/use/o-1/cancel")
    assert (status, data["reason"]) == (200, "EXPIRED")
    events = await orders_pool.fetch("SELECT transition FROM coupon_events ORDER BY event_id")
    assert [e["transition"] for e in events] == ["lock", "lock_expire"]
    assert await orders_pool.fetchval("SELECT status FROM coupons") == "unused"


async def test_a_lock_never_outlives_its_coupon(client, now, make_campaign, give):
    coupon = await give(await make_campaign(), expires_ms=NOW + 60_000)
    _, data = await post(client, "/api/coupon/use", use_body("o-1", [coupon]))
    assert data["lockedUntilMs"] == NOW + 60_000


async def test_refunds_whole_and_partial(client, now, make_campaign, give, orders_pool):
    returned = await give(await make_campaign())
    kept = await give(await make_campaign(usage={"refund": "keep", "tier": "shop"},
                                          faceValueCents=3_000, thresholdCents=10_000))  # fmt: skip
    await post(client, "/api/coupon/use", use_body("o-1", [returned, kept]))
    await post(client, "/api/coupon/use/o-1/confirm")  # paid 60,000 - 13,000 = 47,000
    status, data = await post(client, "/api/coupon/use/o-1/refund", {"amountCents": 4_700})
    assert (status, data["reason"]) == (400, "INVALID_REQUEST")  # a partial refund needs an id
    part = {"amountCents": 4_700, "refundId": "r-1"}
    status, data = await post(client, "/api/coupon/use/o-1/refund", part)
    assert (status, data["reason"], data["refundedCents"]) == (200, "PARTIALLY_REFUNDED", 4_700)
    assert await post(client, "/api/coupon/use/o-1/refund", part) == (200, data)
    status, wrong = await post(client, "/api/coupon/use/o-1/refund",
                               {"amountCents": 1, "refundId": "r-1"})  # fmt: skip
    assert (status, wrong["reason"]) == (409, "REFUND_MISMATCH")
    shares = await orders_pool.fetch(
        "SELECT coupon_id::text, status, refunded_discount_cents FROM coupons ORDER BY 1"
    )
    assert {r["coupon_id"]: r["refunded_discount_cents"] for r in shares} == {
        returned: 1_000,
        kept: 300,
    }  # a tenth of what was paid: a tenth of each discount
    status, data = await post(
        client, "/api/coupon/use/o-1/refund", {"amountCents": 50_000, "refundId": "r-2"}
    )
    assert (status, data["reason"]) == (409, "REFUND_TOO_LARGE")
    status, data = await post(client, "/api/coupon/use/o-1/refund")
    assert (status, data["reason"], data["refundedCents"]) == (200, "REFUNDED", 47_000)
    assert await post(client, "/api/coupon/use/o-1/refund") == (200, data)
    final = {r["coupon_id"]: r["status"] for r in await orders_pool.fetch(
        "SELECT coupon_id::text, status FROM coupons")}  # fmt: skip
    assert final == {returned: "unused", kept: "refunded"}


@pytest.mark.parametrize(
    "body",
    [
        use_body("", ["00000000-0000-0000-0000-000000000000"]),
        use_body("x" * 200, ["00000000-0000-0000-0000-000000000000"]),
        use_body("o-1", ["00000000-0000-0000-0000-000000000000"], amountCents=-1),
        use_body("o-1", ["00000000-0000-0000-0000-000000000000"], amountCents=10**15),
        use_body("o-1", ["00000000-0000-0000-0000-000000000000"], amountCents=59_999),
        use_body("o-1", ["00000000-0000-0000-0000-000000000000"] * 2),
        use_body("o-1", []),
        use_body("o-1", ["not-a-coupon"]),
        {**use_body("o-1", ["00000000-0000-0000-0000-000000000000"]), "extra": 1},
    ],
)
async def test_bad_input_gets_a_clear_reason_and_changes_nothing(client, now, orders_pool, body):
    status, data = await post(client, "/api/coupon/use", body)
    assert status in (400, 422)
    assert data["reason"] == "INVALID_REQUEST"
    assert await orders_pool.fetchval("SELECT count(*) FROM coupon_orders") == 0


async def test_unknown_orders_and_tokens(client, now, orders_pool):
    status, data = await post(client, "/api/coupon/use/nope/confirm")
    assert (status, data["reason"]) == (404, "ORDER_NOT_FOUND")
    response = await client.get("/api/coupons")
    assert response.status == 401


async def test_a_cart_of_two_hundred_lines_is_quoted(client, now):
    items = [{"sku": f"sku-{i:060d}", "category": "c" * 64, "brand": "b" * 64,
              "priceCents": 100, "quantity": 1} for i in range(200)]  # fmt: skip
    cart = {"amountCents": 20_000, "items": items, "channel": "h5"}
    status, data = await post(client, "/api/checkout/quote", cart)
    assert (status, data["best"]["payCents"]) == (200, 20_000)
    response = await client.post("/api/checkout/quote", json=cart)  # no token: the small limit
    assert response.status in (401, 413)


async def test_locks_and_failed_locks_are_capped_per_user(make_client, now, make_campaign, give):
    client = await make_client(failed_lock_user_per_hour=3, lock_user_per_min=100)
    missing = "00000000-0000-0000-0000-000000000000"
    for i in range(3):
        status, data = await post(client, "/api/coupon/use", use_body(f"o-{i}", [missing]))
        assert data["reason"] == "COUPON_NOT_FOUND"
    status, data = await post(client, "/api/coupon/use", use_body("o-9", [missing]))
    assert (status, data["reason"]) == (429, "RATE_LIMITED")
    assert data["retryAfterMs"] > 0
    other = await post(client, "/api/coupon/use", use_body("o-9", [missing]), user="u2")
    assert other[1]["reason"] == "COUPON_NOT_FOUND"  # someone else is not held back
    now.advance(3_600_000)
    coupon = await give(await make_campaign())
    assert (await post(client, "/api/coupon/use", use_body("o-10", [coupon])))[0] == 200


async def test_a_verified_device_coupon_is_quoted_and_locked_only_on_its_device(
    client, now, make_campaign, give, orders_pool
):
    campaign = await make_campaign(kind="free_order", faceValueCents=0, thresholdCents=0,
                                   maxDiscountCents=20_000,
                                   usage={"verifiedDevice": True})  # fmt: skip
    coupon = await give(campaign)  # claimed on dev-1
    for claims in ({}, {"device": "dev-2"}):
        response = await client.post("/api/checkout/quote", json=CART, headers=auth("u1", **claims))
        quoted = await response.json()
        assert quoted["best"]["couponIds"] == []
        [seen] = quoted["coupons"]
        assert (seen["applies"], seen["reason"]) == (False, "DEVICE_NOT_VERIFIED")
        response = await client.post("/api/coupon/use", json=use_body("o-1", [coupon]),
                                     headers=auth("u1", **claims))  # fmt: skip
        refused = await response.json()
        assert (response.status, refused["reason"], refused["code"]) == (
            403,
            "DEVICE_NOT_VERIFIED",
            43,
        )
    assert await orders_pool.fetchval("SELECT count(*) FROM coupon_orders") == 0
    assert await orders_pool.fetchval("SELECT status FROM coupons") == "unused"
    on_its_device = auth("u1", device="dev-1")
    quoted = await (await client.post("/api/checkout/quote", json=CART,
                                      headers=on_its_device)).json()  # fmt: skip
    assert quoted["best"]["couponIds"] == [coupon]
    response = await client.post("/api/coupon/use", json=use_body("o-1", [coupon]),
                                 headers=on_its_device)  # fmt: skip
    locked = await response.json()
    assert (response.status, locked["reason"], locked["discountCents"]) == (200, "LOCKED", 20_000)
