"""Reconciliation of use: a campaign's coupons by status and its discount money, with the
coupon rows held against their own audit trail.

Every transition writes its event in its own transaction, so the last event of each
coupon names the status its row holds. A row whose status disagrees with its last event
(or that left ``unused`` with no event at all) is drift: something changed a coupon
outside a transition. More than 0.1 % of a campaign's coupons drifting, or discount
money past the campaign's budget, is an alarm (``flashclaim reconcile`` exits 1, and
``flashclaim_reconcile_alarm`` reads 1).
"""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

DRIFT_ALARM = 0.001

_FIGURES = """
WITH last AS (
    SELECT DISTINCT ON (coupon_id) coupon_id, to_status
    FROM coupon_events WHERE campaign_id = $1 ORDER BY coupon_id, event_id DESC
)
SELECT
    count(*) FILTER (WHERE c.status = 'locked') AS locked,
    count(*) FILTER (WHERE c.status = 'used') AS used,
    count(*) FILTER (WHERE c.status = 'refunded' OR c.refunded_at IS NOT NULL) AS refunded,
    count(*) FILTER (WHERE c.status = 'expired') AS expired,
    count(*) FILTER (WHERE c.status = 'voided') AS voided,
    coalesce(sum(c.discount_cents - c.refunded_discount_cents)
             FILTER (WHERE c.status IN ('used', 'refunded')), 0)::bigint AS discount_cents,
    count(*) FILTER (WHERE (l.to_status IS NULL AND c.status NOT IN ('unused', 'expired'))
                        OR (l.to_status IS NOT NULL AND l.to_status <> c.status)) AS drifted,
    count(*) AS rows
FROM coupons c LEFT JOIN last l ON l.coupon_id = c.coupon_id
WHERE c.campaign_id = $1
"""


@dataclass(frozen=True, slots=True)
class UseReport:
    """A campaign's coupons after the claim, and the money they took off orders."""

    locked: int = 0
    used: int = 0
    refunded: int = 0
    expired: int = 0
    voided: int = 0
    discount_cents: int = 0  # used and not given back by refunds
    budget_cents: int | None = None
    drifted: int = 0
    rows: int = 0

    @property
    def drift(self) -> float:
        """Coupons whose row disagrees with their audit trail, as a share of all."""
        return self.drifted / max(self.rows, 1)

    @property
    def over_budget(self) -> bool:
        """More discount money spent than the campaign's budget."""
        return self.budget_cents is not None and self.discount_cents > self.budget_cents

    @property
    def alarm(self) -> bool:
        """Whether use needs a human."""
        return self.drift > DRIFT_ALARM or self.over_budget


async def use_report(pool: asyncpg.Pool, campaign_id: str, budget_cents: int | None) -> UseReport:
    """The use figures of one campaign, read in one query."""
    row = await pool.fetchrow(_FIGURES, campaign_id)
    assert row is not None  # an aggregate always returns its row
    return UseReport(**dict(row), budget_cents=budget_cents)
