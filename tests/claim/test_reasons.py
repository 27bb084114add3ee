"""Every reason a claim can get, through the HTTP endpoint, against real Redis.

Each refusal is also checked to have written nothing.
"""

from __future__ import annotations

import asyncio

import pytest
from prometheus_client import REGISTRY

from gateway.app import SUBSCRIBED
from gateway.campaigns.ops import keys_of
from gateway.keys import CAMPAIGN_INDEX
from gateway.stack.servers import free_port
from tests.helpers import DAY_MS, T0_MS, auth, body, claim, published, snapshot


@pytest.fixture
def opened(clock):
    """Move the clock just past T0."""
    clock.set(T0_MS + 1000)


async def refused(client, redis, campaign, user, reason, status=409, **kwargs):
    before = await snapshot(redis, campaign)
    code, data = await claim(client, user, campaign.id, **kwargs)
    assert (code, data["reason"]) == (status, reason), data
    assert data["code"] != 0
    assert data["message"]
    assert await snapshot(redis, campaign) == before, "a refused claim wrote something"
    return data


@pytest.mark.usefixtures("opened")
async def test_sold_out(client, ops, redis):
    campaign = await published(ops, stock=1)
    assert (await claim(client, "u1", campaign.id))[0] == 200
    await refused(client, redis, campaign, "u2", "SOLD_OUT")


@pytest.mark.usefixtures("opened")
async def test_daily_sold_out_then_next_day(client, ops, redis, clock):
    campaign = await published(ops, stock=5, dailyStock=1)
    assert (await claim(client, "u1", campaign.id))[0] == 200
    await refused(client, redis, campaign, "u2", "DAILY_SOLD_OUT")
    clock.advance(DAY_MS)
    assert (await claim(client, "u2", campaign.id))[0] == 200


@pytest.mark.usefixtures("opened")
async def test_budget_exhausted(client, ops, redis):
    campaign = await published(ops, stock=5, budgetCents=15_000)  # one 100-yuan coupon
    assert (await claim(client, "u1", campaign.id))[0] == 200
    await refused(client, redis, campaign, "u2", "BUDGET_EXHAUSTED")


@pytest.mark.usefixtures("opened")
async def test_user_limit(client, ops, redis):
    campaign = await published(ops, perUserLimit=2)
    assert (await claim(client, "u1", campaign.id))[0] == 200
    assert (await claim(client, "u1", campaign.id))[0] == 200
    await refused(client, redis, campaign, "u1", "USER_LIMIT")


@pytest.mark.usefixtures("opened")
async def test_user_daily_limit(client, ops, redis, clock):
    campaign = await published(ops, perUserLimit=3, perUserDailyLimit=1)
    assert (await claim(client, "u1", campaign.id))[0] == 200
    await refused(client, redis, campaign, "u1", "USER_DAILY_LIMIT")
    clock.advance(DAY_MS)
    assert (await claim(client, "u1", campaign.id))[0] == 200


@pytest.mark.usefixtures("opened")
async def test_device_limit(client, ops, redis):
    campaign = await published(ops, perDeviceLimit=1)
    assert (await claim(client, "u1", campaign.id, device="shared"))[0] == 200
    await refused(client, redis, campaign, "u2", "DEVICE_LIMIT", device="shared")


async def test_not_started_says_when(client, ops, redis):
    campaign = await published(ops)
    before = await snapshot(redis, campaign)
    response = await client.post("/api/coupon/issue", json=body(campaign.id), headers=auth("u1"))
    assert response.status == 409
    data = await response.json()
    assert data["reason"] == "NOT_STARTED"
    assert int(response.headers["Retry-After"]) == 600  # the clock is 10 minutes before T0
    assert data["retryAfterMs"] == 600_000  # exact, for a page's countdown
    assert await snapshot(redis, campaign) == before


async def test_ended(client, ops, redis, clock):
    campaign = await published(ops)
    clock.set(T0_MS + 3 * DAY_MS)
    await refused(client, redis, campaign, "u1", "ENDED", status=410)


@pytest.mark.usefixtures("opened")
async def test_paused_then_resumed(client, ops, redis):
    campaign = await published(ops)
    await ops.pause(campaign.id)
    await refused(client, redis, campaign, "u1", "PAUSED")
    await ops.resume(campaign.id)
    assert (await claim(client, "u1", campaign.id))[0] == 200


@pytest.mark.usefixtures("opened")
@pytest.mark.parametrize(
    ("audience", "channels", "claims", "channel"),
    [
        pytest.param({"newUsersOnly": True}, [], {"new_user": False}, "seckill", id="new-only"),
        pytest.param({"minLevel": 3}, [], {"level": 2}, "seckill", id="level"),
        pytest.param({"tags": ["vip", "gold"]}, [], {"tags": ["silver"]}, "seckill", id="tags"),
        pytest.param({}, ["skydrop"], {}, "seckill", id="channel"),
    ],
)
async def test_not_eligible(client, ops, redis, audience, channels, claims, channel):
    campaign = await published(ops, audience=audience, channels=channels)
    await refused(
        client, redis, campaign, "u1", "NOT_ELIGIBLE", status=403, claims=claims, channel=channel
    )


@pytest.mark.usefixtures("opened")
async def test_eligible_audience_is_accepted(client, ops):
    campaign = await published(
        ops, audience={"newUsersOnly": True, "minLevel": 3, "tags": ["vip"]}, channels=["skydrop"]
    )
    code, data = await claim(
        client,
        "u1",
        campaign.id,
        channel="skydrop",
        claims={"new_user": True, "level": 4, "tags": ["bronze", "vip"]},
    )
    assert code == 200, data


@pytest.mark.usefixtures("opened")
async def test_exclusive_conflict_until_the_held_coupon_expires(client, ops, redis, clock):
    first = await published(ops, exclusionGroup="d11-big", validity={"mode": "end_of_claim_day"})
    second = await published(ops, exclusionGroup="d11-big")
    other = await published(ops)
    assert (await claim(client, "u1", first.id))[0] == 200
    await refused(client, redis, second, "u1", "EXCLUSIVE_CONFLICT")
    assert (await claim(client, "u1", other.id))[0] == 200  # not in the group
    clock.advance(DAY_MS)  # the first coupon expired at midnight
    assert (await claim(client, "u1", second.id))[0] == 200


@pytest.mark.usefixtures("opened")
@pytest.mark.parametrize("blocked", ["user", "device"])
async def test_blocked(client, ops, redis, blocked):
    campaign = await published(ops)
    await ops.block(
        campaign.id,
        ["u1"] if blocked == "user" else [],
        ["bad-phone"] if blocked == "device" else [],
    )
    device = "bad-phone" if blocked == "device" else "good-phone"
    await refused(client, redis, campaign, "u1", "BLOCKED", status=403, device=device)


@pytest.mark.usefixtures("opened")
async def test_unknown_and_draft_campaigns(client, ops, redis):
    code, data = await claim(client, "u1", "no-such-campaign")
    assert (code, data["reason"]) == (404, "UNKNOWN_CAMPAIGN")
    from gateway.campaigns.spec import decode_spec
    from tests.helpers import spec

    draft = await ops.create(decode_spec(spec()))
    code, data = await claim(client, "u1", draft.id)
    assert (code, data["reason"]) == (404, "UNKNOWN_CAMPAIGN")
    assert await redis.hget(CAMPAIGN_INDEX, draft.id) is None


@pytest.mark.usefixtures("opened")
async def test_replay_returns_the_same_coupon_and_counts_once(client, ops, redis):
    campaign = await published(ops, stock=10, perUserLimit=5)
    first = await client.post(
        "/api/coupon/issue", json=body(campaign.id, request_id="click-0001"), headers=auth("u1")
    )
    again = await client.post(
        "/api/coupon/issue", json=body(campaign.id, request_id="click-0001"), headers=auth("u1")
    )
    assert first.status == again.status == 200
    assert await first.json() == await again.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    assert (
        REGISTRY.get_sample_value("flashclaim_claim_replays_total", {"campaign": campaign.id}) == 1
    )
    assert await redis.hget(keys_of(campaign).counters, "issued") == "1"


@pytest.mark.usefixtures("opened")
async def test_replay_after_sell_out_still_returns_the_coupon(make_client, ops):
    client = await make_client(sold_out_cache_ms=60_000)
    campaign = await published(ops, stock=1)
    code, won = await claim(client, "u1", campaign.id, request_id="click-winner")
    assert code == 200
    for user in ("u2", "u3"):  # the second one is answered from the sold-out memory
        assert (await claim(client, user, campaign.id))[1]["reason"] == "SOLD_OUT"
    code, again = await claim(client, "u1", campaign.id, request_id="click-winner")
    assert (code, again) == (200, won)


@pytest.mark.usefixtures("opened")
@pytest.mark.parametrize("change", ["device", "user"])
async def test_request_id_reused_for_another_claim_is_a_mismatch(client, ops, redis, change):
    campaign = await published(ops, perUserLimit=5)
    assert (await claim(client, "u1", campaign.id, request_id="click-0002"))[0] == 200
    await refused(
        client,
        redis,
        campaign,
        "u2" if change == "user" else "u1",
        "REQUEST_MISMATCH",
        request_id="click-0002",
        device="dev-2" if change == "device" else "dev-1",
    )


@pytest.mark.usefixtures("opened")
async def test_request_id_is_scoped_to_its_campaign(client, ops, redis):
    first, second = await published(ops), await published(ops)
    code, won = await claim(client, "u1", first.id, request_id="click-0003")
    assert code == 200
    code, other = await claim(client, "u2", second.id, request_id="click-0003")
    assert (code, other["reason"]) == (200, "ACCEPTED")
    assert other["couponId"] != won["couponId"]
    assert await redis.hget(keys_of(second).users, "u2") == "1"


@pytest.mark.usefixtures("opened")
async def test_a_refused_claim_binds_nothing(client, ops, redis):
    campaign = await published(ops, perUserLimit=1)
    assert (await claim(client, "u1", campaign.id))[0] == 200
    await refused(client, redis, campaign, "u1", "USER_LIMIT", request_id="click-0004")
    code, won = await claim(client, "u2", campaign.id, request_id="click-0004")
    assert (code, won["reason"]) == (200, "ACCEPTED")


@pytest.mark.usefixtures("opened")
async def test_overloaded_when_outbox_is_full(make_client, ops, redis):
    client = await make_client(outbox_max_len=1)
    campaign = await published(ops)
    assert (await claim(client, "u1", campaign.id))[0] == 200
    await refused(client, redis, campaign, "u2", "OVERLOADED", status=503)


@pytest.mark.usefixtures("opened")
async def test_unavailable_when_redis_is_down(make_client, ops):
    client = await make_client(redis_url=f"redis://127.0.0.1:{free_port()}/0", redis_timeout_ms=200)
    code, data = await claim(client, "u1", "any-campaign")
    assert (code, data["reason"]) == (503, "UNAVAILABLE")


@pytest.mark.usefixtures("opened")
async def test_unavailable_while_recovering(client, ops, redis):
    campaign = await published(ops)
    await redis.hset(keys_of(campaign).config, "status", "recovering")
    await refused(client, redis, campaign, "u1", "UNAVAILABLE", status=503)


@pytest.mark.usefixtures("opened")
async def test_rate_limited_with_retry_after(make_client, ops):
    client = await make_client(user_rate=1, user_burst=1)
    campaign = await published(ops, perUserLimit=5)
    assert (await claim(client, "u1", campaign.id))[0] == 200
    response = await client.post("/api/coupon/issue", json=body(campaign.id), headers=auth("u1"))
    assert response.status == 429
    data = await response.json()
    assert data["reason"] == "RATE_LIMITED"
    assert response.headers["Retry-After"] == "1"
    assert 0 < data["retryAfterMs"] <= 1000
    assert (await claim(client, "u2", campaign.id))[0] == 200  # others are not slowed


@pytest.mark.usefixtures("opened")
async def test_operator_changes_reach_a_caching_worker_at_once(make_client, ops):
    """With a long cache, the pause and the top-up still apply at once (pub/sub)."""
    client = await make_client(campaign_cache_ms=600_000, sold_out_cache_ms=600_000)
    await asyncio.wait_for(client.app[SUBSCRIBED].wait(), 5)
    campaign = await published(ops, stock=1)
    assert (await claim(client, "u1", campaign.id))[0] == 200
    assert (await claim(client, "u2", campaign.id))[1]["reason"] == "SOLD_OUT"

    async def answer(user: str, reason: str) -> None:
        for _ in range(50):
            if (await claim(client, user, campaign.id))[1]["reason"] == reason:
                return
            await asyncio.sleep(0.02)
        pytest.fail(f"{user} never got {reason}")

    await ops.top_up(campaign.id, 1, 0)
    await answer("u2", "ACCEPTED")
    await ops.pause(campaign.id)
    await answer("u3", "PAUSED")
