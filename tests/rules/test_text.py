"""The claim rules' phrases for the rule text."""

from __future__ import annotations

from gateway.campaigns.spec import decode_spec
from gateway.rules.text import claim_rule_parts
from tests.helpers import spec


def test_a_plain_campaign_says_nothing_more():
    assert claim_rule_parts(decode_spec(spec())) == []


def test_windows_cities_and_the_money_cap_are_said():
    campaign = decode_spec(
        spec(
            windows={"daily": [{"opens": "22:00", "closes": "02:00"}], "weekdays": [5, 6]},
            cities=["shanghai"],
            perUserMoneyCapCents=25_050,
        )
    )
    assert claim_rule_parts(campaign) == [
        (
            "每周五、六22:00-次日02:00可领",
            "claimable on Fridays, Saturdays, 22:00-02:00 the next day",
        ),
        ("仅限shanghai领取", "claimable in shanghai only"),
        ("每人累计最多领取¥250.50", "at most ¥250.50 in total per person"),
    ]


def test_days_of_the_month():
    campaign = decode_spec(spec(windows={"monthDays": [-1, 1, 22]}))
    assert claim_rule_parts(campaign) == [
        ("每月1日、22日、最后一天可领", "claimable the 1st, the 22nd, the last day of each month")
    ]
