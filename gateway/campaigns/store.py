"""Campaigns in PostgreSQL, the source of truth: create, read, change, list.

A row holds the operator's spec as one JSON document (validated by ``spec.py`` before it
is written, amounts in integer cents), beside the columns SQL works on: id, lifecycle
status and version. Every change bumps ``version`` so the published copy in Redis can be
told apart. A new rule on campaigns is a new spec field: no schema change.
"""

from __future__ import annotations

from typing import Any

import asyncpg
import msgspec

from gateway.campaigns.spec import (
    MAX_CENTS,
    MAX_COUNT,
    Campaign,
    CampaignSpec,
    FieldError,
    InvalidSpec,
    Status,
    decode_spec,
)


class CampaignNotFound(LookupError):
    """No campaign has that id."""


class CampaignExists(ValueError):
    """A campaign with that id already exists."""


def _spec_json(spec: CampaignSpec) -> str:
    """The spec as stored: its JSON text, without lifecycle fields."""
    data: dict[str, Any] = msgspec.to_builtins(spec)
    data.pop("status", None)
    data.pop("version", None)
    return msgspec.json.encode(data).decode()


def _from_row(row: asyncpg.Record) -> Campaign:
    data: dict[str, Any] = msgspec.json.decode(row["spec"])
    data.update(status=row["status"], version=row["version"])
    return msgspec.convert(data, Campaign)


class CampaignStore:
    """Reads and writes campaigns in one PostgreSQL database."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def create(self, spec: CampaignSpec) -> Campaign:
        """Store a new draft campaign."""
        try:
            row = await self.pool.fetchrow(
                "INSERT INTO campaigns (id, spec) VALUES ($1, $2::jsonb) RETURNING *",
                spec.id,
                _spec_json(spec),
            )
        except asyncpg.UniqueViolationError:
            raise CampaignExists(spec.id) from None
        assert row is not None
        return _from_row(row)

    async def get(self, campaign_id: str) -> Campaign:
        """The campaign with ``campaign_id``; ``CampaignNotFound`` if there is none."""
        row = await self.pool.fetchrow("SELECT * FROM campaigns WHERE id = $1", campaign_id)
        if row is None:
            raise CampaignNotFound(campaign_id)
        return _from_row(row)

    async def all(self) -> list[Campaign]:
        """Every campaign, newest first."""
        rows = await self.pool.fetch("SELECT * FROM campaigns ORDER BY created_at DESC, id")
        return [_from_row(row) for row in rows]

    async def update(self, campaign_id: str, changes: dict[str, Any]) -> Campaign:
        """Apply ``changes`` (camelCase fields) to a campaign, validating the result."""
        async with self.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                "SELECT * FROM campaigns WHERE id = $1 FOR UPDATE", campaign_id
            )
            if row is None:
                raise CampaignNotFound(campaign_id)
            current = _from_row(row)
            merged = {**msgspec.json.decode(row["spec"]), **changes}
            spec = decode_spec(merged)
            if spec.id != current.id:
                raise InvalidSpec([FieldError("id", "cannot change")])
            if current.status is not Status.DRAFT and spec.exclusion_group != (
                current.exclusion_group
            ):
                raise InvalidSpec([FieldError("exclusionGroup", "cannot change once published")])
            if current.status is not Status.DRAFT and spec.stock_shards != current.stock_shards:
                raise InvalidSpec([FieldError("stockShards", "cannot change once published")])
            row = await conn.fetchrow(
                "UPDATE campaigns SET spec = $2::jsonb, version = version + 1, updated_at = now()"
                " WHERE id = $1 RETURNING *",
                campaign_id,
                _spec_json(spec),
            )
            assert row is not None
            return _from_row(row)

    async def set_status(self, campaign_id: str, status: Status) -> Campaign:
        """Move a campaign to ``status``."""
        return await self._returning(
            "UPDATE campaigns SET status = $2, version = version + 1, updated_at = now()"
            " WHERE id = $1 RETURNING *",
            campaign_id,
            status.value,
        )

    async def top_up(self, campaign_id: str, stock: int, budget_cents: int) -> Campaign:
        """Add ``stock`` coupons and ``budget_cents`` to a campaign's budget (if it has one).

        A top-up that would take stock or budget past what a spec may hold is refused
        (``InvalidSpec``), in the same statement that applies it: two top-ups at once
        cannot pass the bound together.
        """
        row = await self.pool.fetchrow(
            "UPDATE campaigns SET spec = spec"
            " || jsonb_build_object('stock', (spec->>'stock')::bigint + $2)"
            " || CASE WHEN jsonb_typeof(spec->'budgetCents') = 'number'"
            "    THEN jsonb_build_object('budgetCents', (spec->>'budgetCents')::bigint + $3)"
            "    ELSE '{}'::jsonb END,"
            " version = version + 1, updated_at = now() WHERE id = $1"
            " AND (spec->>'stock')::bigint + $2 <= $4"
            " AND (jsonb_typeof(spec->'budgetCents') IS DISTINCT FROM 'number'"
            "      OR (spec->>'budgetCents')::bigint + $3 <= $5)"
            " RETURNING *",
            campaign_id,
            stock,
            budget_cents,
            MAX_COUNT,
            MAX_CENTS,
        )
        if row is None:
            current = await self.get(campaign_id)  # CampaignNotFound if there is none
            too_much = "stock" if current.stock + stock > MAX_COUNT else "budgetCents"
            limit = MAX_COUNT if too_much == "stock" else MAX_CENTS
            raise InvalidSpec([FieldError(too_much, f"a top-up may not take it past {limit}")])
        return _from_row(row)

    async def block(self, campaign_id: str, users: list[str], devices: list[str]) -> Campaign:
        """Add users and devices to a campaign's blocklist; return the campaign."""
        campaign = await self.get(campaign_id)
        rows = [(campaign_id, "user", u) for u in users] + [
            (campaign_id, "device", d) for d in devices
        ]
        async with self.pool.acquire() as conn:
            await conn.executemany(
                "INSERT INTO campaign_blocklist (campaign_id, kind, value) VALUES ($1, $2, $3)"
                " ON CONFLICT DO NOTHING",
                rows,
            )
        return campaign

    async def blocklist(self, campaign_id: str) -> tuple[list[str], list[str]]:
        """The blocked users and devices of a campaign."""
        rows = await self.pool.fetch(
            "SELECT kind, value FROM campaign_blocklist WHERE campaign_id = $1 ORDER BY value",
            campaign_id,
        )
        users = [r["value"] for r in rows if r["kind"] == "user"]
        devices = [r["value"] for r in rows if r["kind"] == "device"]
        return users, devices

    async def _returning(self, sql: str, *args: Any) -> Campaign:
        row = await self.pool.fetchrow(sql, *args)
        if row is None:
            raise CampaignNotFound(str(args[0]))
        return _from_row(row)
