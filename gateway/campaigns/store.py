"""Campaigns in PostgreSQL, the source of truth: create, read, change, list.

Rows are plain columns (amounts in integer cents), with ``validity`` and ``audience`` as
JSON. Every change bumps ``version`` so the published copy in Redis can be told apart.
"""

from __future__ import annotations

from typing import Any

import asyncpg
import msgspec

from gateway.campaigns.spec import (
    Campaign,
    CampaignSpec,
    FieldError,
    InvalidSpec,
    Status,
    decode_spec,
)

_SPEC_FIELDS = msgspec.structs.fields(CampaignSpec)
_JSON_COLUMNS = ("validity", "audience")
_COLUMNS = [f.name for f in _SPEC_FIELDS]


class CampaignNotFound(LookupError):
    """No campaign has that id."""


class CampaignExists(ValueError):
    """A campaign with that id already exists."""


def _row_values(spec: CampaignSpec) -> list[Any]:
    values: list[Any] = []
    for name in _COLUMNS:
        value = getattr(spec, name)
        if name in _JSON_COLUMNS:
            value = msgspec.json.encode(value).decode()
        values.append(value)
    return values


def _from_row(row: asyncpg.Record) -> Campaign:
    data: dict[str, Any] = {}
    for info in msgspec.structs.fields(Campaign):
        value = row[info.name]
        if info.name in _JSON_COLUMNS:
            value = msgspec.json.decode(value)
        data[info.encode_name] = value
    return msgspec.convert(data, Campaign)


class CampaignStore:
    """Reads and writes campaigns in one PostgreSQL database."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def create(self, spec: CampaignSpec) -> Campaign:
        """Store a new draft campaign."""
        placeholders = ", ".join(f"${i}" for i in range(1, len(_COLUMNS) + 1))
        try:
            row = await self.pool.fetchrow(
                f"INSERT INTO campaigns ({', '.join(_COLUMNS)}) VALUES ({placeholders})"
                " RETURNING *",
                *_row_values(spec),
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
            merged = {**_spec_dict(current), **changes}
            spec = decode_spec(merged)
            if spec.id != current.id:
                raise InvalidSpec([FieldError("id", "cannot change")])
            if current.status is not Status.DRAFT and spec.exclusion_group != (
                current.exclusion_group
            ):
                raise InvalidSpec([FieldError("exclusionGroup", "cannot change once published")])
            assignments = ", ".join(f"{name} = ${i}" for i, name in enumerate(_COLUMNS, 2))
            row = await conn.fetchrow(
                f"UPDATE campaigns SET {assignments}, version = version + 1, updated_at = now()"
                " WHERE id = $1 RETURNING *",
                campaign_id,
                *_row_values(spec),
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
        """Add ``stock`` coupons and ``budget_cents`` to a campaign's budget (if it has one)."""
        return await self._returning(
            "UPDATE campaigns SET stock = stock + $2,"
            " budget_cents = budget_cents + $3,"
            " version = version + 1, updated_at = now() WHERE id = $1 RETURNING *",
            campaign_id,
            stock,
            budget_cents,
        )

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


def _spec_dict(campaign: Campaign) -> dict[str, Any]:
    """A campaign's spec fields as camelCase JSON-ready values."""
    data: dict[str, Any] = msgspec.to_builtins(campaign)
    data.pop("status", None)
    data.pop("version", None)
    return data
