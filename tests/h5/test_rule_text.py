"""The page's minimal rule text: value, threshold and validity, in Chinese and English."""

from __future__ import annotations

import msgspec
import pytest

from gateway.campaigns.spec import Campaign
from gateway.h5.rule_text import minimal_rule_text, yuan
from tests.helpers import spec


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
    text = minimal_rule_text(campaign(**fields))
    assert (text.zh, text.en) == (zh, en)


def test_fixed_dates_are_the_campaigns_calendar_days():
    """2026-11-20T16:30Z is already the 21st in Shanghai."""
    validity = {
        "mode": "fixed",
        "validFrom": "2026-11-10T16:00:00Z",
        "validUntil": "2026-11-20T16:30:00Z",
    }
    assert "2026-11-11至2026-11-21" in minimal_rule_text(campaign(validity=validity)).zh


@pytest.mark.parametrize(
    ("cents", "text"), [(0, "¥0"), (5, "¥0.05"), (1050, "¥10.50"), (10_000, "¥100")]
)
def test_yuan_from_integer_cents(cents, text):
    assert yuan(cents) == text
