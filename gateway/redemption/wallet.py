"""A user's coupons as they stand now: read from PostgreSQL, with campaigns attached.

Status is what it is *now*, computed in the query from the one clock's time: a coupon
past its validity reads as ``expired`` at once, and a lock past its TTL as ``unused``,
whether or not the sweeper has recorded the transition yet. Correctness needs no job.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
import msgspec

from gateway.campaigns.spec import Campaign
from gateway.claim.events import ClaimEvent
from gateway.redemption.pricing import Held

#: The status a row has at ``$NOW`` (a timestamptz parameter).
EFFECTIVE = """
CASE WHEN c.status IN ('unused', 'locked') AND c.expires_at <= {now} THEN 'expired'
     WHEN c.status = 'locked' AND c.lock_expires_at <= {now} THEN 'unused'
     ELSE c.status END
"""

#: A connection, or one lent by a pool.
Conn = asyncpg.Connection | asyncpg.pool.PoolConnectionProxy

STATUSES = ("unused", "locked", "used", "expired", "refunded", "voided")


def at(epoch_ms: int) -> datetime:
    """A timestamptz parameter from epoch milliseconds."""
    return datetime.fromtimestamp(epoch_ms / 1000, UTC)


def ms(moment: datetime) -> int:
    """Epoch milliseconds of a timestamptz value."""
    return int(moment.timestamp() * 1000)


@dataclass(frozen=True, slots=True)
class Row:
    """A coupon row with its status now."""

    held: Held
    discount_cents: int
    refunded_discount_cents: int
    user_id: str


async def campaigns(conn: Conn | asyncpg.Pool, ids: set[str]) -> dict[str, Campaign]:
    """The campaigns of these ids (their specs as stored)."""
    rows = await conn.fetch(
        "SELECT id, spec, status, version FROM campaigns WHERE id = ANY($1::text[])", list(ids)
    )
    return {
        row["id"]: _decoded(row["id"], row["version"], row["status"], row["spec"]) for row in rows
    }


def joined_campaigns(records: Iterable[asyncpg.Record]) -> dict[str, Campaign]:
    """The campaigns of coupon rows selected with their campaign joined (``campaign_spec``,
    ``campaign_status``, ``campaign_version``; a coupon of no campaign has none)."""
    return {
        r["campaign_id"]: _decoded(
            r["campaign_id"], r["campaign_version"], r["campaign_status"], r["campaign_spec"]
        )
        for r in records
        if r["campaign_spec"] is not None
    }


@functools.lru_cache(maxsize=4096)
def _decoded(campaign_id: str, version: int, status: str, spec: str) -> Campaign:
    """A stored campaign, decoded once per version (every change bumps it)."""
    data: dict[str, Any] = msgspec.json.decode(spec)
    data.update(status=status, version=version)
    return msgspec.convert(data, Campaign)


def to_row(record: asyncpg.Record, campaign: Campaign) -> Row:
    """A ``Row`` from a query that selected ``c.*`` and ``effective``."""
    return Row(
        Held(
            coupon_id=str(record["coupon_id"]),
            campaign=campaign,
            status=record["effective"],
            claimed_at_ms=ms(record["claimed_at"]),
            expires_at_ms=ms(record["expires_at"]),
            order_id=record["order_id"],
            device_id=record["device_id"],
        ),
        record["discount_cents"],
        record["refunded_discount_cents"],
        record["user_id"],
    )


async def _pending(
    conn: Conn, unstored: list[ClaimEvent], now_ms: int
) -> list[tuple[ClaimEvent, str]]:
    """Claimed coupons whose rows are not stored yet, with their status now (voided when
    their campaign's void mark covers them: they will be stored voided). Read in the
    same snapshot as the user's rows (a row the consumer stores between two reads would
    otherwise be in neither)."""
    if not unstored:
        return []
    stored = await conn.fetch(
        "SELECT coupon_id::text FROM coupons WHERE coupon_id = ANY($1::uuid[])",
        [e.coupon_id for e in unstored],
    )
    have = {r["coupon_id"] for r in stored}
    marks = await conn.fetch(
        "SELECT campaign_id, voided_at FROM campaign_voids WHERE campaign_id = ANY($1::text[])",
        list({e.campaign_id for e in unstored}),
    )
    voided_at = {r["campaign_id"]: ms(r["voided_at"]) for r in marks}
    return [(e, _pending_status(e, now_ms, voided_at)) for e in unstored if e.coupon_id not in have]


def _pending_status(event: ClaimEvent, now_ms: int, voided_at: dict[str, int]) -> str:
    void = voided_at.get(event.campaign_id)
    if void is not None and event.claimed_at_ms <= void < event.expires_at_ms:
        return "voided"
    return "expired" if event.expires_at_ms <= now_ms else "unused"


def _pending_row(event: ClaimEvent, status: str, campaign: Campaign) -> Row:
    held = Held(event.coupon_id, campaign, status, event.claimed_at_ms, event.expires_at_ms,
                device_id=event.device_id)  # fmt: skip
    return Row(held, 0, 0, event.user_id)


async def list_coupons(
    pool: asyncpg.Pool,
    user_id: str,
    now_ms: int,
    *,
    status: str | None = None,
    limit: int = 20,
    before: tuple[int, str] | None = None,
    unstored: list[ClaimEvent] | None = None,
) -> list[Row]:
    """The user's coupons, newest first; ``before`` is the last (claimedAtMs, id) seen.
    ``unstored``: the user's recent claims, listed as well while their rows are not stored."""
    effective = EFFECTIVE.format(now="$2")
    clauses = ["c.user_id = $1"]
    args: list[Any] = [user_id, at(now_ms), limit]
    if status is not None:
        args.append(status)
        clauses.append(f"({effective}) = ${len(args)}")
    if before is not None:
        args.extend([at(before[0]), before[1]])
        clauses.append(f"(c.claimed_at, c.coupon_id) < (${len(args) - 1}, ${len(args)}::uuid)")
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        records = await conn.fetch(
            f"SELECT c.*, {effective} AS effective FROM coupons c WHERE {' AND '.join(clauses)}"
            " ORDER BY c.claimed_at DESC, c.coupon_id DESC LIMIT $3",
            *args,
        )
        waiting = await _pending(conn, unstored or [], now_ms)
    pending = [
        (e, s)
        for e, s in waiting
        if (status is None or s == status)
        and (before is None or (e.claimed_at_ms, e.coupon_id) < before)
    ]
    known = await campaigns(
        pool, {r["campaign_id"] for r in records} | {e.campaign_id for e, _ in pending}
    )
    rows = [to_row(r, known[r["campaign_id"]]) for r in records if r["campaign_id"] in known]
    rows += [_pending_row(e, s, known[e.campaign_id]) for e, s in pending if e.campaign_id in known]
    rows.sort(key=lambda row: (row.held.claimed_at_ms, row.held.coupon_id), reverse=True)
    return rows[:limit]


async def usable_coupons(
    pool: asyncpg.Pool, user_id: str, now_ms: int, unstored: list[ClaimEvent] | None = None
) -> list[Held]:
    """Every coupon the user could put on an order now (the quote's candidates), those
    claimed but not stored yet included."""
    effective = EFFECTIVE.format(now="$2")
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        records = await conn.fetch(
            f"SELECT c.*, {effective} AS effective FROM coupons c"
            f" WHERE c.user_id = $1 AND ({effective}) = 'unused'"
            " ORDER BY c.expires_at, c.coupon_id LIMIT 500",
            user_id,
            at(now_ms),
        )
        waiting = await _pending(conn, unstored or [], now_ms)
    pending = [(e, s) for e, s in waiting if s == "unused"]
    known = await campaigns(
        pool, {r["campaign_id"] for r in records} | {e.campaign_id for e, _ in pending}
    )
    held = [to_row(r, known[r["campaign_id"]]).held for r in records if r["campaign_id"] in known]
    held += [
        _pending_row(e, s, known[e.campaign_id]).held for e, s in pending if e.campaign_id in known
    ]
    return held
