"""The console's login, roles and CSRF protection in a browser: with auth on (a keys file
with a viewer's and an operator's key), a viewer's pages carry no element with
``data-action`` while an operator's do, and a POST without a valid CSRF token is refused
with 403 and changes nothing. One scenario on one system (see test_console_actions.py
for why)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urljoin

import pytest
import yaml
from playwright.sync_api import Browser, Page, expect

from infra.emulator import EmulatorProcess
from producers.auth import generate_key, hash_key
from tests.browser.system import POOL, QUEUE, Console, System, running_system
from tests.support.polling import eventually

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

#: Every page a person opens (the job pages filled in by the fixture).
PAGES = ["/", "/dead-letters", f"/dead-letters/{QUEUE}", "/jobs", "/pools", "/schedules"]


@dataclass
class Secured:
    system: System
    viewer_key: str
    operator_key: str
    dead_job: str
    job: str

    def pages(self) -> list[str]:
        return [
            *PAGES,
            f"/dead-letters/{QUEUE}/jobs/{self.dead_job}",
            f"/jobs/{self.job}",
            f"/jobs?q={self.job}",
        ]


def write_keys(path: Path, viewer_key: str, operator_key: str) -> None:
    """A keys document (the API's format) with one viewer and one operator."""
    document = {
        "keys": [
            {"name": "vera-viewer", "sha256": hash_key(viewer_key), "scopes": ["viewer"]},
            {"name": "otto-operator", "sha256": hash_key(operator_key), "scopes": ["operator"]},
        ]
    }
    path.write_text(yaml.safe_dump(document))


@pytest.fixture
def secured(browser: Browser, emulator: EmulatorProcess, tmp_path: Path) -> Iterator[Secured]:
    root = tmp_path
    viewer_key, operator_key = generate_key(), generate_key()
    write_keys(root / "keys.yaml", viewer_key, operator_key)
    with running_system(
        emulator.endpoint_url,
        root,
        CONVEYOR_API_AUTH="keys",
        CONVEYOR_API_KEYS_FILE=str(root / "keys.yaml"),
    ) as system:
        dead_job = system.seed_dead_letter("seeded-report")
        # A job the ledger knows, for the job page (the API takes the operator's key too).
        job = system.enqueue("report.mail", "weekly", key=operator_key)
        eventually(lambda: system.job(job, key=operator_key), what=f"job {job} in the ledger")
        yield Secured(system, viewer_key, operator_key, dead_job, job)


def test_roles_and_csrf_in_the_browser(secured: Secured, browser: Browser) -> None:
    for step in (
        pages_need_a_login,
        the_session_cookie_is_http_only_and_same_site_strict,
        a_viewer_sees_no_action_on_any_page,
        an_operator_sees_the_actions,
        a_post_without_a_valid_csrf_token_is_refused,
        a_read_only_console_offers_no_action_even_to_an_operator,
    ):
        context = browser.new_context()  # a fresh browser for each step: no cookie left
        try:
            step(secured, context.new_page())
        finally:
            context.close()


def log_in(page: Page, system: System, key: str, *, url: str | None = None) -> None:
    page.goto(f"{url or system.url}/login")
    page.get_by_test_id("login-key").fill(key)
    page.get_by_test_id("login-submit").click()
    expect(page).not_to_have_url(re.compile("/login"))


def pages_need_a_login(secured: Secured, page: Page) -> None:
    page.goto(f"{secured.system.url}/pools")
    expect(page.get_by_test_id("login-key")).to_be_visible()
    page.get_by_test_id("login-key").fill("cvy_not-a-key")
    page.get_by_test_id("login-submit").click()
    expect(page.get_by_test_id("login-key")).to_be_visible()  # still not in


def the_session_cookie_is_http_only_and_same_site_strict(secured: Secured, page: Page) -> None:
    log_in(page, secured.system, secured.viewer_key)
    cookies = page.context.cookies(secured.system.url)
    # The session: out of scripts' reach, never sent by another site's request. (Over
    # plain HTTP it is not Secure; the console sets Secure when served over TLS.)
    sessions = [c for c in cookies if c["httpOnly"] and c["sameSite"] == "Strict"]
    assert sessions, cookies
    assert not [c for c in cookies if c["sameSite"] == "None"], cookies


def a_viewer_sees_no_action_on_any_page(secured: Secured, page: Page) -> None:
    log_in(page, secured.system, secured.viewer_key)
    for path in secured.pages():
        response = page.goto(f"{secured.system.url}{path}")
        assert response is not None
        assert response.status == 200, path
        expect(page.locator("[data-action]"), path).to_have_count(0)
    # The viewer still sees what is there.
    page.goto(f"{secured.system.url}/dead-letters/{QUEUE}")
    expect(page.get_by_test_id("dlq-job").filter(has_text=secured.dead_job)).to_have_count(1)


def an_operator_sees_the_actions(secured: Secured, page: Page) -> None:
    log_in(page, secured.system, secured.operator_key)
    page.goto(f"{secured.system.url}/dead-letters/{QUEUE}")
    expect(page.get_by_test_id("redrive-preview-button")).to_be_visible()
    assert page.locator("[data-action]").count() > 0
    page.goto(f"{secured.system.url}/pools")
    expect(page.get_by_test_id(f"scale-submit-{POOL}")).to_be_visible()


def _scale_target(page: Page) -> str:
    """Where the pool's scale control posts to (a form's action, or htmx's hx-post)."""
    target = page.get_by_test_id(f"scale-submit-{POOL}").evaluate(
        """el => (el.getAttribute('hx-post')
                  || el.closest('[hx-post]')?.getAttribute('hx-post')
                  || el.getAttribute('formaction')
                  || el.closest('form')?.getAttribute('action'))"""
    )
    assert target, "the scale control names no target"
    return urljoin(page.url, str(target))


def a_post_without_a_valid_csrf_token_is_refused(secured: Secured, page: Page) -> None:
    system = secured.system
    log_in(page, system, secured.operator_key)
    page.goto(f"{system.url}/pools")
    target = _scale_target(page)
    desired = system.pool().desired
    # The operator's own session cookie rides along (page.request shares the context's
    # cookies): only the token is missing, then forged.
    for form in ({"desired": "3"}, {"desired": "3", "csrf_token": "forged"}):
        response = page.request.post(target, form=form, max_redirects=0)
        assert response.status == 403, (form, response.status, response.text()[:500])
        assert re.search("csrf", response.text(), re.IGNORECASE), response.text()[:500]
    assert system.pool().desired == desired  # nothing changed


def a_read_only_console_offers_no_action_even_to_an_operator(secured: Secured, page: Page) -> None:
    system = secured.system
    read_only = Console(
        env=system.env, log_dir=system.log_dir, name="console-ro", args=["--read-only"]
    )
    try:
        read_only.wait_ready()
        log_in(page, system, secured.operator_key, url=read_only.url)
        for path in secured.pages():
            response = page.goto(f"{read_only.url}{path}")
            assert response is not None
            assert response.status == 200, path
            expect(page.locator("[data-action]"), path).to_have_count(0)
    finally:
        read_only.stop(30.0)
        read_only.close()
