"""Whatever a client sends to the H5 routes, the answer is never a 5xx (Hypothesis)."""

from __future__ import annotations

import asyncio
from urllib.parse import quote_from_bytes

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from yarl import URL

from tests.helpers import ADMIN_TOKEN, published

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}

#: Path segments and query values as bytes on the wire: NUL, non-UTF-8, slashes, huge.
raw = st.one_of(
    st.binary(max_size=80),
    st.text(max_size=40).map(str.encode),
    st.sampled_from([b"\x00", b"\xff\xfe", b"../..", b"%", b"a" * 5000, b"h5", b"d11-0"]),
)


def _path(template: str, segment: bytes, channel: bytes) -> URL:
    text = template.format(quote_from_bytes(segment, safe="")) + "?channel="
    return URL(text + quote_from_bytes(channel, safe=""), encoded=True)


ROUTES = [
    ("/h5/{}", {}),
    ("/h5/static/{}", {}),
    ("/api/campaigns/{}/public", {}),
    ("/admin/campaigns/{}/page", ADMIN),
    ("/admin/campaigns/{}/page/qr.svg", ADMIN),
]


@pytest.fixture
async def campaign(ops):
    return await published(ops, id="d11-0")


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(segment=raw, channel=raw)
async def test_no_path_or_query_makes_a_5xx(client, campaign, segment, channel):
    for template, headers in ROUTES:
        response = await client.get(_path(template, segment, channel), headers=headers)
        assert response.status < 500, (template, segment, channel, await response.text())
        await response.read()


@pytest.mark.parametrize(
    "request_line",
    [
        b"GET /h5/\xff\xfe\x00 HTTP/1.1",
        b"GET /api/campaigns/\xff/public?channel=\xfe HTTP/1.1",
        b"GET /api/campaigns/d11-0/public?" + b"channel=a&" * 20_000 + b" HTTP/1.1",
        b"GET /h5/d11-0?" + b"x" * 100_000 + b" HTTP/1.1",
        b"GET /h5/static/page.js HTTP/1.1\r\nX-Big: " + b"y" * 100_000,
        b"GET /api/campaigns/d11-0/public HTTP/1.1\r\nIf-None-Match: \xff\x00",
    ],
)
async def test_raw_bytes_on_the_wire_make_no_5xx(client, campaign, request_line):
    """What no HTTP library would send: raw non-UTF-8 bytes, NUL, 100 KB lines."""
    reader, writer = await asyncio.open_connection(client.host, client.port)
    writer.write(request_line + b"\r\nHost: x\r\nConnection: close\r\n\r\n")
    await writer.drain()
    status_line = await reader.readline()
    writer.close()
    assert int(status_line.split()[1]) < 500, status_line
