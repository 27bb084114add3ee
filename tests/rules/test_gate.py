"""Cities, attribute ranges (token and profile service) and offers, through the claim API.

Every refusal is checked to have written nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from tests.helpers import T0_MS, claim, published, snapshot


@pytest.fixture(autouse=True)
def opened(clock):
    clock.set(T0_MS + 1000)


async def refused(client, redis, campaign, user, reason="NOT_ELIGIBLE", status=403, **kwargs):
    before = await snapshot(redis, campaign)
    code, data = await claim(client, user, campaign.id, **kwargs)
    assert (code, data["reason"]) == (status, reason), data
    assert await snapshot(redis, campaign) == before, "a refused claim wrote something"
    return data


async def test_cities_from_the_token_are_trusted_and_the_body_is_not(client, ops, redis):
    campaign = await published(ops, cities=["shanghai", "hangzhou"], perUserLimit=5)
    assert (await claim(client, "u1", campaign.id, claims={"city": "shanghai"}))[0] == 200
    await refused(client, redis, campaign, "u2", claims={"city": "beijing"})
    await refused(client, redis, campaign, "u3")  # no city in the token
    await refused(client, redis, campaign, "u4", city="shanghai")  # the body is not trusted
    await refused(client, redis, campaign, "u5", claims={"city": "beijing"}, city="shanghai")


async def test_a_campaign_may_take_the_city_from_the_request(client, ops, redis):
    campaign = await published(ops, cities=["shanghai"], citySource="request")
    assert (await claim(client, "u1", campaign.id, city="shanghai"))[0] == 200
    await refused(client, redis, campaign, "u2", city="beijing")
    await refused(client, redis, campaign, "u3", claims={"city": "shanghai"})


async def test_attribute_ranges_from_the_token(client, ops, redis):
    campaign = await published(
        ops,
        audience={
            "ranges": {
                "churnProbability": {"min": 0.5},
                "orderCount": {"min": 1, "max": 10},
                "daysSinceLastOrder": {"min": 30},
            }
        },
    )
    fits: dict[str, float] = {"churnProbability": 0.5, "orderCount": 10, "daysSinceLastOrder": 45}
    assert (await claim(client, "u1", campaign.id, claims={"attrs": fits}))[0] == 200
    changes: list[tuple[str, dict[str, float]]] = [
        ("u2", {"churnProbability": 0.49}),
        ("u3", {"orderCount": 11}),
    ]
    for user, change in changes:
        await refused(client, redis, campaign, user, claims={"attrs": {**fits, **change}})
    missing = {k: v for k, v in fits.items() if k != "daysSinceLastOrder"}
    await refused(client, redis, campaign, "u4", claims={"attrs": missing})


class Profiles:
    """A stand-in for the company's profile service, on a real socket."""

    def __init__(self) -> None:
        self.attributes: dict[str, dict[str, float]] = {}
        self.asked: list[str] = []
        self.delay_s = 0.0
        self.status = 200

    async def handle(self, request: web.Request) -> web.Response:
        user = request.match_info["user"]
        self.asked.append(user)
        await asyncio.sleep(self.delay_s)
        if self.status != 200:
            return web.Response(status=self.status)
        if user not in self.attributes:
            raise web.HTTPNotFound()
        return web.json_response({"attributes": self.attributes[user]})


@pytest.fixture
async def profiles() -> AsyncIterator[tuple[Profiles, str]]:
    service = Profiles()
    app = web.Application()
    app.router.add_get("/v1/users/{user}", service.handle)
    async with TestServer(app) as server:
        yield service, str(server.make_url("/v1/users"))


PROFILED: dict[str, Any] = {
    "audience": {"ranges": {"priceSensitivity": {"min": 0.7}}, "attributesFrom": "profile"},
    "perUserLimit": 3,
}


async def test_attributes_from_the_profile_service_are_cached(make_client, ops, redis, profiles):
    service, url = profiles
    service.attributes = {"u1": {"priceSensitivity": 0.9}, "u2": {"priceSensitivity": 0.2}}
    client = await make_client(profile_url=url, profile_cache_s=60)
    campaign = await published(ops, **PROFILED)
    assert (await claim(client, "u1", campaign.id))[0] == 200
    assert (await claim(client, "u1", campaign.id))[0] == 200
    await refused(client, redis, campaign, "u2")
    await refused(client, redis, campaign, "u3")  # 404: no profile, no attributes
    assert service.asked == ["u1", "u2", "u3"]  # u1 asked once


@pytest.mark.parametrize("trouble", ["slow", "error"])
async def test_a_failing_profile_service_falls_back_as_configured(
    make_client, ops, redis, profiles, trouble
):
    service, url = profiles
    service.attributes = {"u1": {"priceSensitivity": 0.9}}
    if trouble == "slow":
        service.delay_s = 0.5
    else:
        service.status = 500
    campaign = await published(ops, **PROFILED)
    by_token = await make_client(profile_url=url, profile_timeout_ms=50)
    fits = {"attrs": {"priceSensitivity": 0.8}}
    assert (await claim(by_token, "u1", campaign.id, claims=fits))[0] == 200
    await refused(by_token, redis, campaign, "u2")  # the token says nothing: not eligible
    refusing = await make_client(profile_url=url, profile_timeout_ms=50, profile_fallback="refuse")
    data = await refused(refusing, redis, campaign, "u3", "UNAVAILABLE", 503, claims=fits)
    assert data["retryAfterMs"] == 1000


async def test_holding_one_coupon_offers_another(client, ops, redis):
    new_user = await published(ops, id="welcome-new")
    returning = await published(ops, id="welcome-back")
    offered = await published(
        ops,
        id="welcome-alt",
        audience={"offers": [{"holds": "welcome-new", "offer": "welcome-back"}]},
    )
    assert (await claim(client, "u1", new_user.id))[0] == 200
    data = await refused(client, redis, offered, "u1")
    assert data["offer"] == "welcome-back"
    assert (await claim(client, "u1", returning.id))[0] == 200
    assert (await claim(client, "u2", offered.id))[0] == 200  # holds nothing: claims it


async def test_flashclaim_token_mints_city_and_attributes(client, ops, settings):
    from gateway.infra.auth import InvalidClaims, user_token

    campaign = await published(
        ops, cities=["shanghai"], audience={"ranges": {"churnProbability": {"min": 0.5}}}
    )
    minted = user_token(
        settings, "u1", ttl_s=3600, now_s=T0_MS // 1000, city="shanghai",
        attrs={"churnProbability": 0.6},
    )  # fmt: skip
    response = await client.post(
        "/api/coupon/issue",
        json={"campaignId": campaign.id, "requestId": "req-minted-1", "deviceId": "d1",
              "channel": "seckill"},
        headers={"Authorization": f"Bearer {minted}"},
    )  # fmt: skip
    assert response.status == 200
    with pytest.raises(InvalidClaims, match="city"):
        user_token(settings, "u1", ttl_s=60, now_s=0, city="Shanghai")
    with pytest.raises(InvalidClaims, match="attr"):
        user_token(settings, "u1", ttl_s=60, now_s=0, attrs={"Bad Name": 1.0})
