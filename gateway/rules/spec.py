"""The campaign fields of claim rules, as operators write them (issue 10 items 5-9).

These structs are fields of ``CampaignSpec`` (``gateway/campaigns/spec.py``); the rules
the gateway decides before Redis (windows, cities, attribute ranges, "holds A: offer B")
are also published, as one JSON ``Rules`` value, in the campaign's config hash, where
every worker's ``CampaignView`` reads them. Counters (channel quotas, money caps) are
``claim.lua``'s, published as plain config fields.
"""

from __future__ import annotations

import enum
from typing import Annotated

import msgspec

from gateway.identifiers import CampaignId, whole

#: "HH:MM" on a 24-hour clock; "24:00" closes a window at the end of its day.
ClockTime = Annotated[str, msgspec.Meta(pattern=whole(r"([01][0-9]|2[0-3]):[0-5][0-9]|24:00"))]
Weekday = Annotated[int, msgspec.Meta(ge=1, le=7)]  # ISO: 1 Monday ... 7 Sunday
#: A day of the month, 1-31, or -1 for the month's last day (28, 29, 30 or 31).
MonthDay = Annotated[int, msgspec.Meta(ge=-1, le=31)]
MAX_WINDOWS = 24
MAX_ATTRIBUTES = 16
MAX_CITIES = 1000


def minutes(text: str) -> int:
    """Minutes after midnight of an ``HH:MM`` time."""
    hours, mins = text.split(":")
    return int(hours) * 60 + int(mins)


class DailyWindow(msgspec.Struct, rename="camel", forbid_unknown_fields=True, frozen=True):
    """Claims are open from ``opens`` to ``closes`` (local time) on every qualifying day.

    A window that closes at or before it opens crosses midnight: ``22:00``-``02:00`` opens
    on a qualifying day and closes on the next (which need not qualify itself).
    """

    opens: ClockTime
    closes: ClockTime


class ClaimWindows(msgspec.Struct, rename="camel", forbid_unknown_fields=True, frozen=True):
    """When, within ``startsAt``-``endsAt``, claims are open (支持每周X生效、每月X日生效).

    A day qualifies when it is one of ``weekdays`` (if any are given) and one of
    ``monthDays`` (if any); on a qualifying day claims are open in each of ``daily``
    (all day if none). Days and times are the campaign's time zone's.
    """

    daily: Annotated[list[DailyWindow], msgspec.Meta(max_length=MAX_WINDOWS)] = msgspec.field(
        default_factory=list
    )
    weekdays: Annotated[list[Weekday], msgspec.Meta(max_length=7)] = msgspec.field(
        default_factory=list
    )
    month_days: Annotated[list[MonthDay], msgspec.Meta(max_length=32)] = msgspec.field(
        default_factory=list
    )


class CostSource(enum.StrEnum):
    """Who pays for a coupon's discount (成本来源)."""

    PLATFORM = "platform"
    MERCHANT = "merchant"
    SHARED = "shared"  # the platform pays ``platformPercent``, the merchant the rest


class Cost(msgspec.Struct, rename="camel", forbid_unknown_fields=True, frozen=True):
    """Who bears a coupon's cost; the record (and finance) reads it, no claim rule does."""

    source: CostSource = CostSource.PLATFORM
    platform_percent: Annotated[int, msgspec.Meta(ge=0, le=100)] | None = None

    def platform_share_cents(self, cents: int) -> int:
        """The platform's part of ``cents`` (rounded down: the merchant bears the odd cent)."""
        if self.source is CostSource.PLATFORM:
            return cents
        if self.source is CostSource.MERCHANT:
            return 0
        return cents * (self.platform_percent or 0) // 100


class Range(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """Inclusive bounds on a numeric attribute; a missing bound does not limit."""

    min: float | None = None
    max: float | None = None

    def holds(self, value: float) -> bool:
        """Whether ``value`` lies within the bounds."""
        return (self.min is None or value >= self.min) and (self.max is None or value <= self.max)


class AttributeSource(enum.StrEnum):
    """Where a user's numeric attributes come from."""

    TOKEN = "token"  # the token's ``attrs`` claim (signed by the login service)
    PROFILE = "profile"  # the user-profile service (FLASHCLAIM_PROFILE_URL)


class CitySource(enum.StrEnum):
    """Where a claim's city comes from: the token (trusted) or the request (not)."""

    TOKEN = "token"
    REQUEST = "request"


class Offer(msgspec.Struct, rename="camel", forbid_unknown_fields=True, frozen=True):
    """Whoever holds a coupon of ``holds`` is offered ``offer`` instead of this one."""

    holds: CampaignId
    offer: CampaignId


class Rules(msgspec.Struct, rename="camel", omit_defaults=True, frozen=True):
    """The rules a worker decides before Redis, as published in the config hash."""

    windows: ClaimWindows | None = None
    cities: list[str] = msgspec.field(default_factory=list)
    city_source: CitySource = CitySource.TOKEN
    ranges: dict[str, Range] = msgspec.field(default_factory=dict)
    attributes_from: AttributeSource = AttributeSource.TOKEN
    offers: list[Offer] = msgspec.field(default_factory=list)

    @property
    def empty(self) -> bool:
        """Whether no rule is set (the claim path then skips the gate)."""
        return self == Rules()


_rules_decoder = msgspec.json.Decoder(Rules)


def decode_rules(text: str | None) -> Rules | None:
    """The published rules (None when there are none)."""
    if not text:
        return None
    return _rules_decoder.decode(text)


def window_violations(windows: ClaimWindows) -> list[tuple[str, str]]:
    """What is wrong with ``windows`` that its types cannot say."""
    found = []
    for i, window in enumerate(windows.daily):
        if window.opens == window.closes:
            found.append((f"windows.daily[{i}]", "opens and closes at the same time"))
    if len(set(windows.weekdays)) != len(windows.weekdays):
        found.append(("windows.weekdays", "lists a day twice"))
    if 0 in windows.month_days:
        found.append(("windows.monthDays", "days are 1-31, or -1 for the last day"))
    if len(set(windows.month_days)) != len(windows.month_days):
        found.append(("windows.monthDays", "lists a day twice"))
    return found
