"""The best combination of a user's coupons for one cart, deterministic to the cent.

Every coupon is judged alone (its discount, or the reason it does not apply); then
combinations allowed by the stacking rules are priced with ``pricing.price`` and the one
taking off the most wins. Ties go to the combination whose coupons expire first (its
expiries, earliest first, compared in order), then to fewer coupons, then to coupon ids:
the same cart and wallet always get the same answer.

The search is bounded so a wallet of hundreds stays fast: per tier, the 8 coupons worth
most alone, in sets of at most ``perTier`` (3 at most), the 12 best sets per tier; every
exclusive coupon alone. With one coupon per tier (the default) that is every combination.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from gateway.campaigns.usage import Stacking, Tier
from gateway.redemption.cart import Cart
from gateway.redemption.pricing import Held, Priced, Verdict, judge, price, stacking_problem

PER_TIER_CANDIDATES = 8
PER_TIER_SETS = 12
MAX_SET = 3


@dataclass(frozen=True, slots=True)
class Quote:
    """Each coupon judged alone, and the best combination."""

    alone: list[tuple[Verdict, int]]  # verdict, discount alone (0 when refused)
    best: Priced


def quote(
    coupons: list[Held], cart: Cart, now_ms: int, *, new_user: bool, device: str = ""
) -> Quote:
    """Judge every coupon on ``cart`` and find the combination that takes off the most
    (``device``: the token's verified device)."""
    verdicts = [judge(c, cart, now_ms, new_user=new_user, device=device) for c in coupons]
    alone = [(v, price([v], cart).discount_cents if v.refusal is None else 0) for v in verdicts]
    usable = _undominated([(v, d) for v, d in alone if v.refusal is None and d > 0])
    best = Priced([])
    for combination in _combinations(usable):
        if stacking_problem([v.coupon for v in combination]) is not None:
            continue
        priced = price(list(combination), cart)
        if _key(priced) < _key(best):
            best = priced
    return Quote(alone, best)


def _undominated(usable: list[tuple[Verdict, int]]) -> list[tuple[Verdict, int]]:
    """Of coupons of one campaign (the same rules, so the same discount in any
    combination), only the ``perTier`` expiring first can be in the best one: any other
    would tie with them and lose on expiry. Exact, and it keeps a wallet of many copies
    of a coupon cheap to quote."""
    kept: list[tuple[Verdict, int]] = []
    per_campaign: dict[str, int] = {}
    for entry in sorted(usable, key=_rank):
        campaign = entry[0].coupon.campaign
        seen = per_campaign.get(campaign.id, 0)
        if seen < campaign.usage.per_tier:
            per_campaign[campaign.id] = seen + 1
            kept.append(entry)
    return kept


def _key(priced: Priced) -> tuple[int, tuple[int, ...], int, tuple[str, ...]]:
    expiries = tuple(sorted(c.expires_at_ms for c in priced.coupons))
    ids = tuple(sorted(c.coupon_id for c in priced.coupons))
    return (-priced.discount_cents, expiries, len(ids), ids)


def _rank(entry: tuple[Verdict, int]) -> tuple[int, int, str]:
    verdict, discount = entry
    return (-discount, verdict.coupon.expires_at_ms, verdict.coupon.coupon_id)


def _combinations(usable: list[tuple[Verdict, int]]) -> list[tuple[Verdict, ...]]:
    found: list[tuple[Verdict, ...]] = [
        (v,) for v, _ in usable if v.coupon.campaign.usage.stacking is Stacking.EXCLUSIVE
    ]
    per_tier: list[list[tuple[Verdict, ...]]] = []
    for tier in Tier:
        candidates = sorted(
            (
                e
                for e in usable
                if e[0].coupon.campaign.usage.tier is tier
                and e[0].coupon.campaign.usage.stacking is Stacking.STACKABLE
            ),
            key=_rank,
        )[:PER_TIER_CANDIDATES]
        most = min(MAX_SET, max((e[0].coupon.campaign.usage.per_tier for e in candidates),
                                default=0))  # fmt: skip
        sets = [
            combo
            for size in range(1, most + 1)
            for combo in itertools.combinations(candidates, size)
        ]
        sets.sort(key=lambda s: (-sum(d for _, d in s), [_rank(e) for e in s]))
        per_tier.append([(), *(tuple(v for v, _ in s) for s in sets[:PER_TIER_SETS])])
    for shop, category, platform in itertools.product(*per_tier):
        if shop or category or platform:
            found.append((*shop, *category, *platform))
    return found
