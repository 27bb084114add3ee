"""Per-item refunds: what returning some units of some cart lines gives back, to the cent.

The lock keeps, per cart line, what it cost, its quantity, each coupon's share of the
discount and the credit's share (``orders._lock_new``). Refunding ``u`` of a line's ``q``
units gives back ``⌊x·u/q⌋`` of each of those amounts, counted from the units refunded
so far (the cumulative figure after the refund less the one before), so:

- refunding every unit, in any steps, gives back exactly the line's amounts;
- every step gives back no negative amount (each figure is monotone in ``u``);
- the money part and the credit part are rounded separately (money = what the line
  costs after coupons less its credit), so no step returns more credit than it refunds.

Pure functions: the order transaction and the property tests share them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Line:
    """One cart line as the order locked it."""

    total_cents: int
    quantity: int
    discounts: dict[str, int]  # coupon id -> its share of this line's discount
    credit_cents: int  # the credit's share of this line

    @property
    def money_cents(self) -> int:
        """What the line costs after coupons and credit: paid by other means."""
        return self.total_cents - sum(self.discounts.values()) - self.credit_cents


@dataclass(frozen=True, slots=True)
class Shares:
    """What a refund gives back: of the order's pay (money + credit), of the credit, and
    of each coupon's discount."""

    pay_cents: int = 0
    credit_cents: int = 0
    discounts: dict[str, int] = field(default_factory=dict)


def returned(lines: Sequence[Line], units: Sequence[int]) -> Shares:
    """Everything given back once ``units[i]`` units of each line ``i`` are refunded."""
    money = credit = 0
    discounts: dict[str, int] = {}
    for line, u in zip(lines, units, strict=True):
        money += line.money_cents * u // line.quantity
        credit += line.credit_cents * u // line.quantity
        for coupon, cents in line.discounts.items():
            discounts[coupon] = discounts.get(coupon, 0) + cents * u // line.quantity
    return Shares(money + credit, credit, discounts)


def step(lines: Sequence[Line], before: Sequence[int], after: Sequence[int]) -> Shares:
    """What one refund gives back: refunded units go from ``before`` to ``after``."""
    done, then = returned(lines, before), returned(lines, after)
    return Shares(
        then.pay_cents - done.pay_cents,
        then.credit_cents - done.credit_cents,
        {c: cents - done.discounts.get(c, 0) for c, cents in then.discounts.items()},
    )
