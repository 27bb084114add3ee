"""The H5 claim page in a real headless Chromium against a real gateway on a manual clock.

Screenshots of each screen are kept under the test's tmp dir (pytest keeps the last runs'
``/tmp/pytest-of-<user>/``); they are artefacts, never committed.
"""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any

import pytest
from playwright.async_api import Page, Request, Response, expect

from gateway.campaigns.ops import keys_of
from gateway.h5.partners import qr_code
from gateway.reasons import Reason
from gateway.stack.servers import free_port
from tests.helpers import T0_MS, claim, published, token

CLAIM_PATH = "/api/coupon/issue"


class Watch:
    """Everything a page sends and every error it logs."""

    def __init__(self, page: Page) -> None:
        self.requests: list[Request] = []
        self.sent_at: list[float] = []
        self.errors: list[str] = []
        page.on("request", self._sent)
        page.on("pageerror", lambda error: self.errors.append(str(error)))
        page.on(
            "console",
            lambda m: self.errors.append(f"{m.text} {m.location}") if m.type == "error" else None,
        )

    def _sent(self, request: Request) -> None:
        self.requests.append(request)
        if request.url.endswith(CLAIM_PATH):
            self.sent_at.append(time.monotonic())

    @property
    def claims(self) -> list[Any]:
        """The claim bodies sent, in order."""
        return [r.post_data_json for r in self.requests if r.url.endswith(CLAIM_PATH)]

    async def assert_token_kept_in(self, bearer: str) -> None:
        """The token went in Authorization headers only: no URL, no Referer carries it."""
        for request in self.requests:
            headers = await request.all_headers()
            assert bearer not in request.url
            assert not headers.get("referer"), (request.url, headers)  # Playwright shows ""
            if request.url.endswith(CLAIM_PATH):
                assert headers["authorization"] == f"Bearer {bearer}"
        assert not self.errors, self.errors


def page_url(client, campaign_id: str, query: str = "", **handoff: str) -> str:
    fragment = "&".join(f"{name}={value}" for name, value in handoff.items())
    return f"{client.make_url(f'/h5/{campaign_id}')}{query}" + (f"#{fragment}" if handoff else "")


async def open_page(context, url: str) -> tuple[Page, Watch]:
    page = await context.new_page()
    watch = Watch(page)
    await page.goto(url)
    return page, watch


async def test_countdown_reaches_zero_then_a_claim_and_its_retry_show_one_coupon(
    client, ops, clock, context, tmp_path
):
    campaign = await published(ops, name="双11 满500减100")
    clock.set(T0_MS - 2_500)  # the device's own clock says something else entirely
    bearer = token("alice")
    page, watch = await open_page(
        context, page_url(client, campaign.id, token=bearer, device="ios-a1")
    )
    await expect(page.locator("#countdown-time")).to_have_text(re.compile(r"00:00:0[123]"))
    assert page.url == str(client.make_url(f"/h5/{campaign.id}"))  # the fragment is gone
    await expect(page.locator("#rule-zh")).to_have_text("满¥500减¥100，领取后7天内有效。")
    button = page.locator("#claim")
    await expect(button).to_be_disabled()
    await page.screenshot(path=tmp_path / "countdown.png")
    clock.set(T0_MS)  # the gateway reaches T0; the page gets there on its own estimate
    await expect(button).to_be_enabled(timeout=6_000)
    await expect(page.locator("#countdown")).to_be_hidden()
    await button.click()
    outcome = page.locator("#outcome")
    await expect(outcome).to_have_attribute("data-screen", "success")
    coupon = await page.locator("#coupon-id").text_content()
    assert coupon
    await page.screenshot(path=tmp_path / "claimed.png")

    await page.reload()  # a retry after a reload: same requestId, same coupon
    await expect(button).to_be_enabled()
    await button.click()
    await expect(outcome).to_have_attribute("data-screen", "success")
    assert await page.locator("#coupon-id").text_content() == coupon
    first, second = watch.claims
    assert first == second == {**first, "deviceId": "ios-a1", "channel": "h5"}
    assert (await ops.live(campaign.id))["live"]["issued"] == 1
    await watch.assert_token_kept_in(bearer)


async def test_the_last_coupon_gone_shows_sold_out_without_retrying(
    client, ops, clock, context, tmp_path
):
    campaign = await published(ops, stock=1)
    clock.set(T0_MS + 1_000)
    page, watch = await open_page(context, page_url(client, campaign.id, token=token("bob")))
    button = page.locator("#claim")
    await expect(button).to_be_enabled()
    assert (await claim(client, "alice", campaign.id))[0] == 200  # someone else was quicker
    await button.click()
    outcome = page.locator("#outcome")
    await expect(outcome).to_have_attribute("data-reason", "SOLD_OUT")
    await expect(outcome).to_have_attribute("data-screen", "sold_out")
    await expect(button).to_be_disabled()
    await page.screenshot(path=tmp_path / "sold-out.png")
    assert len(watch.claims) == 1  # a business refusal is final
    await page.reload()  # the public view alone says it now
    await expect(outcome).to_have_attribute("data-screen", "sold_out")
    await expect(page.locator("#stock")).to_have_text("已抢光 · None left")
    await expect(button).to_be_disabled()
    assert len(watch.claims) == 1


async def test_an_offer_links_to_the_offered_page_which_claims_with_the_same_token(
    client, ops, clock, context, tmp_path
):
    """ "Holds A: offer B instead": the refusal links to B's page (same channel); the token
    the app handed to the first page claims there too."""
    await published(ops, id="welcome-new")
    offered = await published(ops, id="welcome-back")
    refusing = await published(
        ops, id="welcome-alt", audience={"offers": [{"holds": "welcome-new", "offer": offered.id}]}
    )
    clock.set(T0_MS + 1_000)
    assert (await claim(client, "carol", "welcome-new"))[0] == 200
    bearer = token("carol")
    page, watch = await open_page(
        context, page_url(client, refusing.id, "?channel=partner-x", token=bearer, device="ios-c")
    )
    await page.locator("#claim").click()
    outcome = page.locator("#outcome")
    await expect(outcome).to_have_attribute("data-reason", "NOT_ELIGIBLE")
    link = page.locator("#offer")
    await expect(link).to_have_attribute("href", f"/h5/{offered.id}?channel=partner-x")
    await page.screenshot(path=tmp_path / "offer.png")
    await link.click()
    await page.wait_for_url(re.compile(f"/h5/{offered.id}"))
    await page.locator("#claim").click()
    await expect(outcome).to_have_attribute("data-screen", "success")
    assert [(c["campaignId"], c["deviceId"]) for c in watch.claims] == [
        (refusing.id, "ios-c"),
        (offered.id, "ios-c"),
    ]
    [refusal] = [e for e in watch.errors if "status of 403" in e]  # NOT_ELIGIBLE, logged
    watch.errors.remove(refusal)
    await watch.assert_token_kept_in(bearer)


async def test_without_a_valid_token_the_page_asks_to_log_in(client, ops, clock, context, tmp_path):
    campaign = await published(ops)
    clock.set(T0_MS + 1_000)
    page, watch = await open_page(context, page_url(client, campaign.id))
    await page.locator("#claim").click()
    await expect(page.locator("#outcome")).to_have_attribute("data-screen", "login")
    assert watch.claims == []  # no token: nothing worth sending
    await page.screenshot(path=tmp_path / "login.png")
    page, watch = await open_page(context, page_url(client, campaign.id, token="not.a.jwt"))
    await page.locator("#claim").click()
    await expect(page.locator("#outcome")).to_have_attribute("data-reason", "UNAUTHORIZED")
    assert len(watch.claims) == 1
    await expect(page.locator("#claim")).to_be_enabled()  # log in, then try again


async def test_a_wait_the_gateway_asks_for_is_honoured_with_the_same_request_id(
    client, ops, clock, context
):
    campaign = await published(ops)
    clock.set(T0_MS + 1_000)
    page, watch = await open_page(context, page_url(client, campaign.id, token=token("carol")))
    await expect(page.locator("#claim")).to_be_enabled()
    clock.set(T0_MS - 300)  # the gateway disagrees with the page: 300 ms to go

    def on_response(response: Response) -> None:
        if response.url.endswith(CLAIM_PATH) and response.status == 409:
            assert response.headers["retry-after"] == "1"  # whole seconds, rounded up
            clock.set(T0_MS + 1_000)

    page.on("response", on_response)
    await page.locator("#claim").click()
    await expect(page.locator("#outcome")).to_have_attribute("data-screen", "success")
    first, second = watch.claims
    assert first["requestId"] == second["requestId"]
    assert watch.sent_at[1] - watch.sent_at[0] >= 0.3  # the body's retryAfterMs: 300, exact


async def test_a_5xx_is_retried_with_back_off_and_the_same_request_id(
    client, ops, clock, context, redis
):
    campaign = await published(ops)
    clock.set(T0_MS + 1_000)
    page, watch = await open_page(context, page_url(client, campaign.id, token=token("dave")))
    await expect(page.locator("#claim")).to_be_enabled()
    config = keys_of(campaign).config
    await redis.hset(config, "status", "recovering")  # claims answer 503 UNAVAILABLE
    recovered: list[asyncio.Task[int]] = []

    def on_response(response: Response) -> None:
        if response.url.endswith(CLAIM_PATH) and response.status == 503 and not recovered:
            recovered.append(asyncio.ensure_future(redis.hset(config, "status", "active")))

    page.on("response", on_response)
    await page.locator("#claim").click()
    await expect(page.locator("#outcome")).to_have_attribute("data-screen", "success")
    assert len(watch.claims) >= 2
    assert len({body["requestId"] for body in watch.claims}) == 1


async def test_the_client_module_retries_what_is_transient_and_nothing_else(client, context):
    """flashclaim.js's policy, checked against every reason's real status."""
    page = await context.new_page()
    final = [
        [r.value, r.status]
        for r in Reason
        if r.status < 500 and r not in (Reason.RATE_LIMITED, Reason.NOT_STARTED, Reason.CODE_LOCKED)
    ]
    result = await page.evaluate(
        """async ([moduleUrl, deadUrl, final]) => {
          const m = await import(moduleUrl);
          const slept = [];
          const network = await m.claimCoupon({
            campaignId: "c1", requestId: "req-network-1", deviceId: "d1", channel: "h5",
            token: "t", baseUrl: deadUrl, maxAttempts: 4, random: () => 1,
            sleep: async (ms) => { slept.push(ms); },
          });
          const at = (status, reason, retryAfterMs = null, attempt = 0, random = () => 0) =>
            m.retryDelayMs({ status, reason, retryAfterMs }, attempt, { random });
          return {
            network: [network.reason, network.status, network.attempts], slept,
            final: final.map(([reason, status]) => at(status, reason)),
            rateLimited: [at(429, "RATE_LIMITED", 1000), at(429, "RATE_LIMITED", 1000, 0, () => 1)],
            codeLocked: at(429, "CODE_LOCKED", 900000),
            notStarted: [at(409, "NOT_STARTED", 300), at(409, "NOT_STARTED", 20000)],
            unavailable: [
              at(503, "UNAVAILABLE", null, 3, () => 1), at(503, "UNAVAILABLE", null, 30, () => 1),
            ],
            waits: [
              m.serverWaitMs(new Headers({ "Retry-After": "2" }), {}),
              m.serverWaitMs(new Headers({ "Retry-After": "2" }), { retryAfterMs: 150 }),
              m.serverWaitMs(new Headers({ "Retry-After": "Wed, 21 Oct 2026 07:28:00 GMT" }), {}),
            ],
            requestIds: [m.newRequestId(), m.newRequestId()],
          };
        }""",
        [
            str(client.make_url("/h5/static/flashclaim.js")),
            f"http://127.0.0.1:{free_port()}",
            final,
        ],
    )
    assert result["network"] == ["NETWORK_ERROR", 0, 4]
    assert result["slept"] == [200, 400, 800]  # exponential, full jitter (random() = 1)
    assert result["final"] == [None] * len(final)
    assert result["rateLimited"] == [1000, 1200]
    assert result["codeLocked"] is None  # a lockout's wait is far past maxWaitMs: final
    assert result["notStarted"] == [300, None]  # too long a wait: the countdown's job
    assert result["unavailable"] == [1600, 5000]  # capped
    assert result["waits"] == [2000, 150, None]
    first, second = result["requestIds"]
    assert first != second
    assert re.fullmatch(r"[0-9a-f]{32}", first)


async def test_every_reason_has_a_screen_in_both_languages(client, context):
    page = await context.new_page()
    table = await page.evaluate(
        "async (url) => { const m = await import(url); return [m.REASONS, m.SCREENS]; }",
        str(client.make_url("/h5/static/screens.js")),
    )
    reasons, screens = table
    assert {r.value for r in Reason} <= set(reasons)
    for reason, (screen, zh, en) in reasons.items():
        assert screen in screens, reason
        assert all((zh, en, screens[screen]["zh"], screens[screen]["en"])), reason


@pytest.mark.parametrize("channel", ["partner-a", "elsewhere"])
async def test_a_partner_link_shows_its_copy_and_image(client, ops, context, tmp_path, channel):
    image = "https://img.partner-a.example/banner.png"
    pages = {
        "default": {"subtitle": "每人限领1张"},
        "channels": {
            "partner-a": {"title": "A 银行专享", "buttonText": "立即抢", "headerImageUrl": image}
        },
    }
    campaign = await published(ops, name="双11", pages=pages)
    fetched: list[dict[str, str]] = []

    async def partner_cdn(route):  # the partner's image host, which this machine cannot reach
        fetched.append(route.request.headers)
        await route.fulfill(body=qr_code("banner", "png"), content_type="image/png")

    await context.route("https://img.partner-a.example/**", partner_cdn)
    page, watch = await open_page(context, page_url(client, campaign.id, f"?channel={channel}"))
    if channel == "partner-a":
        await expect(page.locator("#title")).to_have_text("A 银行专享")
        await expect(page.locator("#claim")).to_have_text("立即抢")
        await expect(page.locator("#image")).to_be_visible()
        assert await page.locator("#image").get_attribute("src") == image
        assert fetched
        assert not any(headers.get("referer") for headers in fetched)
    else:
        await expect(page.locator("#title")).to_have_text("双11")
        await expect(page.locator("#image")).to_be_hidden()
    await expect(page.locator("#subtitle")).to_have_text("每人限领1张")
    await expect(page).to_have_title(re.compile("A 银行专享" if channel == "partner-a" else "双11"))
    await page.screenshot(path=tmp_path / f"page-{channel}.png", full_page=True)
    assert not watch.errors, watch.errors


async def test_the_page_reports_its_own_view_once_per_load(client, ops, redis, context):
    from gateway import keys  # the exposure counters (gateway/stats/)

    campaign = await published(ops, channels=["partner-a"])
    views = keys.exposure_views(campaign.id, "20261110")  # 23:50 on 10 Nov in Shanghai
    page, watch = await open_page(
        context, page_url(client, campaign.id, "?channel=partner-a", device="ios-v1")
    )
    for expected in (1, 2):
        for _ in range(100):
            if int(await redis.hget(views, "partner-a") or 0) >= expected:
                break
            await asyncio.sleep(0.05)
        assert await redis.hgetall(views) == {"partner-a": str(expected)}
        if expected == 1:
            await page.reload()
    viewers = keys.exposure_viewers(campaign.id, "20261110", "partner-a")
    assert await redis.pfcount(viewers) == 1  # one device, seen twice
    assert not watch.errors, watch.errors
