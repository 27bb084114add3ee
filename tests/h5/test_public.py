"""The public campaign endpoint: what it tells, when, from memory, and while Redis is away."""

from __future__ import annotations

import asyncio

import msgspec
import pytest

from gateway.campaigns.ops import write_campaign
from gateway.campaigns.spec import Campaign, decode_spec
from gateway.h5 import public as public_module
from gateway.h5.public import LOAD_ERRORS, PublicViews
from gateway.infra.clients import redis_client
from gateway.stack.servers import RedisServer
from tests.helpers import DAY_MS, T0_MS, claim, published, spec


async def public(client, campaign_id, query=""):
    response = await client.get(f"/api/campaigns/{campaign_id}/public{query}")
    return response, await response.json()


async def test_an_upcoming_campaign_says_when_it_opens(client, ops, clock):
    campaign = await published(ops, name="双11 满500减100")
    response, view = await public(client, campaign.id)
    assert response.status == 200
    assert response.headers["Cache-Control"] == "public, max-age=1"
    assert view == {
        "id": campaign.id,
        "name": "双11 满500减100",
        "status": "upcoming",
        "startsAtMs": T0_MS,
        "endsAtMs": T0_MS + 3 * DAY_MS,
        "opensAtMs": T0_MS,
        "serverNowMs": clock.now_ms(),
        "stockLeft": "plenty",
        "channel": "h5",
        "page": {
            "title": "双11 满500减100",
            "subtitle": "",
            "buttonText": "",
            "headerImageUrl": "",
        },
        "ruleText": {
            "zh": "满¥500减¥100，领取后7天内有效。",
            "en": "¥100 off orders of ¥500 or more; valid for 7 days after claiming.",
        },
    }


async def test_status_and_stock_band_follow_claims_the_clock_and_operators(client, ops, clock):
    campaign = await published(ops, stock=20, perUserLimit=1)
    clock.set(T0_MS)
    assert (await public(client, campaign.id))[1]["status"] == "open"
    assert (await public(client, campaign.id))[1]["opensAtMs"] is None
    for n in range(17):
        assert (await claim(client, f"u{n}", campaign.id))[0] == 200
    assert (await public(client, campaign.id))[1]["stockLeft"] == "plenty"  # 3 of 20 left
    assert (await claim(client, "u17", campaign.id))[0] == 200
    assert (await public(client, campaign.id))[1]["stockLeft"] == "few"  # 2 of 20: a tenth
    await ops.pause(campaign.id)
    assert (await public(client, campaign.id))[1]["status"] == "paused"
    await ops.resume(campaign.id)
    for n in (18, 19):
        assert (await claim(client, f"u{n}", campaign.id))[0] == 200
    _, view = await public(client, campaign.id)
    assert (view["status"], view["stockLeft"]) == ("sold_out", "none")
    await ops.top_up(campaign.id, 5, 0)
    _, view = await public(client, campaign.id)
    assert (view["status"], view["stockLeft"]) == ("open", "plenty")
    clock.set(T0_MS + 3 * DAY_MS)
    assert (await public(client, campaign.id))[1]["status"] == "ended"


async def test_a_budget_that_cannot_cover_another_coupon_is_sold_out(client, ops, clock):
    campaign = await published(ops, stock=100, budgetCents=25_000)  # two coupons of 100
    clock.set(T0_MS)
    for user in ("a", "b"):
        assert (await claim(client, user, campaign.id))[0] == 200
    _, view = await public(client, campaign.id)
    assert (view["status"], view["stockLeft"]) == ("sold_out", "none")


async def test_each_channel_gets_its_copy_over_the_default(client, ops):
    pages = {
        "default": {"subtitle": "每人限领1张", "buttonText": "马上抢"},
        "channels": {
            "partner-a": {"title": "A 专享", "headerImageUrl": "https://cdn.example.com/a.png"}
        },
    }
    campaign = await published(ops, name="双11", pages=pages)
    _, view = await public(client, campaign.id, "?channel=partner-a")
    assert view["channel"] == "partner-a"
    assert view["page"] == {
        "title": "A 专享",
        "subtitle": "每人限领1张",
        "buttonText": "马上抢",
        "headerImageUrl": "https://cdn.example.com/a.png",
    }
    _, view = await public(client, campaign.id, "?channel=other")
    assert view["page"]["title"] == "双11"
    assert view["page"]["headerImageUrl"] == ""


@pytest.mark.parametrize("campaign_id", ["no-such-campaign", "has%20space", "x" * 65, "%00"])
async def test_unknown_campaigns_are_404_and_cacheable(client, campaign_id):
    response, body = await public(client, campaign_id)
    assert (response.status, body["reason"]) == (404, "UNKNOWN_CAMPAIGN")
    assert response.headers["Cache-Control"] == "public, max-age=1"


async def test_a_draft_is_unknown_and_a_bad_channel_is_refused(client, ops):
    draft = await ops.create(decode_spec(spec()))
    assert (await public(client, draft.id))[0].status == 404
    live = await published(ops)
    for channel in ("Partner", "a b", "x" * 33, "%00", "a%0A"):
        response, body = await public(client, live.id, f"?channel={channel}")
        assert (response.status, body["reason"]) == (400, "INVALID_REQUEST"), channel


async def test_the_herd_is_answered_from_memory(make_client, redis, ops, clock):
    """A thousand polls in a second cost one read of Redis per worker; the time is fresh."""
    client = await make_client(campaign_cache_ms=1000)
    campaign = await published(ops)

    async def hmget_calls() -> int:
        stats = await redis.info("commandstats")
        return int(stats.get("cmdstat_hmget", {}).get("calls", 0))

    before = await hmget_calls()
    herd = await asyncio.gather(*(public(client, campaign.id) for _ in range(200)))
    assert {response.status for response, _ in herd} == {200}
    assert await hmget_calls() - before == 2  # config and counters, once
    await ops.pause(campaign.id)
    clock.advance(999)
    _, view = await public(client, campaign.id)
    assert (view["status"], view["serverNowMs"]) == ("upcoming", clock.now_ms())
    clock.advance(1)
    assert (await public(client, campaign.id))[1]["status"] == "paused"
    assert await hmget_calls() - before == 4


async def test_while_redis_is_away_the_last_view_is_served(tmp_path, clock):
    server = RedisServer(tmp_path).start()
    redis = redis_client(_settings(server.url))
    try:
        campaign = msgspec.convert({**spec(id="stale-1"), "status": "active"}, type=Campaign)
        await write_campaign(redis, campaign)
        views = PublicViews(redis, clock, ttl_ms=1000, timeout_s=0.5)
        view = await views.public("stale-1", "h5")
        assert view is not None
        assert view.status == "upcoming"
        server.stop()
        clock.set(T0_MS + 1000)
        view = await views.public("stale-1", "h5")
        assert view is not None
        assert (view.status, view.server_now_ms) == ("open", T0_MS + 1000)
        with pytest.raises(LOAD_ERRORS):  # never read: nothing to serve
            await views.public("never-read", "h5")
    finally:
        await redis.aclose()
        server.stop()


def _settings(url):
    from gateway.infra.settings import Settings
    from tests.helpers import ADMIN_TOKEN, JWT_SECRET

    return Settings.from_env(
        {}, redis_url=url, jwt_secret=JWT_SECRET, admin_token=ADMIN_TOKEN, redis_timeout_ms=300
    )


async def test_made_up_ids_are_remembered_in_bounded_memory(redis, clock, monkeypatch):
    monkeypatch.setattr(public_module, "MAX_ENTRIES", 3)
    views = PublicViews(redis, clock, ttl_ms=1000, timeout_s=1.0)
    for n in range(10):
        assert await views.public(f"made-up-{n}", "h5") is None
    assert list(views._entries) == ["made-up-7", "made-up-8", "made-up-9"]


async def test_a_clock_stepping_back_does_not_freeze_the_view(make_client, ops, clock):
    client = await make_client(campaign_cache_ms=1000)
    campaign = await published(ops)
    assert (await public(client, campaign.id))[1]["status"] == "upcoming"
    await ops.pause(campaign.id)
    clock.advance(-60_000)
    assert (await public(client, campaign.id))[1]["status"] == "paused"
