"""What the claim rules say to people, in Chinese and English (the rule text's parts).

``claim_rule_parts`` gives one ``(zh, en)`` pair per rule a claimant meets: when claims
are open (windows), where (cities), how much one person may take (money cap). Quotas,
budgets and audience ranges are the operator's business and say nothing. The campaign
rule text generator (``gateway/campaigns/rule_text.py``, the redemption work) joins these
parts after the coupon's own; until it lands, this module stands alone (tested).
"""

from __future__ import annotations

from gateway.campaigns.spec import CampaignSpec
from gateway.rules.spec import ClaimWindows, minutes

_WEEKDAYS_ZH = "一二三四五六日"
_WEEKDAYS_EN = ["Mondays", "Tuesdays", "Wednesdays", "Thursdays", "Fridays", "Saturdays",
                "Sundays"]  # fmt: skip


def claim_rule_parts(campaign: CampaignSpec) -> list[tuple[str, str]]:
    """The claim rules as ``(zh, en)`` phrases, in the order a claimant meets them."""
    parts = []
    if campaign.windows is not None:
        parts.append(_windows(campaign.windows))
    if campaign.cities:
        names = "、".join(campaign.cities)
        parts.append((f"仅限{names}领取", f"claimable in {', '.join(campaign.cities)} only"))
    if campaign.per_user_money_cap_cents:
        cap = _yuan(campaign.per_user_money_cap_cents)
        parts.append((f"每人累计最多领取{cap}", f"at most {cap} in total per person"))
    return parts


def _windows(windows: ClaimWindows) -> tuple[str, str]:
    days_zh, days_en = "每天", "daily"
    if windows.weekdays:
        days_zh = "每周" + "、".join(_WEEKDAYS_ZH[d - 1] for d in sorted(windows.weekdays))
        days_en = "on " + ", ".join(_WEEKDAYS_EN[d - 1] for d in sorted(windows.weekdays))
    if windows.month_days:
        dates = sorted(windows.month_days, key=lambda d: (d < 0, d))
        zh = "、".join("最后一天" if d < 0 else f"{d}日" for d in dates)
        en = ", ".join("the last day" if d < 0 else _ordinal(d) for d in dates)
        days_zh = f"{days_zh}及每月{zh}" if windows.weekdays else f"每月{zh}"
        days_en = f"{days_en} and {en} of each month" if windows.weekdays else f"{en} of each month"
    if not windows.daily:
        return f"{days_zh}可领", f"claimable {days_en}"
    zh_times, en_times = [], []
    for window in windows.daily:
        overnight = minutes(window.closes) <= minutes(window.opens)
        zh_times.append(f"{window.opens}-{'次日' if overnight else ''}{window.closes}")
        en_times.append(f"{window.opens}-{window.closes}{' the next day' if overnight else ''}")
    return (
        f"{days_zh}{'、'.join(zh_times)}可领",
        f"claimable {days_en}, {', '.join(en_times)}",
    )


def _ordinal(day: int) -> str:
    suffix = "th" if 10 <= day % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(day % 10, "th")
    return f"the {day}{suffix}"


def _yuan(cents: int) -> str:
    whole, part = divmod(cents, 100)
    return f"¥{whole}" if part == 0 else f"¥{whole}.{part:02d}"
