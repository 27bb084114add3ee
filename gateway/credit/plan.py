"""Credit plans (购物金方案): the top-up rules an operator sets, checked field by field.

A plan says what a top-up earns: the best tier reached ("pay 500 → 550" is a tier of
50 000 cents with a bonus of 5 000), plus a bonus ratio by member level, plus gifts for a
new user's first top-up and for members of a level (once per user, plan and level); how
long the bonus part stays valid; where credit may be spent (everywhere, or only on items
of given categories); whether principal may be withdrawn (forfeiting the matching bonus).
Like campaign specs: JSON, camelCase, integer cents, decoded by msgspec, then the rules
types cannot say checked together, each refusal naming its field.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

from gateway.campaigns.spec import MAX_CENTS, FieldError, InvalidSpec, Name, decode_document
from gateway.identifiers import CampaignId, Label

Cents = Annotated[int, msgspec.Meta(ge=0, le=MAX_CENTS)]
PositiveCents = Annotated[int, msgspec.Meta(ge=1, le=MAX_CENTS)]
Level = Annotated[int, msgspec.Meta(ge=0, le=100)]
Percent = Annotated[int, msgspec.Meta(ge=0, le=100)]
PlanId = CampaignId  # the same shape as a campaign id


class Tier(msgspec.Struct, rename="camel", forbid_unknown_fields=True, frozen=True):
    """Paying at least ``payCents`` earns ``bonusCents`` (the best tier reached counts)."""

    pay_cents: PositiveCents
    bonus_cents: Cents


class LevelBonus(msgspec.Struct, rename="camel", forbid_unknown_fields=True, frozen=True):
    """Members of ``minLevel`` or above earn ``bonusPercent`` of what they pay, on top."""

    min_level: Level
    bonus_percent: Percent


class LevelGift(msgspec.Struct, rename="camel", forbid_unknown_fields=True, frozen=True):
    """A one-time bonus for members of ``level`` or above, with their first paid top-up."""

    level: Level
    bonus_cents: PositiveCents


class Gifts(msgspec.Struct, rename="camel", forbid_unknown_fields=True, frozen=True):
    """Gifts granted with a top-up, once each per user and plan."""

    new_user_cents: Cents = 0
    levels: list[LevelGift] = msgspec.field(default_factory=list)


class SpendScope(msgspec.Struct, rename="camel", forbid_unknown_fields=True, frozen=True):
    """Where credit may pay: everywhere, or only for items of these categories."""

    everywhere: bool = True
    categories: list[Label] = msgspec.field(default_factory=list)


class CreditPlan(msgspec.Struct, rename="camel", forbid_unknown_fields=True, kw_only=True):
    """A credit plan as an operator writes it."""

    id: PlanId
    name: Name
    tiers: Annotated[list[Tier], msgspec.Meta(max_length=50)] = msgspec.field(default_factory=list)
    level_bonus: Annotated[list[LevelBonus], msgspec.Meta(max_length=101)] = msgspec.field(
        default_factory=list
    )
    gifts: Gifts = msgspec.field(default_factory=Gifts)
    bonus_valid_days: Annotated[int, msgspec.Meta(ge=1, le=3650)] = 365
    min_pay_cents: PositiveCents = 100
    max_pay_cents: PositiveCents = 5_000_000
    spend_scope: SpendScope = msgspec.field(default_factory=SpendScope)
    withdrawals: bool = False
    active: bool = True

    def bonus_for(self, pay_cents: int, level: int) -> int:
        """The bonus a top-up of ``pay_cents`` by a member of ``level`` earns."""
        tier = max((t.bonus_cents for t in self.tiers if pay_cents >= t.pay_cents), default=0)
        percent = max((b.bonus_percent for b in self.level_bonus if level >= b.min_level),
                      default=0)  # fmt: skip
        return tier + pay_cents * percent // 100

    def gift_for(self, level: int, new_user: bool, first_topup: bool) -> int:
        """Gifts that come with a user's first paid top-up under this plan."""
        if not first_topup:
            return 0
        gift = self.gifts.new_user_cents if new_user else 0
        return gift + sum(g.bonus_cents for g in self.gifts.levels if level >= g.level)

    def spendable_cents(self, items: list[tuple[str, int]]) -> int:
        """How much of an order (``(category, cents)`` per item) credit may pay."""
        if self.spend_scope.everywhere:
            return sum(cents for _, cents in items)
        allowed = set(self.spend_scope.categories)
        return sum(cents for category, cents in items if category in allowed)


def decode_plan(data: bytes | dict[str, object]) -> CreditPlan:
    """Decode and validate a plan from JSON bytes or a dict; raise ``InvalidSpec``."""
    plan = decode_document(data, CreditPlan)
    errors = [FieldError(f, m) for f, m in _violations(plan)]
    if errors:
        raise InvalidSpec(errors)
    return plan


def _violations(plan: CreditPlan) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    pays = [t.pay_cents for t in plan.tiers]
    if pays != sorted(set(pays)):
        found.append(("tiers", "must be in ascending payCents, each payCents once"))
    for i, tier in enumerate(plan.tiers):
        if tier.bonus_cents > tier.pay_cents:
            found.append((f"tiers[{i}].bonusCents", "must not exceed payCents"))
    levels = [b.min_level for b in plan.level_bonus]
    if levels != sorted(set(levels)):
        found.append(("levelBonus", "must be in ascending minLevel, each level once"))
    gift_levels = [g.level for g in plan.gifts.levels]
    if gift_levels != sorted(set(gift_levels)):
        found.append(("gifts.levels", "must be in ascending level, each level once"))
    if plan.max_pay_cents < plan.min_pay_cents:
        found.append(("maxPayCents", "must not be below minPayCents"))
    if plan.spend_scope.everywhere and plan.spend_scope.categories:
        found.append(("spendScope.categories", "must be empty when everywhere is true"))
    if not plan.spend_scope.everywhere and not plan.spend_scope.categories:
        found.append(("spendScope.categories", "must name a category when everywhere is false"))
    return found
