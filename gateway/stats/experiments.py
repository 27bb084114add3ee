"""A/B experiments: sets of campaign variants with weights, their report, their winner.

An experiment names two or more variants, each a campaign (threshold 200 vs 180, face
value, validity 24 h vs 72 h, ...) and a weight. The first variant is the control every
other is compared with. A user's variant is ``bucketing.pick`` of (experiment, user);
``promote`` sends everyone to one variant from then on. PostgreSQL holds experiments
(``experiments``, migration 0030); Redis holds a copy the claim path reads
(``keys.experiment``, and ``keys.EXPERIMENT_OF``: campaign id -> experiment id).

The report (``ab_report.py``) compares each variant with the control.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import asyncpg
import msgspec
from redis.asyncio import Redis

from gateway import keys
from gateway.identifiers import CampaignId, Label
from gateway.stats import bucketing
from gateway.stats.errors import ExperimentError, ExperimentNotFound


class Variant(msgspec.Struct, rename="camel", forbid_unknown_fields=True, frozen=True):
    """One arm: a name, its campaign, its share of users."""

    name: Label
    campaign_id: CampaignId
    weight: Annotated[int, msgspec.Meta(ge=1, le=10_000)] = 1


class Experiment(msgspec.Struct, rename="camel", forbid_unknown_fields=True, frozen=True):
    """An experiment as operators write it (``promoted`` is set by ``promote``)."""

    id: CampaignId
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=120)]
    variants: Annotated[list[Variant], msgspec.Meta(min_length=2, max_length=10)]
    promoted: str | None = None

    def __post_init__(self) -> None:
        if len({v.name for v in self.variants}) != len(self.variants):
            raise ValueError("variants: names must differ")
        if len({v.campaign_id for v in self.variants}) != len(self.variants):
            raise ValueError("variants: each variant needs a campaign of its own")

    def variant_for(self, user_id: str) -> Variant:
        """The variant ``user_id`` sees: the promoted one, else the hash's pick."""
        if self.promoted is not None:
            return next(v for v in self.variants if v.name == self.promoted)
        return self.bucketed(user_id)

    def bucketed(self, user_id: str) -> Variant:
        """The variant the hash gives ``user_id``, whatever was promoted."""
        return self.variants[bucketing.pick(self.id, user_id, [v.weight for v in self.variants])]


def decode_experiment(data: bytes) -> Experiment:
    """An experiment from JSON; ``ExperimentError`` says what is wrong."""
    try:
        return msgspec.json.decode(data, type=Experiment)
    except (msgspec.ValidationError, msgspec.DecodeError, UnicodeDecodeError) as exc:
        raise ExperimentError(str(exc)) from None


class ExperimentStore:
    """Experiments in PostgreSQL, mirrored to Redis for the claim path."""

    def __init__(self, pool: asyncpg.Pool, redis: Redis) -> None:
        self.pool = pool
        self.redis = redis

    async def create(self, experiment: Experiment) -> Experiment:
        """Store a new experiment and publish it; its campaigns must exist and belong to
        no other experiment."""
        ids = [v.campaign_id for v in experiment.variants]
        known = {r["id"] for r in await self.pool.fetch(
            "SELECT id FROM campaigns WHERE id = ANY($1::text[])", ids)}  # fmt: skip
        if missing := [i for i in ids if i not in known]:
            raise ExperimentError(f"no campaign {', '.join(missing)}")
        taken = await self.redis.hmget(keys.EXPERIMENT_OF, ids)
        if busy := [i for i, owner in zip(ids, taken, strict=True) if owner]:
            raise ExperimentError(f"campaign {', '.join(busy)} is in another experiment")
        variants = msgspec.json.encode(experiment.variants).decode()
        try:
            await self.pool.execute(
                "INSERT INTO experiments (id, name, variants) VALUES ($1, $2, $3::jsonb)",
                experiment.id,
                experiment.name,
                variants,
            )
        except asyncpg.UniqueViolationError:
            raise ExperimentError(f"experiment {experiment.id} exists already") from None
        await self._publish(experiment)
        return experiment

    async def get(self, experiment_id: str) -> Experiment:
        """The experiment, or ``ExperimentNotFound``."""
        row = await self.pool.fetchrow("SELECT * FROM experiments WHERE id = $1", experiment_id)
        if row is None:
            raise ExperimentNotFound(experiment_id)
        return Experiment(
            id=row["id"],
            name=row["name"],
            variants=msgspec.json.decode(row["variants"], type=list[Variant]),
            promoted=row["promoted"],
        )

    async def promote(self, experiment_id: str, variant: str, now_ms: int) -> Experiment:
        """Send every user to ``variant`` from now on."""
        experiment = await self.get(experiment_id)
        if variant not in {v.name for v in experiment.variants}:
            raise ExperimentError(f"experiment {experiment_id} has no variant {variant}")
        await self.pool.execute(
            "UPDATE experiments SET promoted = $2, promoted_at = $3 WHERE id = $1",
            experiment_id,
            variant,
            datetime.fromtimestamp(now_ms / 1000, UTC),
        )
        promoted = msgspec.structs.replace(experiment, promoted=variant)
        await self._publish(promoted)
        return promoted

    async def _publish(self, experiment: Experiment) -> None:
        """The document first, then the index that points at it (two slots on a Redis
        Cluster, so no transaction: a reader never finds the index without its document)."""
        await self.redis.set(keys.experiment(experiment.id), msgspec.json.encode(experiment))
        await self.redis.hset(
            keys.EXPERIMENT_OF, mapping={v.campaign_id: experiment.id for v in experiment.variants}
        )
