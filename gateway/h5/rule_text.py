"""A campaign's rule text for the H5 page: value, threshold, validity; Chinese and English.

Deliberately minimal: the full generator (usage rules, scopes, stacking) is
``gateway/campaigns/rule_text.py``, written beside the wallet; at merge it replaces
``minimal_rule_text`` in ``gateway/h5/public.py`` and this module goes. The page renders
whatever ``{"zh", "en"}`` it is given.
"""

from __future__ import annotations

from datetime import datetime

import msgspec

from gateway.campaigns.spec import (
    Campaign,
    DaysAfterClaim,
    EndOfClaimDay,
    FixedWindow,
    Kind,
)


class RuleText(msgspec.Struct, frozen=True):
    """The rules in the page's two languages."""

    zh: str
    en: str


def minimal_rule_text(campaign: Campaign) -> RuleText:
    """What the coupon is worth, when it applies and how long it lasts."""
    zh_value, en_value = _value(campaign)
    zh_valid, en_valid = _validity(campaign)
    return RuleText(zh=f"{zh_value}，{zh_valid}。", en=f"{en_value}; {en_valid}.")


def yuan(cents: int) -> str:
    """``¥100`` or ``¥99.50``: integer cents as the page shows them, no float involved."""
    whole, part = divmod(cents, 100)
    return f"¥{whole}" if part == 0 else f"¥{whole}.{part:02d}"


def _value(c: Campaign) -> tuple[str, str]:
    face, threshold, cap = yuan(c.face_value_cents), yuan(c.threshold_cents), yuan(c.value_cents)
    if c.kind is Kind.CASH_OFF:
        return f"满{threshold}减{face}", f"{face} off orders of {threshold} or more"
    if c.kind is Kind.NO_THRESHOLD:
        return f"无门槛减{face}", f"{face} off any order"
    if c.kind is Kind.PERCENT_OFF:
        tenths = 100 - c.percent_off  # 20 % off is 8折, 15 % off is 8.5折
        fold = f"{tenths // 10}" if tenths % 10 == 0 else f"{tenths // 10}.{tenths % 10}"
        return f"{fold}折，最多减{cap}", f"{c.percent_off}% off, at most {cap}"
    if c.kind is Kind.FREE_ORDER:
        return f"免单，最高{cap}", f"a free order, up to {cap}"
    return f"{face}券，需{c.points_cost}积分", f"{face} off for {c.points_cost} points"


def _validity(c: Campaign) -> tuple[str, str]:
    validity = c.validity
    if isinstance(validity, FixedWindow):
        start, end = _date(validity.valid_from, c), _date(validity.valid_until, c)
        return f"有效期{start}至{end}", f"valid from {start} to {end}"
    if isinstance(validity, DaysAfterClaim):
        days = validity.days
        return f"领取后{days}天内有效", f"valid for {days} day{'s' * (days != 1)} after claiming"
    assert isinstance(validity, EndOfClaimDay)
    return "领取当日有效", "valid until the end of the day you claim it"


def _date(moment: datetime, c: Campaign) -> str:
    return moment.astimezone(c.zone).strftime("%Y-%m-%d")
