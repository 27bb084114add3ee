"""Requests aiohttp cannot parse still get the gateway's JSON refusal, and count as the
client errors they are: no plain text, no version banner, no traceback in the log."""

from __future__ import annotations

import logging

import pytest

from tests.rawhttp import exchange, request

UNPARSABLE = [
    pytest.param(
        request("POST", "/api/coupon/issue", {"Authorization": "Bearer " + "a" * 10_000}),
        431,
        "HEADERS_TOO_LARGE",
        id="token-over-the-header-limit",
    ),
    pytest.param(
        request("GET", "/" + "a" * 10_000), 431, "HEADERS_TOO_LARGE", id="request-line-too-long"
    ),
    pytest.param(
        request("GET", "/livez", {f"X-H{i}": "v" for i in range(200)}),
        431,
        "HEADERS_TOO_LARGE",
        id="too-many-headers",
    ),
    pytest.param(b"GARBAGE\r\n\r\n", 400, "INVALID_REQUEST", id="not-http"),
    pytest.param(
        b"G\x00T / HTTP/1.1\r\nHost: x\r\n\r\n", 400, "INVALID_REQUEST", id="nul-in-method"
    ),
    pytest.param(
        b"GET / HTTP/1.1\r\nHost: x\r\nBad Header: v\r\n\r\n",
        400,
        "INVALID_REQUEST",
        id="space-in-name",
    ),
    pytest.param(
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
        400,
        "INVALID_REQUEST",
        id="two-content-lengths",
    ),
    pytest.param(
        b"POST /api/coupon/issue HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        400,
        "INVALID_REQUEST",
        id="bad-chunk-size",
    ),
    pytest.param(b"GET / HTTP/1.1\r\n\r\n", 400, "INVALID_REQUEST", id="no-host"),
]


@pytest.mark.parametrize(("data", "status", "reason"), UNPARSABLE)
async def test_unparsable_requests_get_a_json_refusal(client, caplog, data, status, reason):
    with caplog.at_level(logging.DEBUG):
        answer = await exchange(client.server.port, data)
    assert answer is not None
    assert answer.headers["content-type"].startswith("application/json"), answer
    refusal = answer.json()
    assert isinstance(refusal, dict)
    assert (answer.status, refusal["reason"]) == (status, reason), refusal
    assert refusal["message"]
    assert "aaaaaaaa" not in refusal["message"]  # a token is not sent back
    assert answer.headers["x-request-id"]
    assert "aiohttp" not in answer.headers.get("server", "")
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text


async def test_unparsable_requests_are_counted_as_client_errors(client):
    await exchange(client.server.port, b"GARBAGE\r\n\r\n")
    metrics = await (await client.get("/metrics")).text()
    counted = [line for line in metrics.splitlines() if 'route="unparsed",status="400"' in line]
    assert counted, metrics
    assert "_count" in "".join(counted)
