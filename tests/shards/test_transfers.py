"""``lua/transfer.lua`` against real Redis: its contract, a crash between a lend and its
credit, and a randomized run of claims, transfers, crashes and replays in which the stock
is always exactly accounted for."""

from __future__ import annotations

import random

import pytest
from redis.exceptions import ResponseError

from gateway.campaigns.ops import keys_of
from gateway.claim.script import Batch, ClaimInput, ClaimScript
from gateway.keys import CampaignKeys
from gateway.shards.stock import ShardedStock, all_shards, finish_transfers, shard_of
from gateway.shards.transfer import transfer_keys
from tests.helpers import T0_MS, auth, body, published

SHARDS = 4


async def in_flight(redis, shards: list[CampaignKeys]) -> int:
    """Stock lent and not yet credited, from the donors' logs and the recipients' sets."""
    total = 0
    for keys in shards:
        for transfer_id, entry in (await redis.hgetall(keys.transfers)).items():
            recipient, amount = entry.split("\t")
            if not await redis.sismember(shards[int(recipient)].credited, transfer_id):
                total += int(amount)
    return total


async def accounted(redis, stock: ShardedStock, keys: CampaignKeys) -> tuple[int, int, int]:
    """Issued, left and in flight, over every shard."""
    shards = all_shards(keys, SHARDS)
    figures = await stock.figures(keys, SHARDS)
    issued = sum([int(await redis.hget(k.counters, "issued") or 0) for k in shards])
    return issued, sum(f.left for f in figures), await in_flight(redis, shards)


async def test_malformed_calls_are_refused_and_write_nothing(ops, redis):
    campaign = await published(ops, stock=8, stockShards=SHARDS)
    stock = ShardedStock(redis)
    keys = keys_of(campaign).of_shard(1)
    before = await redis.hgetall(keys.counters)
    calls: list[list[str | int]] = [
        [],
        ["lend"],
        ["lend", "t1", 0],
        ["lend", "t1", 0, 0],
        ["lend", "", 0, 1],
        ["lend", "t1", "x", 1],
        ["credit", "t1"],
        ["credit", "t1", -1],
        ["peek", "extra"],
        ["steal", "t1", 1],
    ]
    for args in calls:
        with pytest.raises(ResponseError, match="malformed"):
            await stock.script.raw(transfer_keys(keys), args)
    with pytest.raises(ResponseError, match="malformed"):
        await stock.script.raw(transfer_keys(keys)[:3], ["peek"])
    assert await redis.hgetall(keys.counters) == before
    assert not await redis.exists(keys.transfers, keys.credited)


async def test_a_crash_between_lend_and_credit_is_finished_by_the_replayer(ops, redis):
    campaign = await published(ops, stock=8, stockShards=SHARDS)  # 2 a shard
    stock = ShardedStock(redis)
    keys = keys_of(campaign)
    lent = await stock.script.lend(keys.of_shard(1), "t-crash", 0, 5)  # then the crash
    assert (lent.amount, lent.left, lent.pending) == (2, 0, 1)
    again = await stock.script.lend(keys.of_shard(1), "t-crash", 0, 5)  # a retried lend
    assert (again.amount, again.left, again.pending) == (2, 0, 1)
    assert await accounted(redis, stock, keys) == (0, 6, 2)

    assert await finish_transfers(redis) >= 1  # the replayer (the relay runs it each pass)
    assert await accounted(redis, stock, keys) == (0, 8, 0)
    shard0 = await stock.script.peek(keys.of_shard(0))
    assert (shard0.left, shard0.received) == (4, 2)
    repeated = await stock.script.credit(keys.of_shard(0), "t-crash", 2)  # replayed again
    assert (repeated.amount, repeated.left) == (0, 4)
    assert await redis.hlen(keys.of_shard(1).transfers) == 0


async def test_claims_after_a_crash_get_the_stock_in_flight(make_client, ops, redis, clock):
    """Every shard lent its stock to shard 0 and crashed before the credits: shard 0's
    users still get all 8 coupons, and only the 9th and 10th hear SOLD_OUT."""
    clock.set(T0_MS + 1)
    campaign = await published(ops, stock=8, stockShards=SHARDS)
    keys = keys_of(campaign)
    stock = ShardedStock(redis)
    for donor in (1, 2, 3):
        assert (await stock.script.lend(keys.of_shard(donor), f"t{donor}", 0, 2)).amount == 2
    users = [u for u in (f"user-{n}" for n in range(200)) if shard_of(u, SHARDS) == 1][:10]
    client = await make_client()
    reasons = []
    for user in users:  # on shard 1, which has nothing: it must find the stock in flight
        response = await client.post(
            "/api/coupon/issue", json=body(campaign.id), headers=auth(user)
        )
        reasons.append((await response.json())["reason"])
    assert reasons == ["ACCEPTED"] * 8 + ["SOLD_OUT"] * 2
    assert await accounted(redis, stock, keys) == (8, 0, 0)


async def test_randomized_claims_transfers_crashes_and_replays_keep_the_stock_exact(
    ops, redis, clock
):
    rng = random.Random(2026)
    total = 40
    campaign = await published(ops, stock=total, perUserLimit=3, stockShards=SHARDS)
    keys = keys_of(campaign)
    stock = ShardedStock(redis)
    claims = ClaimScript(redis)
    crashed: list[tuple[str, int, int, int]] = []  # lent, never credited nor settled
    accepted = 0
    for step in range(400):
        roll = rng.random()
        if roll < 0.5:  # a claim, on its user's shard
            user = f"u{rng.randrange(30)}"
            shard = keys.of_shard(shard_of(user, SHARDS))
            claim = ClaimInput(user, "dev", f"r{step}", f"c{step}", False, 0, "", "seckill")
            batch = Batch(shard, "20261111", T0_MS + 1, T0_MS + 86_400_000, 600, 10**6, [claim])
            accepted += (await claims(batch)).decisions[0].reason == "ACCEPTED"
        elif roll < 0.75:  # a borrow, finished
            await stock.borrow(keys, SHARDS, rng.randrange(SHARDS), rng.randint(1, 6))
        elif roll < 0.9:  # a lend, then a crash
            donor, recipient = rng.sample(range(SHARDS), 2)
            lent = await stock.script.lend(keys.of_shard(donor), f"x{step}", recipient, 3)
            if lent.amount:
                crashed.append((f"x{step}", donor, recipient, lent.amount))
        elif roll < 0.95 and crashed:  # a credit replayed by hand, maybe twice
            tid, _, recipient, amount = rng.choice(crashed)
            await stock.script.credit(keys.of_shard(recipient), tid, amount)
        else:
            await stock.finish_pending(keys, SHARDS)
        issued, left, flying = await accounted(redis, stock, keys)
        assert issued == accepted
        assert issued + left + flying == total, step
    await stock.finish_pending(keys, SHARDS)
    issued, left, flying = await accounted(redis, stock, keys)
    assert (issued + left, flying) == (total, 0)
    assert issued == total  # the run reached sold out...
    assert len(crashed) > 10  # ...through crashes
    assert [await redis.hlen(k.transfers) for k in all_shards(keys, SHARDS)] == [0] * SHARDS


async def test_redis_failing_while_borrowing_answers_unavailable(client, ops, redis, clock):
    """A donor's transfer log that Redis refuses to touch (a key of the wrong type: a real
    Redis error): the claim that needed to borrow hears UNAVAILABLE, nothing is lent, and
    its retry once the log is usable gets the coupon."""
    clock.set(T0_MS + 1)
    campaign = await published(ops, stock=SHARDS, stockShards=SHARDS)  # one a shard
    keys = keys_of(campaign)
    users = [u for u in (f"fail-{n}" for n in range(200)) if shard_of(u, SHARDS) == 0][:2]
    await redis.set(keys.of_shard(1).transfers, "not a hash")
    first = body(campaign.id)
    assert (
        await (await client.post("/api/coupon/issue", json=first, headers=auth(users[0]))).json()
    )["reason"] == "ACCEPTED"
    second = body(campaign.id)
    answer = await (
        await client.post("/api/coupon/issue", json=second, headers=auth(users[1]))
    ).json()
    assert answer["reason"] == "UNAVAILABLE"
    stock = ShardedStock(redis)
    await redis.delete(keys.of_shard(1).transfers)
    assert await accounted(redis, stock, keys) == (1, 3, 0)
    answer = await (
        await client.post("/api/coupon/issue", json=second, headers=auth(users[1]))
    ).json()
    assert answer["reason"] == "ACCEPTED"
    assert await accounted(redis, stock, keys) == (2, 2, 0)
