"""Prometheus metrics of the gateway, correct across several worker processes.

With ``FLASHCLAIM_METRICS_DIR`` set, ``flashclaim serve`` points prometheus-client's
multiprocess mode at that directory (wiped at start) before any worker starts; every
worker then answers ``/metrics`` with the sum over all live workers. Buckets reach well
below 5 ms, where the claim path lives. Label values are bounded: campaign ids only of
published campaigns, routes as templates, reasons from the ``Reason`` enum.
"""

from __future__ import annotations

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram
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
REDIS_ERRORS = Counter(
    "flashclaim_redis_errors_total",
    "Redis calls of the claim path that failed (claims answered UNAVAILABLE).",
    ["kind"],
)


def exposition_registry(metrics_dir: str) -> CollectorRegistry:
    """The registry ``/metrics`` serves: all workers' files in multiprocess mode."""
    if not metrics_dir:
        return REGISTRY
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=metrics_dir)  # type: ignore[no-untyped-call]
    return registry
