"""Metrics of using coupons: uses by outcome, discount money, lock expiries, quote time.

Kept beside the capability (the gateway's ``/metrics`` serves every metric of the
process, in multiprocess mode the sum over workers). Label values are bounded: the
operation name and a ``Reason`` or outcome word.
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram

from gateway.infra.metrics import LATENCY_BUCKETS

USES = Counter(
    "flashclaim_coupon_uses_total",
    "Lock, confirm, cancel and refund requests answered, by operation and outcome"
    " (LOCKED, CONFIRMED, ... or the refusal's reason).",
    ["operation", "outcome"],
)
DISCOUNT_CENTS = Counter(
    "flashclaim_discount_cents_total",
    "Discount money of confirmed orders, in cents (refunds not subtracted).",
)
LOCK_EXPIRIES = Counter(
    "flashclaim_lock_expiries_total",
    "Orders whose coupon lock ran out before a confirm or cancel (released by time).",
)
QUOTE_SECONDS = Histogram(
    "flashclaim_quote_duration_seconds",
    "Time to answer a checkout quote (read the wallet, judge, find the best combination).",
    buckets=LATENCY_BUCKETS,
)
