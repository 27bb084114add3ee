"""The H5 page's files (HTML, CSS, ES modules), served from memory with the page's headers.

They are package data (``gateway/h5/static/``), so the wheel and the image carry them; a
worker reads them once, keeps a gzipped copy and an ETag, and answers a revalidation with
304. No CDN, no framework, no third-party script: the Content-Security-Policy allows the
gateway's own scripts and styles only, images from https URLs (partners' header images),
and requests to the gateway itself. ``Referrer-Policy: no-referrer`` keeps the page's
address out of every request it makes.
"""

from __future__ import annotations

import gzip
import hashlib
from dataclasses import dataclass
from functools import cache
from importlib import resources

from aiohttp import web

PAGE = "page.html"

_TYPES = {
    ".html": "text/html",
    ".css": "text/css",
    ".js": "text/javascript",
    ".svg": "image/svg+xml",
}

#: Headers of every H5 response (pages, files): nothing but our own code runs, nothing leaks.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' https:; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}

#: Browsers and the app's webview may keep a file a minute, then revalidate (a 304).
CACHE_CONTROL = "public, max-age=60"


@dataclass(frozen=True, slots=True)
class Asset:
    """One file, ready to send."""

    body: bytes
    gzipped: bytes
    content_type: str
    etag: str


@cache
def assets() -> dict[str, Asset]:
    """Every file of ``static/`` by name, read once per process."""
    found: dict[str, Asset] = {}
    for item in resources.files("gateway.h5").joinpath("static").iterdir():
        suffix = "." + item.name.rpartition(".")[2]
        if item.is_file() and suffix in _TYPES:
            body = item.read_bytes()
            digest = hashlib.sha256(body).hexdigest()[:16]
            found[item.name] = Asset(
                body=body,
                gzipped=gzip.compress(body, mtime=0),
                content_type=_TYPES[suffix],
                etag=f'"{digest}"',
            )
    return found


def send(request: web.Request, asset: Asset, status: int = 200) -> web.Response:
    """``asset`` as the answer to ``request``: 304 when the client holds it, gzipped when
    the client takes gzip."""
    headers = {
        **SECURITY_HEADERS,
        "Cache-Control": CACHE_CONTROL,
        "ETag": asset.etag,
        "Vary": "Accept-Encoding",
        "Access-Control-Allow-Origin": "*",  # public files: other pages may import the client
    }
    if status == 200 and asset.etag in request.headers.get("If-None-Match", ""):
        return web.Response(status=304, headers=headers)
    body = asset.body
    if "gzip" in request.headers.get("Accept-Encoding", ""):
        body, headers["Content-Encoding"] = asset.gzipped, "gzip"
    return web.Response(
        body=body, status=status, headers=headers, content_type=asset.content_type, charset="utf-8"
    )
