"""Usage rules on the campaign spec: validated field by field, defaults restrict nothing."""

from __future__ import annotations

import pytest

from gateway.campaigns.spec import InvalidSpec, decode_spec
from gateway.campaigns.usage import RefundPolicy, Scope, Stacking, Tier
from tests.helpers import spec


def test_a_spec_without_usage_restricts_nothing():
    usage = decode_spec(spec()).usage
    assert not usage.scope.narrowed
    assert not usage.channels
    assert not usage.hours
    assert (usage.stacking, usage.tier, usage.per_tier) == (Stacking.STACKABLE, Tier.PLATFORM, 1)
    assert usage.refund is RefundPolicy.RETURN_IF_VALID


@pytest.mark.parametrize(
    ("usage", "field"),
    [
        ({"scope": {"categories": ["a"], "excludeCategories": ["a"]}}, "usage.scope.categories"),
        ({"scope": {"skus": ["x", "x"]}}, "usage.scope.skus"),
        ({"channels": ["app", "app"]}, "usage.channels"),
        ({"hours": [{"start": "09:00", "end": "07:00"}]}, "usage.hours[0].end"),
        ({"hours": [{"start": "25:00", "end": "26:00"}]}, "usage.hours[0].start"),
        ({"hours": [{"start": "24:00", "end": "24:00"}]}, "usage.hours[0].start"),
        (
            {"hours": [{"start": "07:00", "end": "09:00"}, {"start": "08:00", "end": "10:00"}]},
            "usage.hours",
        ),
        ({"stacking": "exclusive", "perTier": 2}, "usage.perTier"),
        ({"channels": ["fax"]}, "usage.channels[0]"),
        ({"tier": "galaxy"}, "usage.tier"),
        ({"perTier": 0}, "usage.perTier"),
        ({"verifiedDevice": "yes"}, "usage.verifiedDevice"),
        ({"scope": {"brands": ["bad brand"]}}, "usage.scope.brands[0]"),
        ({"surprise": 1}, "usage"),
    ],
)
def test_each_bad_usage_field_is_named(usage, field):
    with pytest.raises(InvalidSpec) as refused:
        decode_spec(spec(usage=usage))
    assert field in [e.field for e in refused.value.errors], refused.value.errors


def test_two_problems_are_both_reported():
    usage = {"scope": {"brands": ["b"], "excludeBrands": ["b"]}, "stacking": "exclusive",
             "perTier": 3}  # fmt: skip
    with pytest.raises(InvalidSpec) as refused:
        decode_spec(spec(usage=usage))
    assert {e.field for e in refused.value.errors} == {"usage.scope.brands", "usage.perTier"}


def test_scope_exclusions_win():
    scope = Scope(categories=["digital"], exclude_brands=["acme"])
    assert scope.covers("s1", "digital", "other")
    assert not scope.covers("s1", "digital", "acme")
    assert not scope.covers("s1", "food", "other")


def test_a_window_may_end_at_midnight():
    usage = decode_spec(spec(usage={"hours": [{"start": "18:00", "end": "24:00"}]})).usage
    assert usage.hours[0].minutes() == (1080, 1440)
