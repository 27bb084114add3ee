"""A herd on a hot campaign over 4 stock shards, users skewed so one shard drains first.

Exactly the stock is issued, every user within the limit, and no claim is answered
SOLD_OUT while stock remains anywhere: every SOLD_OUT answer was received after the last
coupon was issued (the outboxes' entry ids carry the Redis server's time of each issue,
the same clock as the test's). The order of the *answers* proves less: a batch's accepted
claims are answered with its last borrowing round, so an accepted answer can arrive after
another batch's SOLD_OUT although its coupon was issued before.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter

from gateway.campaigns.ops import keys_of
from gateway.shards.stock import all_shards, shard_of
from tests.helpers import T0_MS, auth, published

SHARDS = 4
STOCK = 1_000


def users_of(shard: int, count: int, taken: set[str]) -> list[str]:
    """``count`` user ids that claim on ``shard``."""
    found: list[str] = []
    n = 0
    while len(found) < count:
        user = f"s{shard}-user-{n}"
        n += 1
        if shard_of(user, SHARDS) == shard and user not in taken:
            found.append(user)
    return found


async def test_no_sold_out_while_any_shard_holds_stock(make_client, ops, redis, clock):
    clock.set(T0_MS + 1)
    campaign = await published(ops, stock=STOCK, perUserLimit=1, stockShards=SHARDS)
    gateways = [await make_client(batch_max=64, redis_timeout_ms=10_000) for _ in range(3)]
    taken: set[str] = set()
    users = []
    for shard, count in ((0, 900), (1, 100), (2, 100), (3, 100)):  # shard 0 drains first
        users += users_of(shard, count, taken)
    rng = random.Random(13)
    sends = [(user, f"{user}-a") for user in users]
    sends += [(user, f"{user}-a") for user in rng.sample(users, 150)]  # retries
    sends += [(user, f"{user}-b") for user in rng.sample(users, 150)]  # over the limit
    rng.shuffle(sends)
    answers: list[tuple[str, str, dict[str, str], int]] = []  # in the order received

    async def send(user: str, rid: str) -> None:
        body = {"campaignId": campaign.id, "requestId": rid, "deviceId": f"d-{user}",
                "channel": "seckill"}  # fmt: skip
        while True:
            response = await rng.choice(gateways).post(
                "/api/coupon/issue", json=body, headers=auth(user)
            )
            data = await response.json()
            if data["reason"] != "OVERLOADED":  # stock moving between shards: retry
                answers.append((user, rid, data, time.time_ns() // 1_000_000))
                return

    await asyncio.gather(*(send(user, rid) for user, rid in sends))

    reasons = Counter(data["reason"] for _, _, data, _ in answers)
    assert set(reasons) <= {"ACCEPTED", "SOLD_OUT", "USER_LIMIT"}, reasons
    coupons = {data["couponId"] for _, _, data, _ in answers if data["reason"] == "ACCEPTED"}
    assert len(coupons) == STOCK
    per_user: dict[str, set[str]] = {}
    for user, _, data, _ in answers:
        if data["reason"] == "ACCEPTED":
            per_user.setdefault(user, set()).add(data["couponId"])
    assert max(len(c) for c in per_user.values()) == 1  # perUserLimit, a retry replays
    assert reasons["SOLD_OUT"] > 0

    shards = all_shards(keys_of(campaign), SHARDS)
    issued_at = []
    outboxed = set()
    for keys in shards:
        for entry_id, fields in await redis.xrange(keys.outbox):
            issued_at.append(int(entry_id.split("-")[0]))
            outboxed.add(fields["coupon"])
            assert shard_of(fields["user"], SHARDS) == keys.shard
    assert outboxed == coupons
    counters = [await redis.hgetall(keys.counters) for keys in shards]
    assert sum(int(c["issued"]) for c in counters) == STOCK
    assert sum(int(c.get("moved", 0)) for c in counters) == 0  # every transfer credited
    assert [await redis.hlen(keys.transfers) for keys in shards] == [0] * SHARDS

    sold_out = [i for i, (_, _, data, _) in enumerate(answers) if data["reason"] == "SOLD_OUT"]
    first_sold_out_ms = min(answers[i][3] for i in sold_out)
    assert max(issued_at) <= first_sold_out_ms, "a SOLD_OUT was answered before the last issue"
    live = await ops.live(campaign.id)
    assert live["live"]["issued"] == STOCK
    assert live["live"]["stockRemaining"] == 0
