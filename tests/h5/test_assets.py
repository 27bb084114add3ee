"""The page and its files: served from package data, small, cacheable, locked down."""

from __future__ import annotations

import gzip

import pytest

from gateway.h5.assets import SECURITY_HEADERS, assets

FILES = {"page.html", "page.css", "page.js", "screens.js", "flashclaim.js", "icon.svg"}


async def test_the_page_comes_with_headers_that_keep_the_token_in(client):
    response = await client.get("/h5/d11-seckill?channel=partner-a")
    assert response.status == 200
    assert response.content_type == "text/html"
    policy = response.headers["Content-Security-Policy"]
    assert "script-src 'self';" in policy
    assert "style-src 'self';" in policy
    assert "default-src 'none'" in policy
    assert "'unsafe-inline'" not in policy
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    html = await response.text()
    assert '<script type="module" src="/h5/static/page.js">' in html
    assert "<script>" not in html  # nothing inline: the policy would refuse it anyway


@pytest.mark.parametrize("campaign_id", ["has%20space", "%00", "x" * 65, "%FF"])
async def test_an_id_that_cannot_exist_is_404_with_the_same_page(client, campaign_id):
    response = await client.get(f"/h5/{campaign_id}")
    assert response.status == 404
    assert await response.read() == assets()["page.html"].body


async def test_files_are_gzipped_cached_and_revalidated(client):
    response = await client.get(
        "/h5/static/flashclaim.js", headers={"Accept-Encoding": "gzip"}, auto_decompress=False
    )
    assert response.status == 200
    assert response.content_type == "text/javascript"
    assert response.headers["Content-Encoding"] == "gzip"
    assert response.headers["Cache-Control"] == "public, max-age=60"
    assert gzip.decompress(await response.read()) == assets()["flashclaim.js"].body
    etag = response.headers["ETag"]
    again = await client.get("/h5/static/flashclaim.js", headers={"If-None-Match": etag})
    assert (again.status, await again.read()) == (304, b"")
    for name, header in SECURITY_HEADERS.items():
        assert again.headers[name] == header


@pytest.mark.parametrize("name", ["nope.js", "..%2Fapi.py", "page.html%00", "%FF"])
async def test_unknown_files_are_404(client, name):
    response = await client.get(f"/h5/static/{name}")
    assert (response.status, (await response.json())["reason"]) == (404, "NOT_FOUND")


def test_the_page_weighs_a_few_kilobytes():
    """Everything the page loads, as sent (gzipped): a slow phone at T0 must not wait.
    The budget grows only with the reason table (screens.js has a line for every reason,
    use and credit ones included) and screens the page really shows (the offer link)."""
    found = assets()
    assert set(found) == FILES
    assert sum(len(found[name].gzipped) for name in FILES) < 13_000
