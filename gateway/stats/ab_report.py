"""The report of an A/B experiment: each variant's figures, each against the control.

Per variant, from its campaign: claim rate (claims / views: 领取率) and use rate
(used / claims: 核销率), compared with the two-proportion z-test; coupons used per claiming
user, and GMV per claiming user (the original price of the orders that used the variant's
coupons, net of refunds, from ``usage_users``), each compared with Welch's t-test on the
per-user values (a claimer who bought nothing counts 0). Loading this module loads scipy and
statsmodels (about a second), so only the report imports it.
"""

from __future__ import annotations

import asyncpg
import msgspec

from gateway.stats.abtest import ALPHA, Comparison, two_proportions, welch
from gateway.stats.experiments import Experiment, Variant


class VariantFigures(msgspec.Struct, rename="camel"):
    """One variant's figures over the whole experiment."""

    name: str
    campaign_id: str
    weight: int
    views: int
    claims: int
    claimers: int
    used: int
    claim_rate: float | None
    use_rate: float | None
    used_per_claimer: float | None
    gmv_cents: int  # net of refunds
    gmv_per_claimer_cents: float | None


class ExperimentReport(msgspec.Struct, rename="camel"):
    """Every variant's figures and each variant against the control."""

    experiment: Experiment
    control: str
    variants: list[VariantFigures]
    comparisons: dict[str, list[Comparison]]  # variant name -> its comparisons
    alpha: float


_VIEWS = """SELECT coalesce(sum(views), 0) FROM exposure_daily
WHERE campaign_id = $1 AND channel <> '*'"""
_PER_USER = """SELECT count(*) FILTER (WHERE k.status = 'used') AS used,
       coalesce(max(u.gmv_cents), 0) AS gmv
FROM coupons k LEFT JOIN usage_users u ON u.campaign_id = k.campaign_id AND u.user_id = k.user_id
WHERE k.campaign_id = $1 GROUP BY k.user_id"""


class PerUser(msgspec.Struct):
    """Each claiming user's values, for the Welch tests."""

    used: list[float]
    gmv_cents: list[float]


async def _figures(
    conn: asyncpg.pool.PoolConnectionProxy, variant: Variant
) -> tuple[VariantFigures, PerUser]:
    views = int(await conn.fetchval(_VIEWS, variant.campaign_id))
    rows = await conn.fetch(_PER_USER, variant.campaign_id)
    used_by_user = [float(r["used"]) for r in rows]
    gmv_by_user = [float(r["gmv"]) for r in rows]
    gmv = int(sum(gmv_by_user))
    claims = int(await conn.fetchval(
        "SELECT count(*) FROM coupons WHERE campaign_id = $1", variant.campaign_id))  # fmt: skip
    used = int(sum(used_by_user))
    figures = VariantFigures(
        name=variant.name,
        campaign_id=variant.campaign_id,
        weight=variant.weight,
        views=views,
        claims=claims,
        claimers=len(used_by_user),
        used=used,
        claim_rate=round(claims / views, 6) if views else None,
        use_rate=round(used / claims, 6) if claims else None,
        used_per_claimer=round(used / len(used_by_user), 6) if used_by_user else None,
        gmv_cents=gmv,
        gmv_per_claimer_cents=round(gmv / len(rows), 6) if rows else None,
    )
    return figures, PerUser(used_by_user, gmv_by_user)


def _rate(metric: str, hits_a: int, n_a: int, hits_b: int, n_b: int, alpha: float) -> Comparison:
    """A rate comparison; a side with more hits than trials (claims from pages that report
    no views) has no rate to test and is treated as empty."""
    if hits_a > n_a:
        hits_a = n_a = 0
    if hits_b > n_b:
        hits_b = n_b = 0
    return two_proportions(metric, hits_a, n_a, hits_b, n_b, alpha)


async def report(
    pool: asyncpg.Pool, experiment: Experiment, alpha: float = ALPHA
) -> ExperimentReport:
    """Each variant's figures and its comparisons with the control (the first variant)."""
    async with pool.acquire() as conn:
        measured = [await _figures(conn, variant) for variant in experiment.variants]
    (control, control_users), *others = measured
    comparisons = {
        figures.name: [
            _rate(
                "claim_rate", control.claims, control.views, figures.claims, figures.views, alpha
            ),
            _rate("use_rate", control.used, control.claims, figures.used, figures.claims, alpha),
            welch("used_per_claimer", control_users.used, users.used, alpha),
            welch("gmv_per_claimer_cents", control_users.gmv_cents, users.gmv_cents, alpha),
        ]
        for figures, users in others
    }
    return ExperimentReport(
        experiment=experiment,
        control=control.name,
        variants=[figures for figures, _ in measured],
        comparisons=comparisons,
        alpha=alpha,
    )
