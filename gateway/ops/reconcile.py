"""``flashclaim reconcile``: does Redis agree with PostgreSQL, the outbox and Kafka?

Per published campaign: coupons Redis issued, claims still in the outbox, rows in
PostgreSQL, and the consumer group's lag on the claims topic. After the pipeline drains,
``issued == rows + outbox``; the difference as a share of issued is the drift, and more
than 0.1 % is an alarm. Coupon ids are compared where Redis still knows them (the replay
records of the last ``replay_ttl_s``): *missing* ones were accepted but are neither
stored nor waiting; *extra* ones are stored but Redis never issued them.

``flashclaim reconcile --every 60`` runs as a service (compose and Kubernetes run one):
each round compares the counts only (no id scan: cheap enough for every minute of a
peak) and serves the figures on ``/metrics`` with ``/livez``, for the oversell and drift
alerts; ``flashclaim_reconcile_last_run_timestamp_seconds`` says how fresh they are.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import ClassVar

import asyncpg
import orjson
from aiokafka import TopicPartition
from aiokafka.errors import KafkaError
from prometheus_client import REGISTRY, CollectorRegistry, write_to_textfile
from prometheus_client.core import GaugeMetricFamily
from redis.asyncio import Redis
from redis.exceptions import RedisError

from gateway.campaigns.ops import keys_of
from gateway.campaigns.spec import Campaign, Status
from gateway.campaigns.store import CampaignStore
from gateway.claim.script import ReplayRecord
from gateway.credit import reconcile as credit
from gateway.infra import probes
from gateway.infra.clients import claims_consumer, open_clients
from gateway.infra.clock import SystemClock
from gateway.infra.console import progress
from gateway.infra.settings import Settings
from gateway.infra.signals import stop_on_signals
from gateway.ops.recover import outbox_claims
from gateway.redemption.ledger import UseReport, use_report
from gateway.shards.stock import all_shards
from gateway.stats import gauges as stats_gauges

log = logging.getLogger(__name__)

DRIFT_ALARM = 0.001


@dataclass
class CampaignReport:
    """One campaign's side-by-side figures."""

    campaign_id: str
    stock: int
    issued: int
    outbox: int
    rows: int
    missing: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)
    use: UseReport = field(default_factory=UseReport)  # after the claim (gateway/redemption/)

    @property
    def drift(self) -> float:
        """|issued - (rows + outbox)| as a share of issued."""
        return abs(self.issued - self.rows - self.outbox) / max(self.issued, 1)

    @property
    def oversold(self) -> bool:
        """More coupons recorded than the campaign has stock."""
        return max(self.issued, self.rows) > self.stock

    @property
    def alarm(self) -> bool:
        """Whether this campaign needs a human."""
        found = self.drift > DRIFT_ALARM or self.oversold or bool(self.missing or self.extra)
        return found or self.use.alarm


async def reconcile_campaign(
    pool: asyncpg.Pool, redis: Redis, campaign: Campaign, *, ids: bool = True
) -> CampaignReport:
    """Compare Redis, the outbox and PostgreSQL for one campaign (``ids=False``: the
    counts only, without reading every coupon id)."""
    report = await _claims(pool, redis, campaign, ids=ids)
    report.use = await use_report(pool, campaign.id, campaign.budget_cents)
    return report


async def _claims(
    pool: asyncpg.Pool, redis: Redis, campaign: Campaign, *, ids: bool
) -> CampaignReport:
    shards = all_shards(keys_of(campaign), campaign.stock_shards)  # gateway/shards/: sums
    issued = stock = outbox_length = 0
    for keys in shards:
        issued += int(await redis.hget(keys.counters, "issued") or 0)
        stock += int(await redis.hget(keys.config, "stock") or 0)
        outbox_length += await redis.xlen(keys.outbox)
    stock = stock or campaign.stock
    if not ids:
        rows = await pool.fetchval(
            "SELECT count(*) FROM coupons WHERE campaign_id = $1", campaign.id
        )
        return CampaignReport(campaign.id, stock, issued, outbox_length, rows)
    outbox = [claim.coupon_id for claim in await outbox_claims(redis, campaign)]
    stored = {
        row["coupon_id"]
        for row in await pool.fetch(
            "SELECT coupon_id::text FROM coupons WHERE campaign_id = $1", campaign.id
        )
    }
    known = await _issued_ids(redis, campaign)
    waiting = set(outbox)
    return CampaignReport(
        campaign_id=campaign.id,
        stock=stock,
        issued=issued,
        outbox=len(outbox),
        rows=len(stored),
        missing=sorted(known - stored - waiting),
        extra=sorted(stored - known) if len(known) >= issued else [],
    )


async def _issued_ids(redis: Redis, campaign: Campaign) -> set[str]:
    """Coupon ids in the campaign's replay records (claims of the last replay window)."""
    ids = set()
    for keys in all_shards(keys_of(campaign), campaign.stock_shards):
        async for key in redis.scan_iter(match=keys.request("*"), count=1000):
            record: str | None = await redis.get(key)  # type: ignore[assignment]
            if record:
                ids.add(ReplayRecord.parse(record).coupon_id)
    return ids


async def kafka_lag(settings: Settings) -> int:
    """Messages of the claims topic the consumer group has not committed yet."""
    consumer = claims_consumer(settings, subscribe=False)
    await consumer.start()
    try:
        partitions = consumer.partitions_for_topic(settings.claims_topic) or set()
        tps = [TopicPartition(settings.claims_topic, p) for p in partitions]
        if not tps:
            return 0
        ends = await consumer.end_offsets(tps)
        lag = 0
        for tp in tps:
            committed = await consumer.committed(tp)
            lag += max(0, ends[tp] - (committed or 0))  # tansu's end offsets can lag behind
        return lag
    finally:
        await consumer.stop()


async def reconcile(
    pool: asyncpg.Pool, redis: Redis, campaigns: list[Campaign], *, ids: bool = True
) -> list[CampaignReport]:
    """Reports for every published campaign."""
    return [
        await reconcile_campaign(pool, redis, campaign, ids=ids)
        for campaign in campaigns
        if campaign.status is not Status.DRAFT
    ]


def render(reports: list[CampaignReport], lag: int | None) -> str:
    """A table for humans, one line per campaign, then the verdict."""
    lines = [
        f"{'campaign':<28}{'stock':>9}{'issued':>9}{'outbox':>8}{'rows':>9}"
        f"{'drift':>9}{'missing':>9}{'extra':>7}  verdict"
    ]
    for r in reports:
        verdict = "OVERSOLD" if r.oversold else "DRIFT" if r.alarm else "ok"
        lines.append(
            f"{r.campaign_id:<28}{r.stock:>9}{r.issued:>9}{r.outbox:>8}{r.rows:>9}"
            f"{r.drift:>9.3%}{len(r.missing):>9}{len(r.extra):>7}  {verdict}"
        )
        u = r.use
        lines.append(
            f"  use: locked {u.locked}, used {u.used}, refunded {u.refunded}, expired"
            f" {u.expired}, voided {u.voided}, discount {u.discount_cents} cents"
            + (f" of a {u.budget_cents} budget" if u.budget_cents is not None else "")
            + f", drift {u.drift:.3%}"
            + (" OVER BUDGET" if u.over_budget else " DRIFT" if u.alarm else "")
        )
        lines += [f"  missing {coupon}" for coupon in r.missing[:20]]
        lines += [f"  extra   {coupon}" for coupon in r.extra[:20]]
    if lag is not None:
        lines.append(
            f"kafka consumer lag: {lag} message(s)"
            + ("; figures may still be in flight" if lag else "")
        )
    return "\n".join(lines)


def to_json(reports: list[CampaignReport], lag: int | None) -> bytes:
    """The figures as one JSON document (``--json``)."""
    campaigns = [
        {
            **asdict(r),
            "drift": r.drift,
            "oversold": r.oversold,
            "alarm": r.alarm,
            "useDrift": r.use.drift,
        }
        for r in reports
    ]
    return orjson.dumps(
        {"campaigns": campaigns, "kafkaLag": lag, "alarm": any(r.alarm for r in reports)},
        option=orjson.OPT_INDENT_2,
    )


class Figures:
    """The last reconciliation as Prometheus gauges (a collector: one consistent set)."""

    _FIGURES: ClassVar[dict[str, tuple[str, str]]] = {
        "flashclaim_reconcile_drift_ratio": ("Drift between Redis and the record.", "drift"),
        "flashclaim_reconcile_issued": ("Coupons issued per Redis.", "issued"),
        "flashclaim_reconcile_rows": ("Coupons stored in PostgreSQL.", "rows"),
        "flashclaim_reconcile_outbox": ("Claims waiting in the outbox.", "outbox"),
        "flashclaim_reconcile_stock": ("Stock of the campaign.", "stock"),
        "flashclaim_reconcile_used": ("Coupons used (PostgreSQL).", "use.used"),
        "flashclaim_reconcile_locked": ("Coupons locked to orders.", "use.locked"),
        "flashclaim_reconcile_refunded": ("Coupons refunded, wholly or in part.", "use.refunded"),
        "flashclaim_reconcile_expired": ("Coupons recorded expired.", "use.expired"),
        "flashclaim_reconcile_voided": ("Coupons voided by operators.", "use.voided"),
        "flashclaim_reconcile_discount_cents": ("Discount money spent.", "use.discount_cents"),
        "flashclaim_reconcile_use_drift_ratio": (
            "Coupons whose row disagrees with their audit trail, as a share.",
            "use.drift",
        ),
    }

    def __init__(self) -> None:
        self.reports: list[CampaignReport] = []
        self.lag: int | None = None
        self.at: float | None = None

    def update(self, reports: list[CampaignReport], lag: int | None, at: float) -> None:
        """Replace the figures with a new round's."""
        self.reports, self.lag, self.at = reports, lag, at

    def collect(self) -> Iterator[GaugeMetricFamily]:
        """The gauges, for a registry."""
        for name, (doc, attribute) in self._FIGURES.items():
            family = GaugeMetricFamily(name, doc, labels=["campaign"])
            for report in self.reports:
                value: object = report
                for part in attribute.split("."):
                    value = getattr(value, part)
                family.add_metric([report.campaign_id], float(value))  # type: ignore[arg-type]
            yield family
        alarm = GaugeMetricFamily(
            "flashclaim_reconcile_alarm",
            "1 when drift passed 0.1 % or stock was oversold.",
            labels=["campaign"],
        )
        for report in self.reports:
            alarm.add_metric([report.campaign_id], float(report.alarm))
        yield alarm
        if self.lag is not None:
            yield GaugeMetricFamily(
                "flashclaim_reconcile_kafka_lag", "Consumer lag at reconciliation.", self.lag
            )
        if self.at is not None:
            yield GaugeMetricFamily(
                "flashclaim_reconcile_last_run_timestamp_seconds",
                "When the last reconciliation finished (Unix time).",
                self.at,
            )


def write_textfile(path: str, reports: list[CampaignReport], lag: int | None) -> None:
    """The figures in Prometheus text format, for a node-exporter textfile collector."""
    figures = Figures()
    figures.update(reports, lag, time.time())
    registry = CollectorRegistry()
    registry.register(figures)
    write_to_textfile(path, registry)


async def command(
    settings: Settings, *, textfile: str = "", with_kafka: bool = True, as_json: bool = False
) -> int:
    """``flashclaim reconcile``: print the table or JSON (and the textfile); 1 on an alarm."""
    async with open_clients(settings) as opened:
        campaigns = await CampaignStore(opened.pool).all()
        progress(f"reconciling {len(campaigns)} campaign(s)")
        reports = await reconcile(opened.pool, opened.redis, campaigns)
    if with_kafka:
        progress("reading the consumer group's lag from Kafka")
    lag = await kafka_lag(settings) if with_kafka else None
    if as_json:
        print(to_json(reports, lag).decode())
    else:
        print(render(reports, lag))
    if textfile:
        write_textfile(textfile, reports, lag)
    return 1 if any(r.alarm for r in reports) else 0


def watch(settings: Settings, *, every_s: float, with_kafka: bool = True) -> int:
    """``flashclaim reconcile --every N``: reconcile every N seconds until SIGTERM, serving
    the figures on ``/metrics`` (and ``/livez``) at ``FLASHCLAIM_METRICS_PORT``."""
    import uvloop

    figures = Figures()
    REGISTRY.register(figures)
    uvloop.run(probes.with_probes(settings.metrics_port, _rounds(settings, figures, every_s,
                                                                 with_kafka)))  # fmt: skip
    return 0


async def _credit(pool: asyncpg.Pool) -> None:
    """The shopping-credit ledger's figures, in the same round (gateway/credit/)."""
    try:
        report = await credit.reconcile(pool)
    except (asyncpg.PostgresError, OSError) as exc:
        log.warning("credit reconciliation failed (%s)", exc)
        return
    credit.publish(report)
    if not report.ok:
        log.warning("credit ledger difference: %s", credit.render(report))


async def _rounds(settings: Settings, figures: Figures, every_s: float, with_kafka: bool) -> None:
    stop = stop_on_signals()
    async with open_clients(settings) as opened:
        while not stop.is_set():
            try:
                campaigns = await CampaignStore(opened.pool).all()
                reports = await reconcile(opened.pool, opened.redis, campaigns, ids=False)
                lag = await kafka_lag(settings) if with_kafka else None
            except (RedisError, asyncpg.PostgresError, KafkaError, OSError) as exc:
                log.warning("reconciliation failed (%s); the figures keep their last values", exc)
            else:
                figures.update(reports, lag, time.time())
                await _credit(opened.pool)
                await stats_gauges.refresh(opened.pool, opened.redis, SystemClock(),
                                           settings.redis_timeout_ms / 1000)  # fmt: skip
                for report in reports:
                    if report.alarm:
                        log.warning("reconciliation alarm: %s", asdict(report))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), every_s)
