"""CORS: configured front-end origins may call the API from a browser; nobody else."""

from __future__ import annotations

import pytest

from gateway.infra.settings import ConfigError, Settings
from tests.helpers import T0_MS, auth, body, published

PAGE = "https://m.shop.example"
PREFLIGHT = {
    "Origin": PAGE,
    "Access-Control-Request-Method": "POST",
    "Access-Control-Request-Headers": "authorization,content-type",
}


@pytest.fixture
async def browser_client(make_client):
    return await make_client(cors_origins=f"{PAGE},http://localhost:5173", cors_max_age_s=600)


async def test_preflight_of_a_configured_origin(browser_client):
    response = await browser_client.options("/api/coupon/issue", headers=PREFLIGHT)
    assert response.status == 204
    headers = response.headers
    assert headers["Access-Control-Allow-Origin"] == PAGE
    assert "POST" in headers["Access-Control-Allow-Methods"]
    assert {"Authorization", "Content-Type"} <= set(
        headers["Access-Control-Allow-Headers"].split(", ")
    )
    assert headers["Access-Control-Max-Age"] == "600"
    assert "Origin" in headers.getall("Vary")
    assert "Access-Control-Allow-Credentials" not in headers


async def test_preflight_of_another_origin_is_refused(browser_client):
    headers = {**PREFLIGHT, "Origin": "https://evil.example"}
    response = await browser_client.options("/api/coupon/issue", headers=headers)
    assert response.status == 403
    assert (await response.json())["reason"] == "ORIGIN_NOT_ALLOWED"
    assert "Access-Control-Allow-Origin" not in response.headers


async def test_answers_and_refusals_are_readable_by_the_page(browser_client, ops, clock):
    clock.set(T0_MS + 1000)
    campaign = await published(ops)
    for headers in ({"Origin": PAGE, **auth("u1")}, {"Origin": PAGE}):  # accepted, 401
        response = await browser_client.post(
            "/api/coupon/issue", json=body(campaign.id), headers=headers
        )
        assert response.headers["Access-Control-Allow-Origin"] == PAGE
        exposed = response.headers["Access-Control-Expose-Headers"]
        assert {"Retry-After", "X-Request-Id"} <= set(exposed.split(", "))
    other = await browser_client.get("/livez", headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in other.headers


async def test_preflight_of_an_unknown_path_is_404(browser_client):
    response = await browser_client.options("/nowhere", headers=PREFLIGHT)
    assert (response.status, (await response.json())["reason"]) == (404, "NOT_FOUND")


async def test_without_origins_there_is_no_cors(client):
    response = await client.options("/api/coupon/issue", headers=PREFLIGHT)
    assert response.status == 405
    assert "Access-Control-Allow-Origin" not in response.headers


async def test_credentials_name_the_origin(make_client):
    client = await make_client(cors_origins=PAGE, cors_credentials=True)
    response = await client.options("/admin/campaigns", headers={**PREFLIGHT,
                                    "Access-Control-Request-Method": "GET"})  # fmt: skip
    assert response.headers["Access-Control-Allow-Origin"] == PAGE
    assert response.headers["Access-Control-Allow-Credentials"] == "true"


async def test_any_origin_without_credentials(make_client):
    client = await make_client(cors_origins="*")
    response = await client.options("/api/coupon/issue", headers=PREFLIGHT)
    assert response.headers["Access-Control-Allow-Origin"] == "*"


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"FLASHCLAIM_CORS_ORIGINS": "*", "FLASHCLAIM_CORS_CREDENTIALS": "true"}, "not '\\*'"),
        ({"FLASHCLAIM_CORS_ORIGINS": "m.shop.example"}, "FLASHCLAIM_CORS_ORIGINS"),
        ({"FLASHCLAIM_CORS_ORIGINS": "https://a.example/path"}, "FLASHCLAIM_CORS_ORIGINS"),
    ],
)
def test_origins_are_checked_at_start(environ, message):
    with pytest.raises(ConfigError, match=message):
        Settings.from_env(environ)
