"""The ``usage`` field of a campaign spec: where, when and with what a coupon may be used.

Claim rules (stock, limits, audience) decide who gets a coupon; these decide whether a
coupon applies to one checkout: which items (category, brand, SKU, included and
excluded), which channels and cities, which hours of the day in the campaign's time zone
(the documents' 早高峰 / 晚高峰 limits), new users only at use time, how it stacks with
other coupons (exclusive, or at most ``perTier`` per tier: Taobao's 店铺券 / 品类券 /
平台券), and what a full refund does to it. Every field has a default that restricts
nothing, so campaigns written before these rules existed keep their meaning.
"""

from __future__ import annotations

import enum
import itertools
import re
from typing import Annotated

import msgspec

from gateway.identifiers import Label

MAX_SCOPE_ITEMS = 500
_HHMM = re.compile(r"^([01][0-9]|2[0-3]):[0-5][0-9]$|^24:00$")

#: A category, brand or SKU as the shop's catalogue names it.
CatalogueId = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}(?!\n)$")]
#: A city code as the shop names it (``shanghai``, ``310100``).
City = Label
ScopeList = Annotated[list[CatalogueId], msgspec.Meta(max_length=MAX_SCOPE_ITEMS)]
HourMinute = Annotated[str, msgspec.Meta(pattern=r"^[0-9]{2}:[0-9]{2}(?!\n)$")]


class UseChannel(enum.StrEnum):
    """Where the order is placed."""

    APP = "app"
    WECHAT = "wechat"
    MINI_PROGRAM = "mini_program"
    H5 = "h5"


class Tier(enum.StrEnum):
    """Who funds the coupon, and so which coupons it stacks with (one per tier)."""

    SHOP = "shop"  # 店铺券
    CATEGORY = "category"  # 品类券
    PLATFORM = "platform"  # 平台券

    @property
    def order(self) -> int:
        """Coupons apply shop first, then category, then platform (as Taobao's do)."""
        return _TIER_ORDER[self]


_TIER_ORDER = {Tier.SHOP: 0, Tier.CATEGORY: 1, Tier.PLATFORM: 2}


class Stacking(enum.StrEnum):
    """Whether the coupon may share an order with others."""

    STACKABLE = "stackable"  # with coupons of other tiers (perTier of its own)
    EXCLUSIVE = "exclusive"  # 不与其他券同享: alone on its order


class RefundPolicy(enum.StrEnum):
    """What a full refund of the order does to a used coupon."""

    RETURN_IF_VALID = "return_if_valid"  # unused again while still valid, else refunded
    KEEP = "keep"  # stays spent (status refunded)


class Scope(msgspec.Struct, rename="camel", forbid_unknown_fields=True, frozen=True):
    """Which items a coupon applies to; an empty include list means "all"."""

    categories: ScopeList = msgspec.field(default_factory=list)
    brands: ScopeList = msgspec.field(default_factory=list)
    skus: ScopeList = msgspec.field(default_factory=list)
    exclude_categories: ScopeList = msgspec.field(default_factory=list)
    exclude_brands: ScopeList = msgspec.field(default_factory=list)
    exclude_skus: ScopeList = msgspec.field(default_factory=list)

    def covers(self, sku: str, category: str, brand: str) -> bool:
        """Whether an item falls inside the scope (exclusions win over inclusions)."""
        if sku in self.exclude_skus or category in self.exclude_categories:
            return False
        if brand in self.exclude_brands:
            return False
        if self.skus and sku not in self.skus:
            return False
        if self.categories and category not in self.categories:
            return False
        return not (self.brands and brand not in self.brands)

    @property
    def narrowed(self) -> bool:
        """Whether anything is left out."""
        return any(msgspec.structs.astuple(self))


class HourWindow(msgspec.Struct, rename="camel", forbid_unknown_fields=True, frozen=True):
    """A time of day, ``HH:MM`` to ``HH:MM`` (``24:00`` for midnight), campaign zone."""

    start: HourMinute
    end: HourMinute

    def minutes(self) -> tuple[int, int]:
        """Start and end as minutes after midnight."""
        return _minutes(self.start), _minutes(self.end)


class UsageRules(msgspec.Struct, rename="camel", forbid_unknown_fields=True, frozen=True):
    """``usage`` in a campaign spec; the defaults restrict nothing."""

    scope: Scope = msgspec.field(default_factory=Scope)
    channels: Annotated[list[UseChannel], msgspec.Meta(max_length=4)] = msgspec.field(
        default_factory=list
    )  # empty: every channel
    cities: Annotated[list[City], msgspec.Meta(max_length=MAX_SCOPE_ITEMS)] = msgspec.field(
        default_factory=list
    )  # empty: every city
    hours: Annotated[list[HourWindow], msgspec.Meta(max_length=24)] = msgspec.field(
        default_factory=list
    )  # empty: all day
    new_users_only: bool = False
    # Free-order and high-value coupons: usable only when the token's verified device
    # (the login service's ``device`` claim) is the device the coupon was claimed on.
    verified_device: bool = False
    stacking: Stacking = Stacking.STACKABLE
    tier: Tier = Tier.PLATFORM
    per_tier: Annotated[int, msgspec.Meta(ge=1, le=10)] = 1
    refund: RefundPolicy = RefundPolicy.RETURN_IF_VALID


def _minutes(text: str) -> int:
    hours, minutes = text.split(":")
    return int(hours) * 60 + int(minutes)


def usage_violations(usage: UsageRules) -> list[tuple[str, str]]:
    """Field-by-field problems of a ``usage`` object (paths relative to the spec)."""
    found: list[tuple[str, str]] = []
    scope = usage.scope
    for name, include, exclude in (
        ("categories", scope.categories, scope.exclude_categories),
        ("brands", scope.brands, scope.exclude_brands),
        ("skus", scope.skus, scope.exclude_skus),
    ):
        both = sorted(set(include) & set(exclude))
        if both:
            found.append((f"usage.scope.{name}", f"both included and excluded: {both[0]}"))
    for name, values in (
        ("scope.categories", scope.categories),
        ("scope.brands", scope.brands),
        ("scope.skus", scope.skus),
        ("scope.excludeCategories", scope.exclude_categories),
        ("scope.excludeBrands", scope.exclude_brands),
        ("scope.excludeSkus", scope.exclude_skus),
        ("channels", list(usage.channels)),
        ("cities", usage.cities),
    ):
        if len(set(values)) != len(values):
            found.append((f"usage.{name}", "lists a value twice"))
    spans: list[tuple[int, int]] = []
    for i, window in enumerate(usage.hours):
        field = f"usage.hours[{i}]"
        if not _HHMM.match(window.start) or window.start == "24:00":
            found.append((f"{field}.start", "must be HH:MM from 00:00 to 23:59"))
        elif not _HHMM.match(window.end):
            found.append((f"{field}.end", "must be HH:MM from 00:01 to 24:00"))
        elif _minutes(window.end) <= _minutes(window.start):
            found.append((f"{field}.end", "must be after start (split a window across midnight)"))
        else:
            spans.append(window.minutes())
    spans.sort()
    if any(b[0] < a[1] for a, b in itertools.pairwise(spans)):
        found.append(("usage.hours", "windows must not overlap"))
    if usage.stacking is Stacking.EXCLUSIVE and usage.per_tier != 1:
        found.append(("usage.perTier", "an exclusive coupon is alone on its order: leave it 1"))
    return found
