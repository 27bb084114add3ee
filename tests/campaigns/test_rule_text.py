"""A campaign's rule text: value, usage rules and validity, in Chinese and English."""

from __future__ import annotations

from datetime import datetime

import msgspec
import pytest

from gateway.campaigns.rule_text import rule_text, yuan
from gateway.campaigns.spec import Campaign
from tests.helpers import SHANGHAI, spec


def campaign(**overrides) -> Campaign:
    return msgspec.convert(spec(**overrides), type=Campaign)


@pytest.mark.parametrize(
    ("fields", "zh", "en"),
    [
        (
            {},
            "满¥500减¥100，领取后7天内有效。",
            "¥100 off orders of ¥500 or more; valid for 7 days after claiming.",
        ),
        (
            {"kind": "no_threshold", "faceValueCents": 1050, "thresholdCents": 0},
            "无门槛减¥10.50，领取后7天内有效。",
            "¥10.50 off any order; valid for 7 days after claiming.",
        ),
        (
            {
                "kind": "percent_off",
                "percentOff": 15,
                "maxDiscountCents": 5000,
                "validity": {"mode": "end_of_claim_day"},
            },
            "8.5折，最多减¥50，领取当日有效。",
            "15% off, at most ¥50; valid until the end of the day you claim it.",
        ),
        (
            {
                "kind": "percent_off",
                "percentOff": 20,
                "maxDiscountCents": 5000,
                "validity": {"mode": "days_after_claim", "days": 1},
            },
            "8折，最多减¥50，领取后1天内有效。",
            "20% off, at most ¥50; valid for 1 day after claiming.",
        ),
        (
            {
                "kind": "free_order",
                "maxDiscountCents": 3000,
                "validity": {
                    "mode": "fixed",
                    "validFrom": "2026-11-11T00:00:00+08:00",
                    "validUntil": "2026-11-20T23:59:59+08:00",
                },
            },
            "免单，最高¥30，有效期2026-11-11至2026-11-20。",
            "a free order, up to ¥30; valid from 2026-11-11 to 2026-11-20.",
        ),
        (
            {
                "kind": "points_exchange",
                "faceValueCents": 500,
                "thresholdCents": 0,
                "pointsCost": 200,
            },
            "¥5券，需200积分，领取后7天内有效。",
            "¥5 off for 200 points; valid for 7 days after claiming.",
        ),
    ],
)
def test_rule_text_says_value_threshold_and_validity(fields, zh, en):
    text = rule_text(campaign(**fields))
    assert (text.zh, text.en) == (zh, en)


def test_fixed_dates_are_the_campaigns_calendar_days():
    """2026-11-20T16:30Z is already the 21st in Shanghai."""
    validity = {
        "mode": "fixed",
        "validFrom": "2026-11-10T16:00:00Z",
        "validUntil": "2026-11-20T16:30:00Z",
    }
    assert "2026-11-11至2026-11-21" in rule_text(campaign(validity=validity)).zh


@pytest.mark.parametrize(
    ("cents", "text"), [(0, "¥0"), (5, "¥0.05"), (1050, "¥10.50"), (10_000, "¥100")]
)
def test_yuan_from_integer_cents(cents, text):
    assert yuan(cents) == text


def test_usage_rules_are_spelled_out_and_a_coupon_shows_its_own_expiry():
    """The documents' example: 满200减30 · 仅限数码 · 不与其他券同享 · 11月18日 24:00 前有效."""
    usage = {"scope": {"categories": ["digital"]}, "stacking": "exclusive"}
    c = campaign(faceValueCents=3000, thresholdCents=20000, usage=usage)
    midnight = int(datetime(2026, 11, 19, tzinfo=SHANGHAI).timestamp() * 1000)
    text = rule_text(c, expires_at_ms=midnight)
    assert text.zh == "满¥200减¥30，仅限digital，不与其他券同享，11月18日24:00前有效。"
    assert text.en == (
        "¥30 off orders of ¥200 or more; only on digital;"
        " not combinable with other coupons; valid until Nov 18, 24:00."
    )


def test_every_usage_rule_has_words():
    usage = {
        "scope": {"brands": ["acme"], "excludeSkus": ["sku-1"]},
        "channels": ["app", "mini_program"],
        "cities": ["shanghai"],
        "hours": [{"start": "07:00", "end": "09:30"}],
        "newUsersOnly": True,
        "verifiedDevice": True,
        "tier": "shop",
        "refund": "keep",
    }
    text = rule_text(campaign(usage=usage))
    for words in (
        "仅限acme",
        "sku-1除外",
        "限App、小程序下单使用",
        "限shanghai使用",
        "每日07:00-09:30可用",
        "仅限新用户使用",
        "仅限领券的认证设备使用",
        "店铺券，每单限用1张",
        "退款不退券",
    ):
        assert words in text.zh
    for words in (
        "only on acme",
        "not on sku-1",
        "the mini program",
        "in shanghai only",
        "usable 07:00-09:30 daily",
        "new users only",
        "only on the verified device it was claimed on",
        "a shop coupon",
        "refund",
    ):
        assert words in text.en
