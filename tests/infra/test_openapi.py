"""The API contract stays in step with the code: every route is in the OpenAPI document
and every documented operation is a route; every reason is documented (document and
README); the document is valid OpenAPI 3.1; the docs page works with no network."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import schemathesis
from aiohttp import web

from gateway.app import OPERATIONS
from gateway.infra.openapi import build_document
from gateway.reasons import Reason
from tests.helpers import child_env

README = Path(__file__).resolve().parents[2] / "README.md"


def routes_of(app: web.Application) -> set[tuple[str, str]]:
    """(method, path) of every route, sub-applications included, HEAD aside."""
    found = set()
    for resource in app.router.resources():
        info = resource.get_info()
        if "app" in info:  # a sub-application (its routes carry their mount prefix)
            found |= routes_of(info["app"])
            continue
        for route in resource:
            if route.method != "HEAD":
                found.add((route.method, resource.canonical))
    return found


async def test_every_route_is_documented_and_every_operation_routed(client):
    documented = {
        (method.upper(), path)
        for path, methods in build_document(OPERATIONS)["paths"].items()
        for method in methods
    }
    assert routes_of(client.app) == documented


async def test_the_served_document_is_valid_openapi_31(client):
    response = await client.get("/openapi.json")
    document = await response.json()
    assert document == json.loads(json.dumps(build_document(OPERATIONS)))
    assert document["openapi"] == "3.1.0"
    schemathesis.openapi.from_dict(document).validate()


def test_every_reason_is_in_the_document_and_the_readme():
    document = build_document(OPERATIONS)
    assert set(document["components"]["schemas"]["Reason"]["enum"]) == {r.value for r in Reason}
    readme_rows = dict(re.findall(r"^\| (\d+) \| ([A-Z_]+) \|", README.read_text(), re.M))
    assert {int(code): name for code, name in readme_rows.items()} == {
        r.code: r.value for r in Reason
    }


def test_the_cli_prints_the_same_document(settings):
    result = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "openapi"],
        env=child_env(settings),
        capture_output=True,
        timeout=60,
        check=True,
    )
    assert json.loads(result.stdout) == json.loads(json.dumps(build_document(OPERATIONS)))


async def test_the_docs_page_needs_no_network_and_renders_every_operation(client):
    response = await client.get("/docs")
    page = await response.text()
    assert response.content_type == "text/html"
    assert not re.search(r"(src|href)=\"(https?:)?//", page), "the page loads nothing remote"
    assert "default-src 'self'" in response.headers["Content-Security-Policy"]
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "chromium is needed to render the docs page"
    url = f"http://127.0.0.1:{client.server.port}/docs"
    process = await asyncio.create_subprocess_exec(
        chromium, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=5000",
        "--dump-dom", url, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    dom, _ = await asyncio.wait_for(process.communicate(), 60)
    rendered = dom.decode()
    for operation in OPERATIONS:
        assert operation.path in rendered, operation.path
    assert "SOLD_OUT" in rendered
    assert "OpenAPI 3.1.0" in rendered  # the page loaded the document it describes
