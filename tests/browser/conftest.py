"""Fixtures of the browser tests: one headless chromium per pytest worker, a fresh browser
context (no cookies) per test, and what to do when there is no browser.

Without chromium the suite skips with one line saying what to install, except under
``CI=true``, where it fails: a skipped browser suite does not count as a passing one.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect

from tests.browser.browser import MISSING, PAGE_TIMEOUT_MS, chromium, chromium_executable


def _on_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("true", "1", "yes")


# Per test, not per session: Playwright's sync API keeps an asyncio loop marked as running
# in the main thread while it is started, so every later test on the same xdist worker
# that runs a loop of its own (anyio.run, asyncio.run) would fail "already running".
@pytest.fixture
def browser() -> Iterator[Browser]:
    if chromium_executable() is None:
        if _on_ci():
            pytest.fail(f"{MISSING} (CI=true: a skipped browser suite does not count)")
        pytest.skip(MISSING)
    expect.set_options(timeout=PAGE_TIMEOUT_MS)
    with chromium() as launched:
        yield launched


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    ctx = browser.new_context(viewport={"width": 1280, "height": 900})
    ctx.set_default_timeout(PAGE_TIMEOUT_MS)
    try:
        yield ctx
    finally:
        ctx.close()


@pytest.fixture
def page(context: BrowserContext) -> Page:
    return context.new_page()
