"""The edge of every request: bytes a client controls never earn a 5xx, each request has
an id in its answer and its log lines, a client that hangs up is a client error."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping

import orjson
import pytest
from aiohttp import web

from gateway.app import create_app
from gateway.infra.settings import ConfigError
from gateway.stack.servers import free_port
from tests.helpers import ADMIN_TOKEN, T0_MS, auth, body, published
from tests.rawhttp import exchange, request

CLAIM = "/api/coupon/issue"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@pytest.fixture
async def campaign(ops, clock):
    clock.set(T0_MS + 1000)
    return await published(ops)


def claim_request(
    campaign_id: str, headers: Mapping[str, bytes | str], raw_body: bytes = b""
) -> bytes:
    data = raw_body or orjson.dumps(body(campaign_id))
    return request("POST", CLAIM, {"Content-Type": "application/json", **headers}, data)


@pytest.mark.parametrize(
    ("method", "path"), [("POST", CLAIM), ("GET", "/admin/campaigns")], ids=["claim", "admin"]
)
async def test_authorization_that_is_not_utf8_is_401(client, campaign, method, path):
    data = claim_request(campaign.id, {"Authorization": b"Bearer \xff\xfe\x80"})
    if method == "GET":
        data = request("GET", path, {"Authorization": b"Bearer \xff\xfe" + ADMIN_TOKEN.encode()})
    answer = await exchange(client.server.port, data)
    assert answer is not None
    assert (answer.status, answer.json()["reason"]) == (401, "UNAUTHORIZED"), answer


async def test_invalid_utf8_inside_a_json_string_is_400(client, campaign):
    raw = orjson.dumps(body(campaign.id)).replace(b"dev-1", b"dev\xff1")
    answer = await exchange(client.server.port, claim_request(campaign.id, auth("u1"), raw))
    assert answer is not None
    assert (answer.status, answer.json()["reason"]) == (400, "INVALID_REQUEST")
    spec = b'{"id": "utf8-x", "name": "\xff\xfe"}'
    admin = request("POST", "/admin/campaigns", {**ADMIN, "Content-Type": "application/json"}, spec)
    answer = await exchange(client.server.port, admin)
    assert answer is not None
    assert (answer.status, answer.json()["reason"]) == (422, "INVALID_REQUEST")


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/admin/campaigns/a%00b"),
        ("POST", "/admin/campaigns/a%00b/publish"),
        ("GET", "/admin/campaigns/" + "x" * 65),
        ("GET", "/admin/campaigns/%E2%98%83"),
        ("PATCH", "/admin/campaigns/a%00b"),
    ],
)
async def test_a_path_id_that_cannot_be_a_campaign_is_404(client, method, path):
    headers = {**ADMIN, "Content-Type": "application/json"}
    answer = await exchange(client.server.port, request(method, path, headers, b"{}"))
    assert answer is not None
    assert (answer.status, answer.json()["reason"]) == (404, "UNKNOWN_CAMPAIGN"), answer


@pytest.fixture
async def served(settings, clock, redis, pool):
    """The gateway served as ``flashclaim serve`` serves it (the test client's server
    cancels handlers whose client left; aiohttp's runner, as in production, does not)."""
    runner = web.AppRunner(create_app(settings, clock), access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield port
    await runner.cleanup()


async def test_a_client_hanging_up_mid_body_is_a_client_error(served, client, campaign, caplog):
    partial = request(
        "POST",
        CLAIM,
        {"Content-Type": "application/json", **auth("u1")},
        b'{"campaignId": "',
        content_length=200,
    )
    with caplog.at_level(logging.DEBUG):
        for _ in range(3):
            assert await exchange(served, partial, hang_up=True) is None
        await asyncio.sleep(0.2)
    metrics = await (await client.get("/metrics")).text()
    closed = [line for line in metrics.splitlines() if 'status="499"' in line and "_count" in line]
    assert closed, metrics
    assert closed[0].endswith(" 3.0"), closed
    assert 'route="/api/coupon/issue",status="500"' not in metrics
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text
    assert "Traceback" not in caplog.text


async def test_request_ids_are_kept_made_and_sanitized(client, campaign):
    given = await client.get("/livez", headers={"X-Request-Id": "trace-42.a:b"})
    assert given.headers["X-Request-Id"] == "trace-42.a:b"
    made = {(await client.get("/livez")).headers["X-Request-Id"] for _ in range(3)}
    assert len(made) == 3
    hostile = await client.get("/livez", headers={"X-Request-Id": "x" * 500})
    assert hostile.headers["X-Request-Id"] != "x" * 500
    refused = await client.post(CLAIM, json=body(campaign.id))  # a refusal carries one too
    assert refused.status == 401
    assert refused.headers["X-Request-Id"]


async def test_a_5xx_is_logged_once_with_the_request_and_claim_fields(
    make_client, ops, clock, caplog
):
    clock.set(T0_MS + 1000)
    client = await make_client(outbox_max_len=1)
    campaign = await published(ops)
    assert (await client.post(CLAIM, json=body(campaign.id), headers=auth("u1"))).status == 200
    claim = body(campaign.id, request_id="overload-0001")
    with caplog.at_level(logging.INFO):
        response = await client.post(
            CLAIM, json=claim, headers={**auth("u2"), "X-Request-Id": "sre-looks-for-this"}
        )
    assert response.status == 503
    lines = [r for r in caplog.records if getattr(r, "requestId", "") == "sre-looks-for-this"]
    assert len(lines) == 1, caplog.text
    line = lines[0]
    assert line.levelno == logging.WARNING
    assert (line.user, line.campaign, line.claimRequestId) == ("u2", campaign.id, "overload-0001")
    assert line.reason == "OVERLOADED"


async def test_no_server_banner_names_versions(client):
    response = await client.get("/livez")
    assert "aiohttp" not in response.headers.get("Server", "")
    assert "Python" not in response.headers.get("Server", "")


def test_a_gateway_needs_both_secrets(settings):
    import msgspec

    with pytest.raises(ConfigError, match="FLASHCLAIM_ADMIN_TOKEN must be set"):
        create_app(msgspec.structs.replace(settings, admin_token=""))
