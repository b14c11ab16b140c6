"""The console with AWS gone: its pages still render (200) with an error banner, never a
500 page. The emulator here is the test's own, stopped halfway."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from infra.emulator import EmulatorProcess
from tests.browser.system import QUEUE, running_system

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def test_pages_show_an_error_banner_when_aws_is_down(
    browser: Browser, page: Page, tmp_path: Path
) -> None:
    with (
        EmulatorProcess(log_path=tmp_path / "emulator.log") as emulator,
        running_system(emulator.endpoint_url, tmp_path, workers=False) as system,
    ):
        response = page.goto(f"{system.url}/")
        assert response is not None
        assert response.status == 200
        expect(page.get_by_test_id("error-banner")).to_have_count(0)

        emulator.stop()
        for path in ("/", "/dead-letters", f"/dead-letters/{QUEUE}"):
            response = page.goto(f"{system.url}{path}")
            assert response is not None
            assert response.status == 200, path
            expect(page.get_by_test_id("error-banner"), path).to_be_visible()
