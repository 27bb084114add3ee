"""Credit plans in PostgreSQL: the operator's spec as one JSON document per plan.

Validated by ``plan.py`` before it is written; every change bumps ``version``.
"""

from __future__ import annotations

from typing import Any

import asyncpg
import msgspec

from gateway.credit.journal import Conn, PlanNotFound
from gateway.credit.plan import CreditPlan, decode_plan


class PlanExists(ValueError):
    """A plan with that id already exists."""


class PlanStore:
    """Create, read, change and list credit plans."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def create(self, plan: CreditPlan) -> CreditPlan:
        """Store a new plan; ``PlanExists`` if its id is taken."""
        try:
            await self.pool.execute(
                "INSERT INTO credit_plans (id, spec) VALUES ($1, $2::jsonb)",
                plan.id, msgspec.json.encode(plan).decode(),
            )  # fmt: skip
        except asyncpg.UniqueViolationError:
            raise PlanExists(plan.id) from None
        return plan

    async def get(self, plan_id: str, conn: Conn | None = None) -> CreditPlan:
        """The plan of ``plan_id``; ``PlanNotFound`` if none."""
        spec = await (conn or self.pool).fetchval(
            "SELECT spec::text FROM credit_plans WHERE id = $1", plan_id
        )
        if spec is None:
            raise PlanNotFound(f"no credit plan {plan_id}")
        return msgspec.json.decode(spec, type=CreditPlan)

    async def all(self) -> list[CreditPlan]:
        """Every plan, newest first."""
        rows = await self.pool.fetch(
            "SELECT spec::text AS spec FROM credit_plans ORDER BY created_at DESC, id"
        )
        return [msgspec.json.decode(r["spec"], type=CreditPlan) for r in rows]

    async def update(self, plan_id: str, changes: dict[str, Any]) -> CreditPlan:
        """Change fields of a plan (the result validated whole; the id stays)."""
        current = msgspec.to_builtins(await self.get(plan_id))
        plan = decode_plan({**current, **changes, "id": plan_id})
        await self.pool.execute(
            "UPDATE credit_plans SET spec = $2::jsonb, version = version + 1,"
            " updated_at = now() WHERE id = $1",
            plan_id, msgspec.json.encode(plan).decode(),
        )  # fmt: skip
        return plan
