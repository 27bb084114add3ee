"""A real headless Chromium (Debian's), driven by Playwright, for the H5 page tests."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, BrowserContext, async_playwright

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"

#: Flags that work here as root, without the network chatter of a desktop browser.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

#: A mid-range phone: the page is built for it first.
PHONE: dict[str, Any] = {
    "viewport": {"width": 390, "height": 844},
    "device_scale_factor": 2,
    "is_mobile": True,
    "has_touch": True,
    "locale": "zh-CN",
}


@pytest.fixture(scope="module")
async def browser(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Browser]:
    """One headless Chromium per test module (each test gets a fresh context)."""
    if not Path(CHROMIUM).exists():  # noqa: ASYNC240 (once per module, before any I/O)
        pytest.fail(
            f"Chromium is not installed ({CHROMIUM} missing); the H5 page tests drive a real"
            " headless browser. Install it with `make tools` (apt-get install chromium)."
        )
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        yield launched
        await launched.close()


@pytest.fixture
async def context(browser: Browser) -> AsyncIterator[BrowserContext]:
    """A fresh profile: empty storage, no cache, a phone's screen."""
    made = await browser.new_context(**PHONE)
    made.set_default_timeout(10_000)
    yield made
    await made.close()
