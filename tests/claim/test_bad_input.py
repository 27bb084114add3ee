"""Bad input of every kind gets a clear 4xx with a stable reason, and changes nothing."""

from __future__ import annotations

import time
import warnings

import jwt
import orjson
import pytest

from tests.helpers import JWT_SECRET, T0_MS, auth, body, published, snapshot, token


@pytest.fixture
async def campaign(ops, clock):
    clock.set(T0_MS + 1000)
    return await published(ops)


async def post(client, data, headers, **kwargs):
    response = await client.post("/api/coupon/issue", data=data, headers=headers, **kwargs)
    return response.status, await response.json()


def json_headers(user="u1", **claims):
    return {**auth(user, **claims), "Content-Type": "application/json"}


GOOD_BODY = {"campaignId": "c", "requestId": "req-00001", "deviceId": "d", "channel": "a"}

BODIES = [
    pytest.param(b"{", 400, id="truncated-json"),
    pytest.param(b"not json at all", 400, id="garbage"),
    pytest.param(b"", 400, id="empty"),
    pytest.param(b"[]", 422, id="array"),
    pytest.param(
        b'{"campaignId": 5, "requestId": "req-00001", "deviceId": "d", "channel": "a"}',
        422,
        id="wrong-type",
    ),
    pytest.param(
        b'{"requestId": "req-00001", "deviceId": "d", "channel": "a"}', 422, id="missing-field"
    ),
    pytest.param(
        b'{"campaignId": "c", "requestId": "req-00001", "deviceId": "d", "channel": "a",'
        b' "userId": "someone-else"}',
        422,
        id="unknown-field-user-id",
    ),
    pytest.param(
        b'{"campaignId": "c", "requestId": "short", "deviceId": "d", "channel": "a"}',
        422,
        id="request-id-too-short",
    ),
    pytest.param(
        b'{"campaignId": "c", "requestId": "req 00001", "deviceId": "d", "channel": "a"}',
        422,
        id="request-id-space",
    ),
    pytest.param(
        b'{"campaignId": "c", "requestId": "req-00001", "deviceId": "d\\t1", "channel": "a"}',
        422,
        id="device-control-char",
    ),
    pytest.param(
        b'{"campaignId": "../etc", "requestId": "req-00001", "deviceId": "d", "channel": "a"}',
        422,
        id="campaign-path",
    ),
    pytest.param(
        b'{"campaignId": "c", "requestId": "req-00001", "deviceId": "d", "channel": "SECKILL!"}',
        422,
        id="channel-pattern",
    ),
    pytest.param(b"\xff\xfe{}", 400, id="not-utf8"),
    *(  # msgspec's pattern is a re.search, where "$" also matches before a final newline
        pytest.param(
            orjson.dumps({**GOOD_BODY, field: GOOD_BODY[field] + "\n"}), 422, id=f"{field}-newline"
        )
        for field in GOOD_BODY
    ),
]


@pytest.mark.parametrize(("data", "status"), BODIES)
async def test_bad_body_is_refused_and_changes_nothing(client, redis, campaign, data, status):
    data = data.replace(b'"c"', f'"{campaign.id}"'.encode())
    before = await snapshot(redis, campaign)
    code, answer = await post(client, data, json_headers())
    assert (code, answer["reason"], answer["code"]) == (status, "INVALID_REQUEST", 21), answer
    assert answer["message"]
    assert await snapshot(redis, campaign) == before


async def test_huge_body_is_413(client, redis, campaign):
    before = await snapshot(redis, campaign)
    code, answer = await post(client, b'{"x": "' + b"a" * 100_000 + b'"}', json_headers())
    assert (code, answer["reason"]) == (413, "INVALID_REQUEST")
    assert await snapshot(redis, campaign) == before


async def test_wrong_content_type_is_415(client, campaign):
    import orjson

    headers = {**auth("u1"), "Content-Type": "text/plain"}
    code, answer = await post(client, orjson.dumps(body(campaign.id)), headers)
    assert (code, answer["reason"]) == (415, "INVALID_REQUEST")


def _none_token(user: str) -> str:
    return jwt.encode({"sub": user, "exp": int(time.time()) + 60}, key=None, algorithm="none")


def _hs512_token(user: str) -> str:
    with warnings.catch_warnings():  # our secret is short for HS512, which is the point
        warnings.simplefilter("ignore")
        return jwt.encode({"sub": user, "exp": 2_000_000_000}, JWT_SECRET, "HS512")


TOKENS = [
    pytest.param({}, id="missing-header"),
    pytest.param({"Authorization": "Basic dTE6cA=="}, id="basic-scheme"),
    pytest.param({"Authorization": "Bearer"}, id="bearer-without-token"),
    pytest.param({"Authorization": "Bearer not.a.jwt"}, id="garbage-token"),
    pytest.param({"Authorization": f"Bearer {_none_token('u1')}"}, id="alg-none"),
    pytest.param(
        {
            "Authorization": "Bearer "
            + jwt.encode(
                {"sub": "u1", "exp": 2_000_000_000}, "another-secret-0123456789abcdefghijk", "HS256"
            )
        },
        id="wrong-secret",
    ),
    pytest.param(
        {"Authorization": f"Bearer {_hs512_token('u1')}"},
        id="unpinned-algorithm",
    ),
    pytest.param({"Authorization": f"Bearer {token('u1', expires_ms=T0_MS)}"}, id="expired"),
    pytest.param(
        {"Authorization": "Bearer " + jwt.encode({"exp": 2_000_000_000}, JWT_SECRET, "HS256")},
        id="no-sub",
    ),
    pytest.param(
        {
            "Authorization": "Bearer "
            + jwt.encode({"sub": "u\t1", "exp": 2_000_000_000}, JWT_SECRET, "HS256")
        },
        id="bad-sub",
    ),
    pytest.param(
        {"Authorization": "Bearer " + jwt.encode({"sub": "u1"}, JWT_SECRET, "HS256")},
        id="no-exp",
    ),
    pytest.param({"Authorization": "Bearer " + "a" * 5000}, id="huge-token"),
]


@pytest.mark.parametrize("headers", TOKENS)
async def test_bad_token_is_401_and_changes_nothing(client, redis, campaign, headers):
    import orjson

    before = await snapshot(redis, campaign)
    code, answer = await post(
        client, orjson.dumps(body(campaign.id)), {**headers, "Content-Type": "application/json"}
    )
    assert (code, answer["reason"], answer["code"]) == (401, "UNAUTHORIZED", 22), answer
    assert await snapshot(redis, campaign) == before


async def test_token_expiring_later_on_our_clock_is_refused_then(client, campaign, clock):
    import orjson

    headers = {**auth("u1", expires_ms=T0_MS + 5000), "Content-Type": "application/json"}
    assert (await post(client, orjson.dumps(body(campaign.id)), headers))[0] == 200
    clock.advance(10_000)
    code, answer = await post(client, orjson.dumps(body(campaign.id)), headers)
    assert (code, answer["reason"]) == (401, "UNAUTHORIZED")


async def test_unknown_route_and_method_are_json(client):
    response = await client.get("/api/nothing-here")
    assert response.status == 404
    assert (await response.json())["reason"] == "NOT_FOUND"
    response = await client.get("/api/coupon/issue")
    assert response.status == 405
    assert (await response.json())["reason"] == "METHOD_NOT_ALLOWED"
