"""Redeem codes end to end: one use, replay, typos caught, guessers locked out, and a wrong
code indistinguishable from a used one."""

from __future__ import annotations

import asyncio

import pytest

from gateway.campaigns.ops import keys_of
from gateway.channels.code_store import CodeBatches
from gateway.channels.codes import ALPHABET, CodeHasher, generate, pretty
from gateway.keys import code_failures
from tests.channels.conftest import outbox_users
from tests.helpers import T0_MS, auth, published


@pytest.fixture
async def gateway(make_client, clock):
    clock.set(T0_MS + 1)
    return await make_client()


@pytest.fixture
def batches(settings, pool, redis):
    return CodeBatches(
        pool, redis, CodeHasher.for_settings(settings.code_secret, settings.jwt_secret)
    )


async def redeem(client, user, code, request_id, device="dev-1"):
    response = await client.post(
        "/api/coupon/redeem",
        json={"code": code, "requestId": request_id, "deviceId": device},
        headers=auth(user),
    )
    return response, await response.json()


def unissued() -> str:
    """A well-formed code nobody issued."""
    return next(generate(1))


async def test_a_code_works_once_and_its_retry_replays(gateway, ops, redis, batches):
    campaign = await published(ops, stock=10, perUserLimit=5)
    _, [code, other] = await batches.create(campaign.id, 2)

    first, won = await redeem(gateway, "alice", pretty(code).lower(), "redeem-a-1")
    retry, again = await redeem(gateway, "alice", code, "redeem-a-1")
    stolen, used = await redeem(gateway, "bob", code, "redeem-b-1", device="dev-2")
    twice, used_again = await redeem(gateway, "alice", code, "redeem-a-2")
    guessed, wrong = await redeem(gateway, "bob", unissued(), "redeem-b-2", device="dev-2")

    assert first.status == 200
    assert won["reason"] == "ACCEPTED"
    assert retry.status == 200
    assert again["couponId"] == won["couponId"]
    assert retry.headers["Idempotent-Replayed"] == "true"
    # Used (by another, or by oneself) and never issued: the same answer.
    assert stolen.status == twice.status == guessed.status == 409
    assert used == used_again == wrong
    assert wrong["reason"] == "CODE_INVALID"
    keys = keys_of(campaign)
    assert await outbox_users(redis, keys.outbox) == ["alice"]
    [entry] = await redis.xrange(keys.outbox)
    assert entry[1]["channel"] == "code"
    assert (await redeem(gateway, "bob", other, "redeem-b-3", device="dev-2"))[1]["reason"] == (
        "ACCEPTED"
    )


async def test_two_users_racing_for_one_code_one_wins(make_client, ops, redis, batches, clock):
    clock.set(T0_MS + 1)
    campaign = await published(ops, stock=100)
    _, [code] = await batches.create(campaign.id, 1)
    gateways = [await make_client() for _ in range(3)]
    answers = await asyncio.gather(
        *(
            redeem(gateways[n % 3], f"racer-{n}", code, f"race-{n:05d}", device=f"d-{n}")
            for n in range(30)
        )
    )
    reasons = sorted(body["reason"] for _, body in answers)
    assert reasons == ["ACCEPTED"] + ["CODE_INVALID"] * 29
    assert int(await redis.hget(keys_of(campaign).counters, "issued")) == 1


async def test_a_typo_is_caught_before_any_lookup_and_costs_nothing(gateway, ops, redis, batches):
    campaign = await published(ops, stock=10)
    _, [code] = await batches.create(campaign.id, 1)
    typo = code[:5] + next(c for c in ALPHABET if c != code[5]) + code[6:]
    response, body = await redeem(gateway, "carol", typo, "typo-0001")
    assert response.status == 422
    assert body["reason"] == "CODE_MISTYPED"
    assert await redis.get(code_failures("user", "carol")) is None
    assert (await redeem(gateway, "carol", code, "typo-0002"))[1]["reason"] == "ACCEPTED"


async def test_guessers_are_locked_out_by_user_and_by_device(gateway, ops, batches, settings):
    campaign = await published(ops, stock=10)
    _, [code] = await batches.create(campaign.id, 1)
    for n in range(settings.code_max_failures):
        _, body = await redeem(gateway, "mallory", unissued(), f"guess-{n:04d}", device="farm-1")
        assert body["reason"] == "CODE_INVALID"
    locked, body = await redeem(gateway, "mallory", code, "guess-right", device="farm-1")
    assert locked.status == 429
    assert body["reason"] == "CODE_LOCKED"
    assert int(locked.headers["Retry-After"]) == settings.code_lockout_s
    # Another account on the locked device: locked too. The device's code stays unused.
    _, body = await redeem(gateway, "mallory-2", code, "guess-alt", device="farm-1")
    assert body["reason"] == "CODE_LOCKED"
    # Honest users elsewhere are not affected.
    _, body = await redeem(gateway, "erin", code, "honest-1", device="dev-erin")
    assert body["reason"] == "ACCEPTED"


async def test_a_used_code_of_a_sold_out_campaign_still_looks_wrong(gateway, ops, batches):
    campaign = await published(ops, stock=1)
    _, [code, spare] = await batches.create(campaign.id, 2)
    assert (await redeem(gateway, "frank", code, "sold-0001"))[1]["reason"] == "ACCEPTED"
    _, used = await redeem(gateway, "grace", code, "sold-0002", device="dev-g")
    _, wrong = await redeem(gateway, "grace", unissued(), "sold-0003", device="dev-g")
    assert used == wrong
    _, unused = await redeem(gateway, "grace", spare, "sold-0004", device="dev-g")
    assert unused["reason"] == "SOLD_OUT"  # a right code, but nothing left: it stays unused


async def test_codes_are_only_for_published_campaigns(client, ops, batches):
    from gateway.campaigns.spec import decode_spec
    from tests.helpers import ADMIN_TOKEN, spec

    draft = await ops.create(decode_spec(spec()))
    response = await client.post(
        f"/admin/campaigns/{draft.id}/codes", json={"count": 3},
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
    )  # fmt: skip
    assert response.status == 409
    await ops.publish(draft.id)
    response = await client.post(
        f"/admin/campaigns/{draft.id}/codes", json={"count": 3},
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
    )  # fmt: skip
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/csv")
    assert len((await response.text()).splitlines()) == 4
