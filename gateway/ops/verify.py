"""``flashclaim verify``: the verdict after a load test (or a real night).

Waits until the pipeline has drained (outboxes empty, consumer lag zero), then checks every
chosen campaign against the invariants that must hold whatever the traffic was:

* no oversell: coupons issued (Redis) and rows (PostgreSQL) within the stock;
* nothing lost: every accepted claim has its row; nothing extra: every row was accepted;
* no duplicates: one row per requestId;
* no user past the per-user or per-user-per-day limit, no device past its limit;
* the money budget, in cents, not exceeded;
* the claim rules' counters (gateway/rules/): no channel past its quota, no user past the
  per-user money cap, no campaign day past the per-day money budget;
* no redeem code naming two coupons (``coupons.code_hash``).

It prints one table row per campaign, with the claims refused by reason when a gateway's
``/metrics`` is given, and exits non-zero when any invariant is broken.
"""

from __future__ import annotations

import urllib.request
from collections import Counter
from dataclasses import dataclass, field

import asyncpg
import orjson
from prometheus_client.parser import text_string_to_metric_families
from redis.asyncio import Redis

from gateway.campaigns.spec import Campaign, Status
from gateway.campaigns.store import CampaignStore
from gateway.infra.clients import open_clients
from gateway.infra.console import progress
from gateway.infra.settings import Settings
from gateway.ops.drain import drain
from gateway.ops.reconcile import reconcile_campaign


@dataclass
class Verdict:
    """One campaign's figures after a run, and what (if anything) broke."""

    campaign_id: str
    stock: int
    accepted: int
    rows: int
    budget_cents: int
    budget_used_cents: int
    refused: Counter[str] = field(default_factory=Counter)
    duplicates: int = 0
    lost: int = 0
    extra: int = 0
    users_over_limit: int = 0
    users_over_daily_limit: int = 0
    devices_over_limit: int = 0
    channels_over_quota: int = 0
    users_over_money_cap: int = 0
    days_over_budget: int = 0
    codes_used_twice: int = 0  # redeem codes naming more than one coupon (coupons.code_hash)

    @property
    def problems(self) -> list[str]:
        """The invariants this campaign broke, in words."""
        found = []
        if max(self.accepted, self.rows) > self.stock:
            found.append(f"oversold: {max(self.accepted, self.rows)} > stock {self.stock}")
        if self.budget_cents and self.budget_used_cents > self.budget_cents:
            found.append(f"over budget: {self.budget_used_cents} > {self.budget_cents} cents")
        for name in (
            "duplicates",
            "lost",
            "extra",
            "users_over_limit",
            "users_over_daily_limit",
            "devices_over_limit",
            "channels_over_quota",
            "users_over_money_cap",
            "days_over_budget",
            "codes_used_twice",
        ):
            if count := getattr(self, name):
                found.append(f"{name.replace('_', ' ')}: {count}")
        return found


async def verify_campaign(pool: asyncpg.Pool, redis: Redis, campaign: Campaign) -> Verdict:
    """Check one campaign; call after the pipeline has drained."""
    report = await reconcile_campaign(pool, redis, campaign)
    row = await pool.fetchrow(
        """
        SELECT count(*) - count(DISTINCT request_id) AS duplicates,
               coalesce(sum(value_cents), 0) AS used,
               count(code_hash) - count(DISTINCT code_hash) AS codes_twice
          FROM coupons WHERE campaign_id = $1
        """,
        campaign.id,
    )
    assert row is not None
    verdict = Verdict(
        campaign_id=campaign.id,
        stock=report.stock,
        accepted=report.issued,
        rows=report.rows,
        budget_cents=campaign.budget_cents or 0,
        budget_used_cents=int(row["used"]),
        duplicates=int(row["duplicates"]),
        codes_used_twice=int(row["codes_twice"]),
        lost=max(len(report.missing), report.issued - report.rows - report.outbox),
        extra=max(len(report.extra), report.rows - report.issued),
        users_over_limit=await _over(pool, campaign, "user_id", campaign.per_user_limit),
        users_over_daily_limit=await _over(
            pool,
            campaign,
            "user_id, (claimed_at AT TIME ZONE $3)::date",
            campaign.per_user_daily_limit or 0,
        ),
        devices_over_limit=await _over(pool, campaign, "device_id", campaign.per_device_limit or 0),
    )
    (
        verdict.channels_over_quota,
        verdict.users_over_money_cap,
        verdict.days_over_budget,
    ) = await _rules_broken(pool, campaign)
    return verdict


#: What a money cap or budget measures over a group of rows.
MONEY = "sum(value_cents)"


async def _rules_broken(pool: asyncpg.Pool, campaign: Campaign) -> tuple[int, int, int]:
    """How many channels, users and days of the campaign's rows break its claim rules."""
    rows = await pool.fetch(
        "SELECT channel, count(*) AS n FROM coupons WHERE campaign_id = $1 GROUP BY channel",
        campaign.id,
    )
    quotas = campaign.channel_quotas
    over_quota = sum(1 for r in rows if r["channel"] in quotas and r["n"] > quotas[r["channel"]])
    return (
        over_quota,
        await _over(pool, campaign, "user_id", campaign.per_user_money_cap_cents or 0, MONEY),
        await _over(
            pool,
            campaign,
            "(claimed_at AT TIME ZONE $3)::date",
            campaign.daily_budget_cents or 0,
            MONEY,
        ),
    )


async def _over(
    pool: asyncpg.Pool, campaign: Campaign, group_by: str, limit: int, measure: str = "count(*)"
) -> int:
    """How many groups of the campaign's rows (users, user-days, devices) exceed ``limit``
    by ``measure``: the number of coupons, or ``sum(value_cents)`` for money caps."""
    if limit <= 0:
        return 0
    query = (
        f"SELECT count(*) FROM (SELECT 1 FROM coupons WHERE campaign_id = $1"
        f" GROUP BY {group_by} HAVING {measure} > $2) AS over"
    )
    args: list[object] = [campaign.id, limit]
    if "$3" in group_by:
        args.append(campaign.time_zone)
    return int(await pool.fetchval(query, *args))


def refused_by_reason(metrics_text: str) -> dict[str, Counter[str]]:
    """``flashclaim_claims_total`` per campaign and reason, ACCEPTED left out."""
    refused: dict[str, Counter[str]] = {}
    for family in text_string_to_metric_families(metrics_text):
        if family.name != "flashclaim_claims":
            continue
        for sample in family.samples:
            if sample.name.endswith("_total") and sample.labels["reason"] != "ACCEPTED":
                by_reason = refused.setdefault(sample.labels["campaign"], Counter())
                by_reason[sample.labels["reason"]] += int(sample.value)
    return refused


def fetch_metrics(url: str) -> str:
    """The text of a gateway's ``/metrics`` (summed across its workers)."""
    with urllib.request.urlopen(url, timeout=5) as response:
        return str(response.read().decode())


def render(verdicts: list[Verdict]) -> str:
    """The verdict table: one row per campaign, then the broken invariants, if any."""
    header = (
        f"{'campaign':<28} {'stock':>8} {'accepted':>8} {'rows':>8} {'dup':>4} {'lost':>4}"
        f" {'users>':>6} {'devs>':>5} {'budget used':>14}  refused by reason"
    )
    lines = [header, "-" * len(header)]
    for v in verdicts:
        budget = f"{v.budget_used_cents}/{v.budget_cents}" if v.budget_cents else "-"
        refused = ", ".join(f"{reason} {n}" for reason, n in v.refused.most_common()) or "-"
        lines.append(
            f"{v.campaign_id:<28} {v.stock:>8} {v.accepted:>8} {v.rows:>8} {v.duplicates:>4}"
            f" {v.lost:>4} {v.users_over_limit + v.users_over_daily_limit:>6}"
            f" {v.devices_over_limit:>5} {budget:>14}  {refused}"
        )
    broken = [f"  {v.campaign_id}: {problem}" for v in verdicts for problem in v.problems]
    lines.append("")
    lines.append(f"VERDICT: {'FAIL' if broken else 'PASS'} ({len(verdicts)} campaigns)")
    lines.extend(broken)
    return "\n".join(lines)


@dataclass
class Verification:
    """The verdict over all chosen campaigns."""

    prefix: str
    verdicts: list[Verdict]
    not_stored: int  # accepted claims still not in PostgreSQL when the wait ended
    wait_s: float
    note: str = ""

    @property
    def ok(self) -> bool:
        """PASS: something was checked, everything drained, no invariant broken."""
        return (
            bool(self.verdicts)
            and not self.not_stored
            and not any(v.problems for v in self.verdicts)
        )

    def render(self) -> str:
        """The table and the verdict, for people."""
        if not self.verdicts:  # a mistyped prefix must not pass as a clean run
            return f"VERDICT: FAIL (no published campaign id starts with {self.prefix!r})"
        text = render(self.verdicts) + self.note
        if self.not_stored:
            text += (
                f"\n  pipeline not drained after {self.wait_s:.0f} s:"
                f" {self.not_stored} accepted claims not stored"
            )
        return text

    def to_json(self) -> bytes:
        """The same, as one JSON document (``--json``)."""
        campaigns = [{**vars(verdict), "problems": verdict.problems} for verdict in self.verdicts]
        return orjson.dumps(
            {
                "verdict": "PASS" if self.ok else "FAIL",
                "campaigns": campaigns,
                "notStored": self.not_stored,
                "note": self.note.strip() or None,
            },
            option=orjson.OPT_INDENT_2,
        )


async def verify(
    settings: Settings, *, prefix: str = "", metrics_url: str = "", wait_s: float = 60.0
) -> Verification:
    """Drain, then check every published campaign whose id starts with ``prefix``."""
    progress(f"waiting up to {wait_s:.0f} s for every accepted claim to reach PostgreSQL")
    left = await drain(settings, relay=False, timeout_s=wait_s, report=_waiting)
    async with open_clients(settings) as opened:
        campaigns = [
            campaign
            for campaign in await CampaignStore(opened.pool).all()
            if campaign.id.startswith(prefix) and campaign.status is not Status.DRAFT
        ]
        progress(f"checking {len(campaigns)} campaign(s)")
        verdicts = [
            await verify_campaign(opened.pool, opened.redis, campaign) for campaign in campaigns
        ]
    note = ""
    if metrics_url:
        try:
            refused = refused_by_reason(fetch_metrics(metrics_url))
        except OSError as exc:  # the verdict stands without the refusal counts
            refused, note = {}, f"\n  refusals unknown: {metrics_url} did not answer ({exc})"
        for verdict in verdicts:
            verdict.refused = refused.get(verdict.campaign_id, Counter())
    return Verification(prefix, verdicts, left, wait_s, note)


def _waiting(left: int) -> None:
    progress(f"{left} accepted claim(s) not stored yet")


async def command(
    settings: Settings, *, prefix: str, metrics_url: str, wait_s: float, as_json: bool = False
) -> int:
    """``flashclaim verify``: print the verdict (table or JSON); 0 for PASS, 1 for FAIL."""
    result = await verify(settings, prefix=prefix, metrics_url=metrics_url, wait_s=wait_s)
    print(result.to_json().decode() if as_json else result.render())
    return 0 if result.ok else 1
