"""A coupon's rules as people read them, in Chinese and English, generated from its settings.

The campaign's page says how to claim it too (windows, cities, the money cap: the parts
of ``gateway/rules/text.py``); a claimed coupon in the wallet, only how to use it.

The documents ask that every option chosen produce its explanation (系统都需要根据所选项生成
相应的文案释义): "满¥200减¥30，仅限数码，不与其他券同享，11月18日24:00前有效。". One
generator serves the H5 claim page (a campaign: "valid for 7 days after claiming") and
the wallet (a claimed coupon: its own expiry). A rule that restricts nothing says
nothing, so a plain campaign reads as briefly as before.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import msgspec

from gateway.campaigns.spec import Campaign, DaysAfterClaim, EndOfClaimDay, FixedWindow, Kind
from gateway.campaigns.usage import RefundPolicy, Stacking, Tier, UsageRules
from gateway.rules.text import claim_rule_parts

_CHANNELS_ZH = {"app": "App", "wechat": "微信", "mini_program": "小程序", "h5": "H5"}
_CHANNELS_EN = {"app": "the app", "wechat": "WeChat", "mini_program": "the mini program",
                "h5": "the web page"}  # fmt: skip
_TIER_ZH = {Tier.SHOP: "店铺券", Tier.CATEGORY: "品类券", Tier.PLATFORM: "平台券"}


class RuleText(msgspec.Struct, frozen=True):
    """The rules in two languages."""

    zh: str
    en: str


def rule_text(campaign: Campaign, expires_at_ms: int | None = None) -> RuleText:
    """The campaign's rules; with ``expires_at_ms``, those of one coupon expiring then."""
    parts = [_value(campaign)]
    if expires_at_ms is None:  # the campaign's page: how to claim it, too
        parts += claim_rule_parts(campaign)
    parts += _usage(campaign.usage)
    parts.append(_validity(campaign) if expires_at_ms is None else _until(campaign, expires_at_ms))
    zh = "，".join(zh for zh, _ in parts)
    en = "; ".join(en for _, en in parts)
    return RuleText(zh=f"{zh}。", en=f"{en}.")


def yuan(cents: int) -> str:
    """``¥100`` or ``¥99.50``: integer cents as people read them, no float involved."""
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


def _usage(usage: UsageRules) -> list[tuple[str, str]]:
    parts: list[tuple[str, str]] = []
    scope = usage.scope
    only = [*scope.categories, *scope.brands, *scope.skus]
    if only:
        parts.append((f"仅限{'、'.join(only)}", f"only on {', '.join(only)}"))
    excluded = [*scope.exclude_categories, *scope.exclude_brands, *scope.exclude_skus]
    if excluded:
        parts.append((f"{'、'.join(excluded)}除外", f"not on {', '.join(excluded)}"))
    if usage.channels:
        zh = "、".join(_CHANNELS_ZH[c] for c in usage.channels)
        en = ", ".join(_CHANNELS_EN[c] for c in usage.channels)
        parts.append((f"限{zh}下单使用", f"on orders placed in {en}"))
    if usage.cities:
        parts.append((f"限{'、'.join(usage.cities)}使用", f"in {', '.join(usage.cities)} only"))
    if usage.hours:
        spans = [f"{w.start}-{w.end}" for w in usage.hours]
        parts.append((f"每日{'、'.join(spans)}可用", f"usable {', '.join(spans)} daily"))
    if usage.new_users_only:
        parts.append(("仅限新用户使用", "for new users only"))
    if usage.verified_device:
        parts.append(("仅限领券的认证设备使用", "only on the verified device it was claimed on"))
    if usage.stacking is Stacking.EXCLUSIVE:
        parts.append(("不与其他券同享", "not combinable with other coupons"))
    elif usage.tier is not Tier.PLATFORM or usage.per_tier > 1:
        zh = f"{_TIER_ZH[usage.tier]}，每单限用{usage.per_tier}张"
        parts.append((zh, f"a {usage.tier} coupon, {usage.per_tier} per order at most"))
    if usage.refund is RefundPolicy.KEEP:
        parts.append(("退款不退券", "not returned on a refund"))
    return parts


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


def _until(c: Campaign, expires_at_ms: int) -> tuple[str, str]:
    """``11月18日24:00前有效``: midnight is written as the end of the day before."""
    local = datetime.fromtimestamp(expires_at_ms / 1000, c.zone)
    hhmm = local.strftime("%H:%M")
    if hhmm == "00:00":
        local, hhmm = local - timedelta(minutes=1), "24:00"
    zh = f"{local.month}月{local.day}日{hhmm}前有效"
    return zh, f"valid until {local.strftime('%b')} {local.day}, {hhmm}"


def _date(moment: datetime, c: Campaign) -> str:
    return moment.astimezone(c.zone).strftime("%Y-%m-%d")
