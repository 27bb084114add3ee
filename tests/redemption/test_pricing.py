"""The rules of a coupon on a cart and the best combination: pure, exact to the cent."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.campaigns.spec import Campaign
from gateway.reasons import Reason
from gateway.redemption.cart import Cart, cart_problem
from gateway.redemption.pricing import Held, judge, price, split
from gateway.redemption.quote import quote
from tests.helpers import DAY_MS, T0_MS, spec
from tests.redemption.conftest import CART

NOW = T0_MS + 3_600_000  # 01:00 on Double-11, Shanghai


def campaign(**overrides: Any) -> Campaign:
    return msgspec.convert(spec(**overrides), type=Campaign)


def held(coupon_id: str, expires: int = T0_MS + DAY_MS, status: str = "unused",
         **overrides: Any) -> Held:  # fmt: skip
    return Held(coupon_id, campaign(**overrides), status, T0_MS, expires)


def cart(**overrides: Any) -> Cart:
    return msgspec.convert({**CART, **overrides}, Cart)


def test_a_cash_off_coupon_takes_its_face_value_split_over_the_items():
    priced = price([judge(held("a"), cart(), NOW, new_user=False)], cart())
    assert priced.discounts == {"a": 10_000}
    assert priced.allocation["a"] == [6_667, 1_667, 1_666]  # 40k:10k:10k of 10,000
    assert sum(priced.allocation["a"]) == 10_000


@pytest.mark.parametrize(
    ("overrides", "reason", "words"),
    [
        ({"usage": {"channels": ["wechat"]}}, Reason.NOT_APPLICABLE, "app"),
        ({"usage": {"cities": ["beijing"]}}, Reason.NOT_APPLICABLE, "shanghai"),
        ({"usage": {"hours": [{"start": "07:00", "end": "09:00"}]}}, Reason.NOT_APPLICABLE,
         "hour"),
        ({"usage": {"newUsersOnly": True}}, Reason.NOT_APPLICABLE, "new users"),
        ({"usage": {"scope": {"categories": ["food"]}}}, Reason.NOT_APPLICABLE, "scope"),
        ({"usage": {"scope": {"categories": ["books"]}}}, Reason.NOT_APPLICABLE, "threshold"),
    ],
)  # fmt: skip
def test_each_usage_rule_refuses_with_its_reason(overrides, reason, words):
    verdict = judge(held("a", **overrides), cart(), NOW, new_user=False)
    assert verdict.refusal is reason
    assert words in verdict.message


def test_a_verified_device_coupon_needs_the_device_it_was_claimed_on():
    coupon = Held("a", campaign(usage={"verifiedDevice": True}), "unused", T0_MS, T0_MS + DAY_MS,
                  device_id="dev-1")  # fmt: skip
    for device in ("", "dev-2"):
        verdict = judge(coupon, cart(), NOW, new_user=False, device=device)
        assert verdict.refusal is Reason.DEVICE_NOT_VERIFIED
        assert "verified device" in verdict.message
        assert quote([coupon], cart(), NOW, new_user=False, device=device).best.coupons == []
    assert judge(coupon, cart(), NOW, new_user=False, device="dev-1").refusal is None
    plain = held("b")  # the rule off: any device, or none
    assert judge(plain, cart(), NOW, new_user=False, device="dev-2").refusal is None


def test_status_and_expiry_refuse():
    assert judge(held("a", status="used"), cart(), NOW, new_user=False).refusal is (
        Reason.COUPON_USED
    )
    assert judge(held("a", status="locked"), cart(), NOW, new_user=False).refusal is (
        Reason.COUPON_LOCKED
    )
    assert judge(held("a", expires=NOW), cart(), NOW, new_user=False).refusal is (
        Reason.COUPON_EXPIRED
    )


def test_scope_narrows_the_base_and_the_allocation():
    coupon = held("a", kind="percent_off", percentOff=10, maxDiscountCents=100_000,
                  thresholdCents=0, usage={"scope": {"categories": ["digital"]}})  # fmt: skip
    priced = price([judge(coupon, cart(), NOW, new_user=False)], cart())
    assert priced.discounts == {"a": 5_000}  # 10 % of 50,000 of digital items
    assert priced.allocation["a"] == [4_000, 1_000, 0]


def test_the_best_combination_stacks_one_per_tier_and_ties_go_to_the_earlier_expiry():
    late = held("late", expires=T0_MS + 5 * DAY_MS)
    early = held("early", expires=T0_MS + 2 * DAY_MS)  # same value, expires first
    shop = held("shop", usage={"tier": "shop"}, faceValueCents=2_000, thresholdCents=30_000)
    result = quote([late, early, shop], cart(), NOW, new_user=False)
    assert [c.coupon_id for c in result.best.coupons] == ["shop", "early"]
    assert result.best.discount_cents == 12_000


def test_an_exclusive_coupon_wins_only_when_it_beats_the_stack():
    big = held("big", usage={"stacking": "exclusive"}, faceValueCents=15_000)
    small = held("small", faceValueCents=5_000)
    shop = held("shop", usage={"tier": "shop"}, faceValueCents=5_000)
    assert [c.coupon_id for c in quote([big, small, shop], cart(), NOW,
                                       new_user=False).best.coupons] == ["big"]  # fmt: skip
    bigger_stack = held("shop2", usage={"tier": "category"}, faceValueCents=20_000,
                        thresholdCents=50_000)  # fmt: skip
    best = quote([big, small, shop, bigger_stack], cart(), NOW, new_user=False).best
    assert best.discount_cents == 30_000
    assert "big" not in [c.coupon_id for c in best.coupons]


def test_a_discount_never_exceeds_what_is_left_of_its_items():
    free = held("free", kind="free_order", maxDiscountCents=100_000, thresholdCents=0)
    cash = held("cash", usage={"tier": "shop"})
    best = quote([free, cash], cart(), NOW, new_user=False).best
    assert best.discount_cents == 60_000  # the whole cart, never more
    lines = [sum(shares[i] for shares in best.allocation.values()) for i in range(3)]
    assert lines == [40_000, 10_000, 10_000]


def test_items_must_add_up():
    assert cart_problem(cart(amountCents=59_999)) is not None
    assert cart_problem(cart()) is None


@given(st.integers(0, 10**9), st.lists(st.integers(0, 10**7), min_size=1, max_size=20))
def test_split_is_exact_and_never_exceeds_a_weight(cents, weights):
    cents = min(cents, sum(weights))
    shares = split(cents, weights)
    assert sum(shares) == (cents if sum(weights) else 0)
    assert all(0 <= s <= w for s, w in zip(shares, weights, strict=True))


def test_the_quote_is_deterministic():
    tiers = ["shop", "category", "platform"]
    coupons = [
        held(f"c{i}", expires=T0_MS + (i % 3 + 1) * DAY_MS, faceValueCents=1000 * (i % 4 + 1),
             thresholdCents=20_000, usage={"tier": tiers[i % 3]})
        for i in range(12)
    ]  # fmt: skip
    first = quote(coupons, cart(), NOW, new_user=False).best
    again = quote(list(reversed(coupons)), cart(), NOW, new_user=False).best
    assert (first.discounts, first.allocation) == (again.discounts, again.allocation)
