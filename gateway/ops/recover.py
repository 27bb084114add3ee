"""``flashclaim recover``: rebuild a campaign's Redis state after Redis lost data.

Redis is the gate, PostgreSQL the record. After a restart without AOF, a failover to a
lagging replica or a restore from an older file, Redis's counters may have *rewound*,
which would let it issue coupons twice. Recovery, per campaign:

1. marks the campaign ``recovering``: claims are answered UNAVAILABLE from here on;
2. reads every persisted claim (PostgreSQL) and every claim still waiting in the outbox
   (read after step 1, so no claim decided before it is missed);
3. rewrites the counters from those claims: issued, spent, per-day issued, per-user and
   per-device totals, per-user per-day counts, exclusion-group holdings, the replay
   records of claims still inside the replay window and the winners list (every claim's
   requestId, when there are at most ``sold_out_memory_max``: see gateway/claim/winners.py),
   and the claim rules' counters (issued per channel, value per user, value per day);
   the redeem codes' state: every code generated for it (``code_batches``) unused, except
   those a claim names (its ``code``), marked used by that claim's user and requestId, and
   the global code index, written on its own (it is outside the campaign's hash slot);
4. puts the campaign back in its recorded status (active or paused).

Issued never exceeds stock afterwards: it counts every claim anyone still knows of.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import asyncpg
from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

from gateway.campaigns.commands import print_json
from gateway.campaigns.ops import CampaignOps, keys_of
from gateway.campaigns.spec import Campaign, Status
from gateway.campaigns.store import CampaignStore
from gateway.claim.events import ClaimEvent
from gateway.claim.script import RecentClaim, ReplayRecord
from gateway.infra.clients import open_clients
from gateway.infra.clock import Clock, SystemClock, day_of
from gateway.infra.console import progress
from gateway.infra.settings import Settings
from gateway.keys import CAMPAIGN_EVENTS, CODE_INDEX, CampaignKeys
from gateway.shards.stock import all_shards, shard_of, share_of

DAY_MS = 86_400_000
CODE_HASH_BYTES = 16  # code_batches.hashes: the keyed hashes one after another
_CODES_CHUNK = 20_000


@dataclass(frozen=True, slots=True)
class Recovered:
    """What a recovery rebuilt."""

    campaign_id: str
    persisted: int
    in_outbox: int
    issued: int
    stock: int
    codes: int = 0  # redeem codes restored (used and unused)


async def stored_claims(pool: asyncpg.Pool, campaign: Campaign) -> dict[str, ClaimEvent]:
    """The claims of ``campaign`` persisted in PostgreSQL, by coupon id."""
    rows = await pool.fetch(
        "SELECT coupon_id::text, user_id, device_id, request_id, channel, value_cents,"
        " (extract(epoch FROM claimed_at) * 1000)::bigint AS at,"
        " (extract(epoch FROM expires_at) * 1000)::bigint AS expires, code_hash"
        " FROM coupons WHERE campaign_id = $1",
        campaign.id,
    )
    return {
        row["coupon_id"]: ClaimEvent(
            coupon_id=row["coupon_id"],
            campaign_id=campaign.id,
            user_id=row["user_id"],
            device_id=row["device_id"],
            request_id=row["request_id"],
            channel=row["channel"],
            value_cents=row["value_cents"],
            claimed_at_ms=row["at"],
            expires_at_ms=row["expires"],
            code=row["code_hash"] or "",
        )
        for row in rows
    }


async def outbox_claims(redis: Redis, campaign: Campaign) -> list[ClaimEvent]:
    """The claims waiting in a campaign's outboxes (one per stock shard; relayed ones are
    deleted from it)."""
    claims = []
    for keys in all_shards(keys_of(campaign), campaign.stock_shards):
        entries: list[tuple[str, dict[str, str]]] = await redis.xrange(keys.outbox)  # type: ignore[assignment]
        claims += [ClaimEvent.from_outbox(fields) for _, fields in entries]
    return claims


async def recover(
    ops: CampaignOps,
    pool: asyncpg.Pool,
    redis: Redis,
    clock: Clock,
    settings: Settings,
    campaign_id: str,
) -> Recovered:
    """Rebuild one campaign's Redis state from PostgreSQL and its outbox, then reopen it."""
    campaign = await ops.store.get(campaign_id)
    n = campaign.stock_shards
    shards = all_shards(keys_of(campaign), n)
    for keys in shards:
        await redis.hset(keys.config, "status", Status.RECOVERING.value)
    await redis.publish(CAMPAIGN_EVENTS, campaign.id)
    stored = await stored_claims(pool, campaign)
    waiting = [c for c in await outbox_claims(redis, campaign) if c.coupon_id not in stored]
    claims = [*stored.values(), *waiting]
    for keys in shards:  # a stock shard holds the claims of its users (gateway/shards/)
        mine = [c for c in claims if shard_of(c.user_id, n) == keys.shard]
        await _rewrite(redis, campaign, keys, mine, clock.now_ms(), settings)
        ours = [c for c in waiting if shard_of(c.user_id, n) == keys.shard]
        await _remember_waiting(redis, keys, ours, clock.now_ms(), settings.replay_ttl_s)
    if n > 1:
        await _rebalance(redis, campaign, shards, claims)
    codes = await _rebuild_codes(pool, redis, campaign, claims)
    await ops.publish(campaign.id)  # config from the record, status as recorded, announced
    stock = sum([int(await redis.hget(keys.config, "stock") or 0) for keys in shards])
    return Recovered(campaign.id, len(stored), len(waiting), len(claims), stock, codes)


async def generated_codes(pool: asyncpg.Pool, campaign_id: str) -> list[str]:
    """The keyed hashes (hex, as Redis keeps them) of every code made for a campaign."""
    rows = await pool.fetch(
        "SELECT hashes FROM code_batches WHERE campaign_id = $1 ORDER BY created_at", campaign_id
    )
    return [
        blob[at : at + CODE_HASH_BYTES].hex()
        for blob in (row["hashes"] for row in rows)
        for at in range(0, len(blob), CODE_HASH_BYTES)
    ]


async def _rebuild_codes(
    pool: asyncpg.Pool, redis: Redis, campaign: Campaign, claims: list[ClaimEvent]
) -> int:
    """Rewrite the campaign's codes hash as ``claim.lua`` keeps it ("" unused, "<user>\t
    <requestId>" used) and the global index; return how many codes. The campaign answers
    UNAVAILABLE meanwhile, so no claim reads the hash half-written."""
    used = {c.code: f"{c.user_id}\t{c.request_id}" for c in claims if c.code}
    hashes = list(dict.fromkeys([*await generated_codes(pool, campaign.id), *used]))
    if not hashes:
        return 0
    codes_key = keys_of(campaign).codes
    await redis.delete(codes_key)
    for start in range(0, len(hashes), _CODES_CHUNK):
        chunk = hashes[start : start + _CODES_CHUNK]
        await redis.hset(codes_key, mapping={h: used.get(h, "") for h in chunk})
        await redis.hset(CODE_INDEX, mapping=dict.fromkeys(chunk, campaign.id))  # on its own
    return len(hashes)


async def _rebalance(
    redis: Redis, campaign: Campaign, shards: list[CampaignKeys], claims: list[ClaimEvent]
) -> None:
    """Set each stock shard's ``moved`` so the stock left, campaign-wide, is the stock less
    the claims found, all of it on shard 0; transfers in flight are closed (marked credited,
    so a late credit adds nothing, and dropped from the logs)."""
    n = len(shards)
    issued = Counter(shard_of(c.user_id, n) for c in claims)
    left = campaign.stock - len(claims)
    for keys in shards:
        share = share_of(campaign.stock, n, keys.shard)
        moved = issued[keys.shard] - share + (left if keys.shard == 0 else 0)
        log: dict[str, str] = await redis.hgetall(keys.transfers)  # type: ignore[assignment]
        for transfer_id, entry in log.items():
            recipient = shards[int(entry.split("\t")[0])]
            await redis.sadd(recipient.credited, transfer_id)
        async with redis.pipeline(transaction=True) as pipe:
            pipe.hset(keys.counters, "moved", moved)
            pipe.delete(keys.transfers)
            await pipe.execute()


async def _rewrite(
    redis: Redis,
    campaign: Campaign,
    keys: CampaignKeys,
    claims: list[ClaimEvent],
    now_ms: int,
    settings: Settings,
) -> None:
    replay_ttl_s = settings.replay_ttl_s
    zone = campaign.zone
    days = Counter(day_of(c.claimed_at_ms, zone).label for c in claims)
    users = Counter(c.user_id for c in claims)
    devices = Counter(c.device_id for c in claims)
    today = day_of(now_ms, zone)
    users_today = Counter(
        c.user_id for c in claims if day_of(c.claimed_at_ms, zone).label == today.label
    )
    async with redis.pipeline(transaction=True) as pipe:
        pipe.hset(
            keys.counters,
            mapping={
                "issued": len(claims),
                "spent": sum(c.value_cents for c in claims),
            },
        )
        _rule_counters(pipe, campaign, keys, claims, today_end_ms=today.end_ms, now_ms=now_ms)
        pipe.delete(keys.users, keys.devices, keys.users_daily(today.label), keys.winners)
        if claims and len(claims) <= settings.sold_out_memory_max:
            in_order = sorted(claims, key=lambda c: c.claimed_at_ms)
            pipe.rpush(keys.winners, *(c.request_id for c in in_order))
        if users:
            pipe.hset(keys.users, mapping=_any(users))
        if devices and campaign.per_device_limit:
            pipe.hset(keys.devices, mapping=_any(devices))
        if users_today and campaign.per_user_daily_limit:
            pipe.hset(keys.users_daily(today.label), mapping=_any(users_today))
            pipe.pexpire(keys.users_daily(today.label), today.end_ms - now_ms + 2 * DAY_MS)
        for label, count in days.items():
            pipe.set(keys.daily(label), count, px=max(today.end_ms - now_ms, 0) + 2 * DAY_MS)
        for claim in sorted(claims, key=lambda c: c.expires_at_ms):  # latest holding last
            _replay_and_hold(pipe, campaign, keys, claim, now_ms, replay_ttl_s)
        await pipe.execute()


def _rule_counters(
    pipe: Pipeline,
    campaign: Campaign,
    keys: CampaignKeys,
    claims: list[ClaimEvent],
    *,
    today_end_ms: int,
    now_ms: int,
) -> None:
    """Queue the counters of the claim rules (gateway/rules/), as claim.lua keeps them."""
    channels = Counter(f"ch:{c.channel}" for c in claims)
    if campaign.channel_quotas and channels:
        pipe.hset(keys.counters, mapping=_any(channels))
    if campaign.per_user_money_cap_cents:
        money: Counter[str] = Counter()
        for c in claims:
            money[c.user_id] += c.value_cents
        pipe.delete(keys.user_money)
        if money:
            pipe.hset(keys.user_money, mapping=_any(money))
    if campaign.daily_budget_cents:
        per_day: Counter[str] = Counter()
        for c in claims:
            per_day[day_of(c.claimed_at_ms, campaign.zone).label] += c.value_cents
        for label, cents in per_day.items():
            pipe.set(keys.daily_money(label), cents, px=max(today_end_ms - now_ms, 0) + 2 * DAY_MS)


def _replay_and_hold(
    pipe: Pipeline,
    campaign: Campaign,
    keys: CampaignKeys,
    claim: ClaimEvent,
    now_ms: int,
    replay_ttl_s: int,
) -> None:
    """Queue the replay record (if still inside the window) and the group holding."""
    left_s = replay_ttl_s - (now_ms - claim.claimed_at_ms) // 1000
    if left_s > 0:
        record = ReplayRecord(claim.user_id, claim.device_id, claim.coupon_id, claim.expires_at_ms)
        pipe.set(keys.request(claim.request_id), record.encode(), ex=left_s)
    if campaign.exclusion_group and claim.expires_at_ms > now_ms:
        pipe.hset(keys.holds, claim.user_id, f"{campaign.id}:{claim.expires_at_ms}")


async def _remember_waiting(
    redis: Redis, keys: CampaignKeys, waiting: list[ClaimEvent], now_ms: int, replay_ttl_s: int
) -> None:
    """The users' recent claims (redemption) of claims not stored yet, so their coupons stay
    usable at once: ``claim.lua`` wrote them, the lost Redis forgot them."""
    async with redis.pipeline(transaction=False) as pipe:
        for claim in waiting:
            left_s = replay_ttl_s - (now_ms - claim.claimed_at_ms) // 1000
            if left_s <= 0:
                continue
            record = RecentClaim(claim.coupon_id, claim.device_id, claim.request_id,
                                 claim.channel, claim.value_cents, claim.claimed_at_ms,
                                 claim.expires_at_ms)  # fmt: skip
            pipe.hset(keys.recent(claim.user_id), claim.coupon_id, record.encode())
            pipe.expire(keys.recent(claim.user_id), left_s)
        await pipe.execute()


def _any(counts: Counter[str]) -> Mapping[Any, Any]:
    """A Counter as the mapping redis-py's hset accepts."""
    return dict(counts)


async def command(settings: Settings, campaign_ids: list[str]) -> int:
    """``flashclaim recover [ID …]``: recover the campaigns (default: every published one)
    and print what was rebuilt, as JSON."""
    async with open_clients(settings) as opened:
        ops = CampaignOps(CampaignStore(opened.pool), opened.redis, SystemClock())
        ids = campaign_ids or [c.id for c in await ops.store.all() if c.status is not Status.DRAFT]
        recovered = []
        for number, cid in enumerate(ids, 1):
            progress(f"recovering {cid} ({number}/{len(ids)})")
            recovered.append(
                await recover(ops, opened.pool, opened.redis, SystemClock(), settings, cid)
            )
        print_json(recovered)
    return 0
