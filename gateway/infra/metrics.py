"""Prometheus metrics of the gateway, correct across several worker processes.

With ``FLASHCLAIM_METRICS_DIR`` set, ``flashclaim serve`` points prometheus-client's
multiprocess mode at that directory (wiped at start) before any worker starts; every
worker then answers ``/metrics`` with the sum over all live workers. Buckets reach well
below 5 ms, where the claim path lives. Label values are bounded: campaign ids only of
published campaigns, routes as templates, reasons from the ``Reason`` enum.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
)
from prometheus_client.multiprocess import MultiProcessCollector

LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1000)

REQUEST_SECONDS = Histogram(
    "http_server_request_duration_seconds",
    "Time to answer an HTTP request, by route template and status.",
    ["method", "route", "status"],
    buckets=LATENCY_BUCKETS,
)
CLAIMS = Counter(
    "flashclaim_claims_total",
    "Claims answered, by campaign and reason (ACCEPTED included).",
    ["campaign", "reason"],
)
CACHE_ANSWERS = Counter(
    "flashclaim_cache_answers_total",
    "Claims answered from a worker's memory (NOT_STARTED, SOLD_OUT, ...), before the script.",
    ["campaign", "reason"],
)
CHANNEL_CLAIMS = Counter(
    "flashclaim_channel_claims_total",
    "Claims the script decided, by campaign, channel and reason (campaigns that list"
    " channels or give them quotas; unlisted channels count as 'other').",
    ["campaign", "channel", "reason"],
)
UNREPLICATED = Counter(
    "flashclaim_claims_unreplicated_total",
    "Batches with accepted claims answered although fewer replicas than"
    " FLASHCLAIM_REDIS_WAIT_REPLICAS acknowledged them within the WAIT timeout.",
)
REPLAYS = Counter(
    "flashclaim_claim_replays_total",
    "Retries of an accepted requestId, answered with the original coupon.",
    ["campaign"],
)
SCRIPT_SECONDS = Histogram(
    "flashclaim_redis_script_duration_seconds",
    "Time of one Redis round trip of a claim batch, by step.",
    ["script"],
    buckets=LATENCY_BUCKETS,
)
BATCH_SIZE = Histogram(
    "flashclaim_claim_batch_size",
    "Claims decided by one script call.",
    buckets=BATCH_BUCKETS,
)
OUTBOX_LENGTH = Gauge(
    "flashclaim_outbox_length",
    "Accepted claims waiting in a campaign's outbox stream, as last seen by a claim.",
    ["campaign"],
    multiprocess_mode="mostrecent",
)
STOCK_REMAINING = Gauge(
    "flashclaim_stock_remaining",
    "Coupons a campaign can still issue, as last seen by a claim.",
    ["campaign"],
    multiprocess_mode="mostrecent",
)
STOCK_TOTAL = Gauge(
    "flashclaim_stock_total",
    "A campaign's total stock, as last seen by a claim.",
    ["campaign"],
    multiprocess_mode="mostrecent",
)
OUTBOX_OLDEST_AGE = Gauge(
    "flashclaim_outbox_oldest_age_seconds",
    "Age of the oldest claim still in a campaign's outbox (0 when empty), per the relay.",
    ["campaign"],
    multiprocess_mode="mostrecent",
)
RELAYED = Counter(
    "flashclaim_relayed_total",
    "Outbox entries acknowledged by Kafka and removed from the outbox.",
    ["campaign"],
)
PRODUCE_SECONDS = Histogram(
    "flashclaim_kafka_produce_duration_seconds",
    "Time from sending a relay batch to Kafka's acknowledgement of all of it.",
    buckets=LATENCY_BUCKETS,
)
PRODUCE_ERRORS = Counter(
    "flashclaim_kafka_produce_errors_total",
    "Relay batches Kafka did not acknowledge (the entries stay in the outbox).",
)
PERSISTED = Counter("flashclaim_persisted_total", "Claims written to PostgreSQL as new rows.")
DUPLICATES = Counter(
    "flashclaim_persist_duplicates_total",
    "Redelivered claims absorbed by the coupon id's primary key.",
)
PERSIST_BATCH = Histogram(
    "flashclaim_persist_batch_rows", "Claims per consumer transaction.", buckets=BATCH_BUCKETS
)
DB_COMMIT_SECONDS = Histogram(
    "flashclaim_db_commit_duration_seconds",
    "Time of one consumer batch's insert and commit in PostgreSQL.",
    buckets=LATENCY_BUCKETS,
)
CONSUMER_LAG = Gauge(
    "flashclaim_consumer_lag_messages",
    "Messages of the claims topic not yet persisted, by partition.",
    ["partition"],
    multiprocess_mode="mostrecent",
)
CONSUMER_PARTITIONS = Gauge(
    "flashclaim_consumer_partitions",
    "Partitions of the claims topic this consumer-group member owns now.",
    multiprocess_mode="mostrecent",
)
DEAD_LETTERS = Counter(
    "flashclaim_dead_letters_total", "Undecodable claim messages sent to the dead-letter topic."
)
COMMIT_FAILURES = Counter(
    "flashclaim_offset_commit_failures_total",
    "Offset commits refused (e.g. by a rebalance); the batch is redelivered and absorbed.",
)
REDIS_ERRORS = Counter(
    "flashclaim_redis_errors_total",
    "Redis calls of the claim path that failed (claims answered UNAVAILABLE).",
    ["kind"],
)
REDIS_PERSISTENCE = Gauge(
    "flashclaim_redis_persistence",
    "What the gateway's Redis keeps on disk: 1 for its mode (aof, snapshots, none, unknown).",
    ["mode"],
    multiprocess_mode="livemax",
)
VOLATILE_REDIS_ALLOWED = Gauge(
    "flashclaim_redis_volatile_allowed",
    "1 while claims are served from a Redis that would forget them"
    " (FLASHCLAIM_ALLOW_VOLATILE_REDIS=true).",
    multiprocess_mode="livemax",
)


# Shopping credit: set by the reconciler (``flashclaim reconcile --every``) each round.
CREDIT_DIFFERENCE = Gauge(
    "flashclaim_credit_difference_cents",
    "Cents by which credit balances and the journal disagree (0: the ledger is whole).",
    multiprocess_mode="mostrecent",
)
CREDIT_LIABILITY = Gauge(
    "flashclaim_credit_liability_cents",
    "Shopping credit users hold, by kind (principal, bonus, held for orders).",
    ["kind"],
    multiprocess_mode="mostrecent",
)

# Statistics (gateway/stats/gauges.py): set by the reconciler each round from the rollups
# PostgreSQL keeps (net of refunds), per campaign.
STATS_USE = Gauge(
    "flashclaim_stats_use",
    "A campaign's use as PostgreSQL's rollups hold it, net of refunds: figure is uses,"
    " orders, discount_cents, gmv_cents, paid_cents.",
    ["campaign", "figure"],
    multiprocess_mode="mostrecent",
)
STATS_BUDGET = Gauge(
    "flashclaim_stats_budget_cents",
    "A campaign's money budget: state is planned, spent (drawn by claims) or left.",
    ["campaign", "state"],
    multiprocess_mode="mostrecent",
)


def exposition_registry(metrics_dir: str) -> CollectorRegistry:
    """The registry ``/metrics`` serves: all workers' files in multiprocess mode."""
    if not metrics_dir:
        return REGISTRY
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=metrics_dir)  # type: ignore[no-untyped-call]
    return registry


@lru_cache(maxsize=65_536)
def child(metric: Any, *values: object) -> Any:
    """``metric.labels(*values)``, remembered for the per-request path.

    ``labels()`` converts, validates and takes a lock on every call: a few per cent of a
    worker's CPU in a sold-out herd. Label values here come from bounded sets (campaigns,
    reasons, route templates, statuses), so the cache stays small.
    """
    return metric.labels(*values)


# Using a coupon (gateway/redemption/).
COUPON_USES = Counter(
    "flashclaim_coupon_uses_total",
    "Wallet, quote, lock, confirm, cancel and refund requests answered, by operation and"
    " outcome (LOCKED, CONFIRMED, ... or the refusal's reason).",
    ["operation", "outcome"],
)
for _operation, _outcome in (("lock", "LOCKED"), ("confirm", "CONFIRMED"),
                             ("cancel", "CANCELLED"), ("refund", "REFUNDED")):  # fmt: skip
    COUPON_USES.labels(_operation, _outcome)  # exported at 0 from the start, for the panels
DISCOUNT_CENTS = Counter(
    "flashclaim_discount_cents_total",
    "Discount money of confirmed orders, in cents (refunds not subtracted).",
)
WRITE_THROUGHS = Counter(
    "flashclaim_coupon_write_throughs_total",
    "Claimed coupons a lock stored itself before the consumer did (the consumer's insert"
    " then counts a duplicate): each coupon is stored once.",
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

# Statistics (gateway/stats/) ---------------------------------------------------------------

EXPOSURES = Counter(
    "flashclaim_exposures_total",
    "Views of published campaigns reported by front-ends (POST /api/exposures), counted.",
    ["campaign"],
)
