"""``flashclaim stats``, ``rollup``, ``health`` and ``experiment …``.

Results go to stdout: the funnel as a table, CSV or JSON; experiments and their reports as
a table or JSON. Each command opens Redis and PostgreSQL for its length.
"""

from __future__ import annotations

import csv
import io
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

import msgspec
import orjson

from gateway.campaigns.cache import CampaignCache
from gateway.infra.clients import open_clients
from gateway.infra.clock import SystemClock
from gateway.infra.settings import Settings
from gateway.stats import abuse
from gateway.stats.exposures import rollup as rollup_exposures
from gateway.stats.funnel import FunnelReport, FunnelRow, funnel
from gateway.stats.health import HealthReport, health
from gateway.stats.layers import LayerRow
from gateway.stats.usage import UsageRow

if TYPE_CHECKING:  # the experiment commands load scipy and statsmodels; the others do not
    from gateway.stats.ab_report import ExperimentReport

#: The funnel's columns, in the order tables and CSV show them.
COLUMNS = ("day", "channel", "views", "uniqueViewers", "claims", "claimRate", "valueCents",
           "used", "useRate", "usedValueCents", "refunded", "expired")  # fmt: skip
#: The layers view's columns (``--view layers``).
LAYER_COLUMNS = ("layer", "claims", "used", "useRate", "uses", "orders", "discountCents",
                 "gmvCents", "paidCents", "averagePaidCents", "subsidyRate", "roi")  # fmt: skip
#: The use view's columns (``--view use``).
USE_COLUMNS = ("day", "channel", "uses", "orders", "discountCents", "gmvCents", "paidCents",
               "averagePaidCents", "subsidyRate", "roi")  # fmt: skip


def _json(result: object) -> str:
    return orjson.dumps(msgspec.to_builtins(result), option=orjson.OPT_INDENT_2).decode()


def _cells(row: FunnelRow | UsageRow | LayerRow, columns: Sequence[str]) -> list[str]:
    data = msgspec.to_builtins(row)
    out = []
    for column in columns:
        value = data[column]
        if value is None:
            out.append("" if column != "day" else "total")
        elif isinstance(value, float):
            out.append(f"{value:.4f}")
        else:
            out.append(str(value))
    return out


def render_funnel(result: FunnelReport, fmt: str, view: str = "funnel") -> str:
    """The funnel (``view`` ``funnel``) or the use figures (``use``) as ``table``, ``csv``
    or ``json`` text (JSON: the whole report, both views)."""
    if fmt == "json":
        return _json(result)
    views: dict[str, tuple[Sequence[str], Sequence[FunnelRow | UsageRow | LayerRow]]] = {
        "funnel": (COLUMNS, [*result.rows, result.total]),
        "use": (USE_COLUMNS, [*result.usage.rows, result.usage.total]),
        "layers": (LAYER_COLUMNS, result.layers),
    }
    columns, source = views[view]
    rows = [_cells(row, columns) for row in source]
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows(rows)
        return buffer.getvalue().rstrip("\n")
    widths = [max([len(c), *(len(r[i]) for r in rows)]) for i, c in enumerate(columns)]
    lines = [
        f"campaign {result.campaign_id} ({result.time_zone}); budget"
        f" {_money(result.budget_cents)}, spent {_money(result.budget_spent_cents)},"
        f" left {_money(result.budget_left_cents)}",
        "  ".join(c.rjust(w) for c, w in zip(columns, widths, strict=True)),
    ]
    lines += ["  ".join(v.rjust(w) for v, w in zip(r, widths, strict=True)) for r in rows]
    if view == "use":
        use = result.usage
        failures = ", ".join(f"{k} {v}" for k, v in use.failures.items()) or "none"
        lines.append(f"users {use.users}, coupons per user {_num(use.coupons_per_user)};"
                     f" refused uses: {failures}")  # fmt: skip
    return "\n".join(lines)


def _money(cents: int | None) -> str:
    return "none" if cents is None else f"{cents / 100:,.2f}"


async def stats(
    settings: Settings,
    campaign_id: str,
    first: str | None,
    last: str | None,
    fmt: str,
    view: str = "funnel",
) -> int:
    """Print one campaign's funnel; exit 1 for an unknown campaign or a bad date."""
    async with open_clients(settings) as opened:
        try:
            result = await funnel(opened.pool, campaign_id, first, last)
        except ValueError as exc:
            print(f"flashclaim stats: --from/--to: {exc}", file=sys.stderr)
            return 1
    if result is None:
        print(f"flashclaim stats: no campaign {campaign_id}", file=sys.stderr)
        return 1
    print(render_funnel(result, fmt, view))
    return 0


async def rollup(settings: Settings) -> int:
    """Copy exposures and abuse tallies from Redis into PostgreSQL (``exposure_daily``,
    ``abuse_hourly``): what the reconciler's round does, by hand."""
    clock = SystemClock()
    async with open_clients(settings) as opened:
        cache = CampaignCache(opened.redis, clock, 0, settings.redis_timeout_ms / 1000)
        rows = await rollup_exposures(opened.redis, opened.pool, cache, clock.now_ms())
        abuse_rows = await abuse.rollup(opened.redis, opened.pool, clock.now_ms())
    print(f"rolled up {rows} exposure row(s), {abuse_rows} abuse row(s)")
    return 0


def render_report(result: ExperimentReport) -> str:
    """An experiment report for people: figures per variant, then each comparison."""
    lines = [f"experiment {result.experiment.id}: {result.experiment.name}"]
    if result.experiment.promoted:
        lines.append(f"promoted: {result.experiment.promoted} (everyone sees it)")
    lines.append(f"{'variant':<14}{'weight':>7}{'views':>10}{'claims':>9}{'claim rate':>12}"
                 f"{'used':>8}{'use rate':>10}{'used/claimer':>14}{'GMV/claimer':>13}")  # fmt: skip
    for v in result.variants:
        per_claimer = (
            "-" if v.gmv_per_claimer_cents is None else _money(round(v.gmv_per_claimer_cents))
        )
        lines.append(f"{v.name:<14}{v.weight:>7}{v.views:>10}{v.claims:>9}"
                     f"{_pct(v.claim_rate):>12}{v.used:>8}{_pct(v.use_rate):>10}"
                     f"{_num(v.used_per_claimer):>14}{per_claimer:>13}")  # fmt: skip
    confidence = f"{1 - result.alpha:.0%}"
    for name, comparisons in result.comparisons.items():
        lines.append(f"{name} against {result.control} (difference, {confidence} interval, p):")
        for c in comparisons:
            interval = (f"[{_num(c.ci_low)}, {_num(c.ci_high)}]"
                        if c.ci_low is not None else "[not computable]")  # fmt: skip
            verdict = (f"significant: {c.winner} wins" if c.significant
                       else "not significant")  # fmt: skip
            lines.append(f"  {c.metric:<22}{_num(c.a)} -> {_num(c.b)}  diff {_num(c.difference)}"
                         f" {interval}  p={_num(c.p_value)}  {verdict}")  # fmt: skip
    return "\n".join(lines)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.2%}"


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


async def experiment(
    settings: Settings, action: str, args: Sequence[str], as_json: bool, data: bytes = b""
) -> int:
    """``create`` (``data``: the JSON), ``show ID``, ``report ID``, ``promote ID VARIANT``."""
    from gateway.stats.experiments import ExperimentStore, decode_experiment

    async with open_clients(settings) as opened:
        store = ExperimentStore(opened.pool, opened.redis)
        if action == "create":
            print(_json(await store.create(decode_experiment(data))))
        elif action == "show":
            print(_json(await store.get(args[0])))
        elif action == "promote":
            promoted = await store.promote(args[0], args[1], SystemClock().now_ms())
            print(_json(promoted))
        else:
            from gateway.stats.ab_report import report

            result = await report(opened.pool, await store.get(args[0]))
            print(_json(result) if as_json else render_report(result))
    return 0


def render_health(result: HealthReport) -> str:
    """A health check for people: budget burn per day, use-rate swings, expiring coupons,
    abuse refusals per day."""
    lines = [f"campaign {result.campaign_id}: budget {_money(result.budget_cents)}",
             f"{'day':<12}{'drawn':>14}{'cumulative':>16}{'plan':>16}{'vs plan':>10}"]  # fmt: skip
    for b in result.burn:
        versus = "-" if b.ahead_of_plan is None else f"{b.ahead_of_plan:+.1%}"
        lines.append(f"{b.day:<12}{_money(b.drawn_cents):>14}{_money(b.cumulative_cents):>16}"
                     f"{_money(b.planned_cumulative_cents):>16}{versus:>10}")  # fmt: skip
    lines.append(f"{'claim day':<12}{'claims':>10}{'used':>10}{'use rate':>10}{'change':>10}")
    for u in result.use:
        change = "-" if u.change is None else f"{u.change:+.1%}"
        flag = "  SWING" if u.swing else ""
        lines.append(f"{u.day:<12}{u.claims:>10}{u.used:>10}{_pct(u.use_rate):>10}"
                     f"{change:>10}{flag}")  # fmt: skip
    lines.append(f"unused, expiring within 3 days: {result.expiring_soon};"
                 f" expired unused: {result.expired_unused}")  # fmt: skip
    lines.append("abuse refusals per day (codes: every campaign's):")
    for a in result.abuse:
        lines.append(f"{a.day:<12}" + ", ".join(f"{k} {v}" for k, v in a.refusals.items()))
    return "\n".join(lines)


async def health_check(settings: Settings, campaign_id: str, as_json: bool) -> int:
    """Print one campaign's health check; exit 1 for an unknown campaign."""
    async with open_clients(settings) as opened:
        result = await health(opened.pool, campaign_id, SystemClock().now_ms())
    if result is None:
        print(f"flashclaim health: no campaign {campaign_id}", file=sys.stderr)
        return 1
    print(_json(result) if as_json else render_health(result))
    return 0
