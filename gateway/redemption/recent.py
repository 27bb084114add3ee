"""Coupons claimed but not yet stored: a user's recent claims as ``claim.lua`` keeps them.

"ACCEPTED" is a promise: the coupon is usable at once, while its claim may still wait in
the outbox, Kafka or the consumer. ``claim.lua`` writes each accepted claim into its
user's recent claims of the campaign (``CampaignKeys.recent``, in the campaign's hash
tag, kept for the replay TTL), so the wallet and the quote list it and a lock writes its
row through to PostgreSQL itself (``INSERT … ON CONFLICT DO NOTHING``, the consumer's
statement: whichever comes second inserts nothing, so the coupon is stored once).
``flashclaim recover`` rebuilds these records for claims still in the outbox.
"""

from __future__ import annotations

import logging

from redis.asyncio import Redis
from redis.exceptions import RedisError

from gateway.claim.events import ClaimEvent
from gateway.claim.script import RecentClaim
from gateway.keys import CAMPAIGN_INDEX, CAMPAIGN_SHARDS, CampaignKeys
from gateway.shards.stock import shard_of

log = logging.getLogger(__name__)


async def recent_claims(redis: Redis, user_id: str, timeout_s: float = 1.0) -> list[ClaimEvent]:
    """The user's claims of the replay window in every published campaign, as events.

    One pipelined round trip over the published campaigns. Redis away: none (the coupons
    already stored still are; nothing is promised that PostgreSQL does not hold).
    """
    try:
        async with redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(CAMPAIGN_INDEX)
            pipe.hgetall(CAMPAIGN_SHARDS)
            index, sharded = await pipe.execute()
        if not index:
            return []
        async with redis.pipeline(transaction=False) as pipe:
            for campaign_id, group in index.items():
                shard = shard_of(user_id, int(sharded.get(campaign_id, 1)))  # the user's shard
                pipe.hgetall(CampaignKeys(campaign_id, group, shard).recent(user_id))
            found = await pipe.execute()
    except (RedisError, OSError) as exc:
        log.warning("recent claims unreadable, using stored coupons only: %s", exc)
        return []
    events = []
    for campaign_id, records in zip(index, found, strict=True):
        for coupon_id, text in records.items():
            claim = RecentClaim.parse(coupon_id, text)
            events.append(
                ClaimEvent(
                    coupon_id=claim.coupon_id,
                    campaign_id=campaign_id,
                    user_id=user_id,
                    device_id=claim.device_id,
                    request_id=claim.request_id,
                    channel=claim.channel,
                    value_cents=claim.value_cents,
                    claimed_at_ms=claim.claimed_at_ms,
                    expires_at_ms=claim.expires_at_ms,
                )
            )
    return events
