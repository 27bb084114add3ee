"""What a checkout sends: the cart, where the order is placed, and the coupons to use.

The structs decode the request bodies of ``/api/checkout/quote`` and ``/api/coupon/use``
(and describe them in the API document). ``cart_problem`` checks what types cannot: the
items add up to ``amountCents`` exactly (a client that sends a total its items do not
make up is refused, never trusted), and no coupon is listed twice.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

from gateway.campaigns.spec import MAX_CENTS
from gateway.campaigns.usage import CatalogueId, City, UseChannel
from gateway.identifiers import whole

MAX_ITEMS = 200
MAX_COUPONS = 10

#: An order id as the shop's order service makes it.
OrderId = Annotated[str, msgspec.Meta(pattern=whole(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}"))]
#: A refund id as the shop's refund service makes it.
RefundId = OrderId
CouponId = Annotated[str, msgspec.Meta(pattern=whole(r"[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?"
                                                     r"[0-9a-f]{4}-?[0-9a-f]{12}"))]  # fmt: skip
Amount = Annotated[int, msgspec.Meta(ge=1, le=MAX_CENTS)]
CreditCents = Annotated[int, msgspec.Meta(ge=0, le=MAX_CENTS)]


class Item(msgspec.Struct, rename="camel", forbid_unknown_fields=True, frozen=True):
    """One line of the cart."""

    sku: CatalogueId
    category: CatalogueId
    price_cents: Annotated[int, msgspec.Meta(ge=0, le=MAX_CENTS)]
    quantity: Annotated[int, msgspec.Meta(ge=1, le=10_000)]
    brand: CatalogueId | None = None

    @property
    def total_cents(self) -> int:
        """What the line costs before coupons."""
        return self.price_cents * self.quantity


Items = Annotated[list[Item], msgspec.Meta(min_length=1, max_length=MAX_ITEMS)]


class Cart(msgspec.Struct, rename="camel", forbid_unknown_fields=True, frozen=True):
    """``POST /api/checkout/quote``: the cart, its channel and city."""

    amount_cents: Amount
    items: Items
    channel: UseChannel
    city: City | None = None
    #: Shopping credit to apply after coupons: at most this much (absent: as much as the
    #: credit may pay; 0: none). The quote answers what it would take.
    credit_cents: CreditCents | None = None


class UseRequest(msgspec.Struct, rename="camel", forbid_unknown_fields=True, frozen=True):
    """``POST /api/coupon/use``: lock these coupons to this order (all or none)."""

    order_id: OrderId
    amount_cents: Amount
    items: Items
    channel: UseChannel
    coupon_ids: Annotated[list[CouponId], msgspec.Meta(min_length=1, max_length=MAX_COUPONS)] = (
        msgspec.field(default_factory=list)
    )
    coupon_id: CouponId | None = None  # the documents' single-coupon form
    city: City | None = None
    #: Shopping credit to hold for this order, exactly (0: none), locked with its coupons.
    credit_cents: CreditCents = 0

    @property
    def cart(self) -> Cart:
        """The cart this order is for."""
        return Cart(self.amount_cents, self.items, self.channel, self.city)

    @property
    def coupons(self) -> list[str]:
        """Every coupon named, normalised to the dashed lower-case form."""
        named = [*self.coupon_ids, *([self.coupon_id] if self.coupon_id else [])]
        return [normal_coupon_id(c) for c in named]


class RefundItem(msgspec.Struct, rename="camel", forbid_unknown_fields=True, frozen=True):
    """Units of one cart line given back (``line``: its index in the order's items)."""

    line: Annotated[int, msgspec.Meta(ge=0, lt=MAX_ITEMS)]
    quantity: Annotated[int, msgspec.Meta(ge=1, le=10_000)]


class RefundRequest(msgspec.Struct, rename="camel", forbid_unknown_fields=True, frozen=True):
    """``POST /api/coupon/use/{orderId}/refund``: all of it, ``amountCents`` of it, or
    the ``items`` returned (each coupon's discount and the credit come back per item)."""

    amount_cents: Amount | None = None
    refund_id: RefundId | None = None  # a partial refund's own id; retries reuse it
    items: Annotated[list[RefundItem], msgspec.Meta(min_length=1, max_length=MAX_ITEMS)] | None = (
        None
    )


def normal_coupon_id(coupon_id: str) -> str:
    """``0b5c…`` with or without dashes, as PostgreSQL's uuid text writes it."""
    hex32 = coupon_id.replace("-", "")
    return f"{hex32[:8]}-{hex32[8:12]}-{hex32[12:16]}-{hex32[16:20]}-{hex32[20:]}"


def cart_problem(cart: Cart) -> str | None:
    """Why a cart cannot be priced, or None."""
    total = sum(item.total_cents for item in cart.items)
    if total != cart.amount_cents:
        return f"items add up to {total} cents, not amountCents {cart.amount_cents}"
    return None


def use_problem(request: UseRequest) -> str | None:
    """Why a use request cannot be decided, or None."""
    if request.coupon_ids and request.coupon_id:
        return "give couponIds or couponId, not both"
    coupons = request.coupons
    if not coupons:
        return "couponIds (or couponId) is required"
    if len(set(coupons)) != len(coupons):
        return "a coupon is listed twice"
    return cart_problem(request.cart)
