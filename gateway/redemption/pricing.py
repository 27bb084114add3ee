"""Whether a coupon applies to a cart, and what a set of coupons takes off, to the cent.

Pure functions, no I/O: the quote, the lock and the tests share them, so the discount a
quote shows is the one the lock records. Rules, in order:

- a coupon applies when it is unused and valid now, the order's channel, city and hour
  (in the campaign's time zone) are allowed, the user is new if it must be, some items
  are in its scope, and those items reach its threshold;
- coupons of one order apply shop tier first, then category, then platform (as Taobao's
  店铺券 / 品类券 / 平台券), each on what the ones before left of its items;
- each coupon's discount is split over its items in proportion to what is left of them,
  remainders by the largest-remainder method (ties to the earlier line), so the shares
  add up exactly and a partial refund can give back exactly an item's share.

Thresholds are judged on the scoped items' prices before any coupon. A discount never
exceeds the coupon's value or cap, nor what is left of its items.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from gateway.campaigns.spec import Campaign, Kind
from gateway.campaigns.usage import Stacking
from gateway.reasons import Reason
from gateway.redemption.cart import Cart


@dataclass(frozen=True, slots=True)
class Held:
    """A coupon its user holds, as the rules need it: campaign, validity, status now."""

    coupon_id: str
    campaign: Campaign
    status: str  # effective now: unused, locked, used, expired, refunded, voided
    claimed_at_ms: int
    expires_at_ms: int
    order_id: str | None = None
    device_id: str = ""  # the device it was claimed on


@dataclass(frozen=True, slots=True)
class Verdict:
    """A coupon against a cart: its lines in scope, or why it does not apply."""

    coupon: Held
    lines: tuple[int, ...] = ()
    refusal: Reason | None = None
    message: str = ""


@dataclass(slots=True)
class Priced:
    """A combination of coupons priced on a cart."""

    coupons: list[Held]
    discounts: dict[str, int] = field(default_factory=dict)  # coupon id -> cents
    allocation: dict[str, list[int]] = field(default_factory=dict)  # coupon id -> per line

    @property
    def discount_cents(self) -> int:
        """The whole order's discount."""
        return sum(self.discounts.values())


_STATUS_REFUSALS = {
    "locked": (Reason.COUPON_LOCKED, "the coupon is held by another order"),
    "used": (Reason.COUPON_USED, "the coupon was used"),
    "refunded": (Reason.COUPON_USED, "the coupon was used on an order since refunded"),
    "expired": (Reason.COUPON_EXPIRED, "the coupon has expired"),
    "voided": (Reason.COUPON_VOIDED, "the coupon was voided by the operator"),
}


def judge(
    coupon: Held, cart: Cart, now_ms: int, *, new_user: bool, order: str = "", device: str = ""
) -> Verdict:
    """Whether ``coupon`` applies to ``cart`` now (``order``: its own lock is no bar;
    ``device``: the token's verified device, "" for none)."""
    usage = coupon.campaign.usage
    if coupon.status != "unused" and not (coupon.status == "locked" and coupon.order_id == order):
        reason, message = _STATUS_REFUSALS.get(coupon.status, (Reason.COUPON_USED, "not usable"))
        return Verdict(coupon, refusal=reason, message=message)
    if now_ms >= coupon.expires_at_ms:
        return Verdict(coupon, refusal=Reason.COUPON_EXPIRED, message="the coupon has expired")
    if usage.channels and cart.channel not in usage.channels:
        return _not(coupon, f"not usable on orders placed in {cart.channel}")
    if usage.cities and cart.city not in usage.cities:
        return _not(coupon, f"not usable in {cart.city or 'an unnamed city'}")
    if usage.hours and not _in_hours(coupon.campaign, now_ms):
        return _not(coupon, "not usable at this hour")
    if usage.new_users_only and not new_user:
        return _not(coupon, "for new users only")
    if usage.verified_device and (not device or device != coupon.device_id):
        return Verdict(
            coupon,
            refusal=Reason.DEVICE_NOT_VERIFIED,
            message="usable only on the verified device it was claimed on",
        )
    scope = usage.scope
    lines = tuple(
        i
        for i, item in enumerate(cart.items)
        if scope.covers(item.sku, item.category, item.brand or "")
    )
    base = sum(cart.items[i].total_cents for i in lines)
    if base == 0:
        return _not(coupon, "no item of this order is in the coupon's scope")
    if base < coupon.campaign.threshold_cents:
        return _not(coupon, f"the items in scope cost {base} cents, under the threshold")
    return Verdict(coupon, lines=lines)


def _not(coupon: Held, message: str) -> Verdict:
    return Verdict(coupon, refusal=Reason.NOT_APPLICABLE, message=message)


def _in_hours(campaign: Campaign, now_ms: int) -> bool:
    local = datetime.fromtimestamp(now_ms / 1000, campaign.zone)
    minute = local.hour * 60 + local.minute
    return any(start <= minute < end for start, end in (w.minutes() for w in campaign.usage.hours))


def nominal(campaign: Campaign, base: int) -> int:
    """What the coupon takes off items worth ``base`` cents, before other coupons."""
    if campaign.kind is Kind.PERCENT_OFF:
        return min(base * campaign.percent_off // 100, campaign.max_discount_cents)
    if campaign.kind is Kind.FREE_ORDER:
        return min(base, campaign.max_discount_cents)
    return min(base, campaign.face_value_cents)


def stacking_problem(coupons: list[Held]) -> str | None:
    """Why these coupons cannot share one order, or None."""
    if len(coupons) > 1 and any(c.campaign.usage.stacking is Stacking.EXCLUSIVE for c in coupons):
        return "an exclusive coupon must be alone on its order"
    for c in coupons:
        usage = c.campaign.usage
        same_tier = sum(1 for other in coupons if other.campaign.usage.tier is usage.tier)
        if same_tier > usage.per_tier:
            return f"at most {usage.per_tier} {usage.tier} coupon(s) per order"
    return None


def price(verdicts: list[Verdict], cart: Cart) -> Priced:
    """Apply applicable coupons in tier order; each takes off what its items have left."""
    ordered = sorted(verdicts, key=lambda v: (v.coupon.campaign.usage.tier.order,
                                               v.coupon.coupon_id))  # fmt: skip
    left = [item.total_cents for item in cart.items]
    originals = list(left)
    priced = Priced([v.coupon for v in ordered])
    for verdict in ordered:
        base = sum(originals[i] for i in verdict.lines)
        remaining = sum(left[i] for i in verdict.lines)
        cents = min(nominal(verdict.coupon.campaign, base), remaining)
        shares = split(cents, [left[i] for i in verdict.lines])
        per_line = [0] * len(left)
        for i, share in zip(verdict.lines, shares, strict=True):
            per_line[i] = share
            left[i] -= share
        priced.discounts[verdict.coupon.coupon_id] = cents
        priced.allocation[verdict.coupon.coupon_id] = per_line
    return priced


def split(cents: int, weights: list[int]) -> list[int]:
    """``cents`` in shares proportional to ``weights``, summing exactly (largest remainder)."""
    total = sum(weights)
    if total == 0 or cents == 0:
        return [0] * len(weights)
    shares = [cents * w // total for w in weights]
    order = sorted(range(len(weights)), key=lambda i: (-(cents * weights[i] % total), i))
    for i in order[: cents - sum(shares)]:
        shares[i] += 1
    return shares
