"""The claim-rule fields of a campaign spec, checked field by field."""

from __future__ import annotations

import pytest

from gateway.campaigns.spec import Campaign, InvalidSpec, decode_spec, redis_config, rules_of
from gateway.rules.spec import Cost, CostSource, decode_rules
from tests.helpers import spec


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"windows": {"daily": [{"opens": "10:00", "closes": "10:00"}]}}, "windows.daily[0]"),
        ({"windows": {"daily": [{"opens": "25:00", "closes": "10:00"}]}}, "windows.daily[0].opens"),
        ({"windows": {"weekdays": [8]}}, "windows.weekdays[0]"),
        ({"windows": {"weekdays": [1, 1]}}, "windows.weekdays"),
        ({"windows": {"monthDays": [0]}}, "windows.monthDays"),
        ({"windows": {"monthDays": [32]}}, "windows.monthDays[0]"),
        ({"channelQuotas": {"code": 101}}, "channelQuotas.code"),
        ({"channels": ["seckill"], "channelQuotas": {"code": 5}}, "channelQuotas.code"),
        ({"channelQuotas": {"Code!": 5}}, "channelQuotas"),
        ({"perUserMoneyCapCents": 9_999}, "perUserMoneyCapCents"),
        ({"dailyBudgetCents": 9_999}, "dailyBudgetCents"),
        ({"budgetCents": 20_000, "dailyBudgetCents": 30_000}, "dailyBudgetCents"),
        ({"cost": {"source": "shared"}}, "cost.platformPercent"),
        ({"cost": {"source": "shared", "platformPercent": 100}}, "cost.platformPercent"),
        ({"cost": {"source": "merchant", "platformPercent": 50}}, "cost.platformPercent"),
        ({"cost": {"source": "bank"}}, "cost.source"),
        ({"cities": ["Shanghai"]}, "cities[0]"),
        ({"citySource": "gps"}, "citySource"),
        ({"audience": {"ranges": {"orderCount": {}}}}, "audience.ranges.orderCount"),
        (
            {"audience": {"ranges": {"orderCount": {"min": 5, "max": 1}}}},
            "audience.ranges.orderCount",
        ),
        ({"audience": {"ranges": {"Order Count": {"min": 1}}}}, "audience.ranges"),
        ({"audience": {"attributesFrom": "crystal-ball"}}, "audience.attributesFrom"),
        ({"id": "b", "audience": {"offers": [{"holds": "a", "offer": "b"}]}}, "audience.offers[0]"),
    ],
)
def test_bad_rule_fields_are_refused_by_name(changes, field):
    with pytest.raises(InvalidSpec) as refused:
        decode_spec(spec(**changes))
    assert field in {error.field for error in refused.value.errors}, refused.value.errors


def test_rules_reach_the_config_hash():
    campaign = decode_spec(
        spec(
            windows={"daily": [{"opens": "22:00", "closes": "02:00"}], "weekdays": [5]},
            channelQuotas={"code": 30, "seckill": 50},
            perUserMoneyCapCents=20_000,
            dailyBudgetCents=50_000,
            cities=["shanghai", "310000"],
            audience={"ranges": {"churnProbability": {"min": 0.5}}, "attributesFrom": "profile"},
        )
    )
    config = redis_config(Campaign(**{f: getattr(campaign, f) for f in campaign.__struct_fields__}))
    assert config["quotas"] == ",code=30,seckill=50,"
    assert (config["ucap"], config["dbudget"]) == (20_000, 50_000)
    rules = decode_rules(str(config["rules"]))
    assert rules == rules_of(campaign)
    assert rules is not None
    assert rules.cities == ["shanghai", "310000"]


def test_a_campaign_without_rules_publishes_none():
    campaign = decode_spec(spec())
    config = redis_config(Campaign(**{f: getattr(campaign, f) for f in campaign.__struct_fields__}))
    assert (config["rules"], config["quotas"], config["ucap"], config["dbudget"]) == ("", "", 0, 0)
    assert decode_rules(str(config["rules"])) is None


def test_cost_shares_split_in_whole_cents():
    assert Cost().platform_share_cents(999) == 999
    assert Cost(CostSource.MERCHANT).platform_share_cents(999) == 0
    assert Cost(CostSource.SHARED, 30).platform_share_cents(999) == 299  # merchant bears 700
