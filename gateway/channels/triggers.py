"""Automatic triggers: rules that grant a campaign's coupon without a click.

Two kinds of rule (``migrations/0022_trigger_rules.sql``, managed with the admin API):

* ``event``: "on event X matching these conditions, grant campaign Y" (cart_abandoned,
  delivery_late, ...). Events come from ``POST /api/events`` and from a Kafka topic.
* ``skydrop``: campaign Y may fall when the app opens (``POST /api/skydrop/open``), with a
  probability and an optional "first N opens" cap.

Conditions compare the event's attributes (or, for sky-drop, the open's ``channel``,
``city`` and the token's ``newUser`` and ``level``): a value must be equal; an object
``{"min": a, "max": b}`` is a numeric range. Every grant is a claim through the claim path
with a requestId derived from its cause (event id and rule; the open's requestId and
rule), so the same event delivered twice, or an open retried, grants once.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from typing import Annotated, Literal

import asyncpg
import msgspec
import orjson

from gateway.identifiers import CampaignId, whole

RuleId = Annotated[str, msgspec.Meta(pattern=whole(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}"))]
AttributeName = Annotated[str, msgspec.Meta(pattern=whole(r"[A-Za-z][A-Za-z0-9_]{0,31}"))]
Scalar = str | int | float | bool
EventType = Annotated[str, msgspec.Meta(pattern=whole(r"([a-z0-9][a-z0-9_-]{0,31})?"))]


class Range(msgspec.Struct, forbid_unknown_fields=True):
    """A numeric range, both ends included (either may be left out)."""

    min: float | None = None
    max: float | None = None


Condition = Scalar | Range


class TriggerRule(msgspec.Struct, rename="camel", forbid_unknown_fields=True, kw_only=True):
    """One rule: when it fires and which campaign it grants."""

    rule_id: RuleId
    kind: Literal["event", "skydrop"]
    campaign_id: CampaignId
    event_type: EventType = ""
    conditions: Annotated[dict[AttributeName, Condition], msgspec.Meta(max_length=16)] = (
        msgspec.field(default_factory=dict)
    )
    probability: Annotated[float, msgspec.Meta(ge=0, le=1)] = 1.0
    first_opens: Annotated[int, msgspec.Meta(ge=0, le=1_000_000)] = 0

    def __post_init__(self) -> None:
        if (self.kind == "event") != bool(self.event_type):
            raise ValueError("eventType is required for event rules, and only for them")

    def matches(self, facts: dict[str, Scalar]) -> bool:
        """Whether ``facts`` meet every condition."""
        for name, wanted in self.conditions.items():
            value = facts.get(name)
            if isinstance(wanted, Range):
                if isinstance(value, bool) or not isinstance(value, int | float):
                    return False
                if (wanted.min is not None and value < wanted.min) or (
                    wanted.max is not None and value > wanted.max
                ):
                    return False
            elif value != wanted or isinstance(value, bool) != isinstance(wanted, bool):
                return False
        return True


def derived_request_id(prefix: str, cause: str, rule_id: str) -> str:
    """The requestId of a grant: the same cause and rule always name the same claim."""
    digest = hashlib.blake2b(f"{cause}\x00{rule_id}".encode(), digest_size=16).hexdigest()
    return f"{prefix}-{digest}"


def chance(cause: str, rule_id: str) -> float:
    """A number in [0, 1) fixed by cause and rule: a retried open rolls the same dice."""
    digest = hashlib.blake2b(f"roll\x00{cause}\x00{rule_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


class TriggerRules:
    """The ``trigger_rules`` table, and a worker's view of it (read at most once per
    ``ttl_ms``; while PostgreSQL is away the last rules read stay in force)."""

    def __init__(self, pool: asyncpg.Pool, ttl_ms: int) -> None:
        self._pool = pool
        self._ttl_s = ttl_ms / 1000
        self._rules: list[TriggerRule] | None = None
        self._read_at = 0.0
        self._lock = asyncio.Lock()

    async def add(self, rule: TriggerRule) -> None:
        """Store a rule (a rule id that exists is replaced)."""
        await self._pool.execute(
            "INSERT INTO trigger_rules (rule_id, kind, event_type, campaign_id, conditions,"
            " probability, first_opens) VALUES ($1, $2, $3, $4, $5::jsonb, $6, $7)"
            " ON CONFLICT (rule_id) DO UPDATE SET kind = $2, event_type = $3,"
            " campaign_id = $4, conditions = $5::jsonb, probability = $6, first_opens = $7",
            rule.rule_id,
            rule.kind,
            rule.event_type,
            rule.campaign_id,
            msgspec.json.encode(rule.conditions).decode(),
            rule.probability,
            rule.first_opens,
        )
        self._rules = None

    async def remove(self, rule_id: str) -> bool:
        """Delete a rule; whether it existed."""
        status = await self._pool.execute("DELETE FROM trigger_rules WHERE rule_id = $1", rule_id)
        self._rules = None
        return status != "DELETE 0"

    async def all(self) -> list[TriggerRule]:
        """Every rule, from PostgreSQL."""
        rows = await self._pool.fetch(
            "SELECT rule_id, kind, event_type, campaign_id, conditions, probability, first_opens"
            " FROM trigger_rules ORDER BY rule_id"
        )
        return [
            msgspec.convert(
                {
                    "ruleId": row["rule_id"],
                    "kind": row["kind"],
                    "campaignId": row["campaign_id"],
                    "eventType": row["event_type"],
                    "conditions": orjson.loads(row["conditions"]),
                    "probability": row["probability"],
                    "firstOpens": row["first_opens"],
                },
                TriggerRule,
            )
            for row in rows
        ]

    async def current(self) -> list[TriggerRule]:
        """The rules in force (cached)."""
        if self._rules is not None and time.monotonic() - self._read_at < self._ttl_s:
            return self._rules
        async with self._lock:
            if self._rules is None or time.monotonic() - self._read_at >= self._ttl_s:
                try:
                    self._rules = await self.all()
                except (asyncpg.PostgresError, OSError):
                    if self._rules is None:
                        raise
                self._read_at = time.monotonic()
            return self._rules
