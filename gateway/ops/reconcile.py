"""``flashclaim reconcile``: does Redis agree with PostgreSQL, the outbox and Kafka?

Per published campaign: coupons Redis issued, claims still in the outbox, rows in
PostgreSQL, and the consumer group's lag on the claims topic. After the pipeline drains,
``issued == rows + outbox``; the difference as a share of issued is the drift, and more
than 0.1 % is an alarm. Coupon ids are compared where Redis still knows them (the replay
records of the last ``replay_ttl_s``): *missing* ones were accepted but are neither
stored nor waiting; *extra* ones are stored but Redis never issued them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import asyncpg
from aiokafka import TopicPartition
from redis.asyncio import Redis

from gateway.campaigns.ops import keys_of
from gateway.campaigns.spec import Campaign, Status
from gateway.campaigns.store import CampaignStore
from gateway.claim.script import ReplayRecord
from gateway.infra.clients import claims_consumer, open_clients
from gateway.infra.settings import Settings
from gateway.ops.recover import outbox_claims

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
        return self.drift > DRIFT_ALARM or self.oversold or bool(self.missing or self.extra)


async def reconcile_campaign(
    pool: asyncpg.Pool, redis: Redis, campaign: Campaign
) -> CampaignReport:
    """Compare Redis, the outbox and PostgreSQL for one campaign."""
    keys = keys_of(campaign)
    issued = int(await redis.hget(keys.counters, "issued") or 0)
    stock = int(await redis.hget(keys.config, "stock") or campaign.stock)
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
    pattern = keys_of(campaign).request("*")
    ids = set()
    async for key in redis.scan_iter(match=pattern, count=1000):
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
    pool: asyncpg.Pool, redis: Redis, campaigns: list[Campaign]
) -> list[CampaignReport]:
    """Reports for every published campaign."""
    return [
        await reconcile_campaign(pool, redis, campaign)
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
        lines += [f"  missing {coupon}" for coupon in r.missing[:20]]
        lines += [f"  extra   {coupon}" for coupon in r.extra[:20]]
    if lag is not None:
        lines.append(
            f"kafka consumer lag: {lag} message(s)"
            + ("; figures may still be in flight" if lag else "")
        )
    return "\n".join(lines)


def write_textfile(path: str, reports: list[CampaignReport], lag: int | None) -> None:
    """The figures in Prometheus text format, for a node-exporter textfile collector."""
    from prometheus_client import CollectorRegistry, Gauge, write_to_textfile

    registry = CollectorRegistry()
    labels = ["campaign"]
    figures = {
        "flashclaim_reconcile_drift_ratio": ("Drift between Redis and the record.", "drift"),
        "flashclaim_reconcile_issued": ("Coupons issued per Redis.", "issued"),
        "flashclaim_reconcile_rows": ("Coupons stored in PostgreSQL.", "rows"),
        "flashclaim_reconcile_outbox": ("Claims waiting in the outbox.", "outbox"),
        "flashclaim_reconcile_stock": ("Stock of the campaign.", "stock"),
    }
    for name, (doc, attribute) in figures.items():
        gauge = Gauge(name, doc, labels, registry=registry)
        for report in reports:
            gauge.labels(report.campaign_id).set(getattr(report, attribute))
    alarm = Gauge(
        "flashclaim_reconcile_alarm",
        "1 when drift passed 0.1 % or stock was oversold.",
        labels,
        registry=registry,
    )
    for report in reports:
        alarm.labels(report.campaign_id).set(int(report.alarm))
    if lag is not None:
        Gauge(
            "flashclaim_reconcile_kafka_lag", "Consumer lag at reconciliation.", registry=registry
        ).set(lag)
    write_to_textfile(path, registry)


async def command(settings: Settings, *, textfile: str = "", with_kafka: bool = True) -> int:
    """``flashclaim reconcile``: print the table (and the textfile); 1 on an alarm."""
    async with open_clients(settings) as opened:
        reports = await reconcile(opened.pool, opened.redis, await CampaignStore(opened.pool).all())
    lag = await kafka_lag(settings) if with_kafka else None
    print(render(reports, lag))
    if textfile:
        write_textfile(textfile, reports, lag)
    return 1 if any(r.alarm for r in reports) else 0
