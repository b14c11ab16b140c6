"""The console in a browser, acting on a running system: a job that failed permanently is on
the dead-letter page with its reason, a redrive from the UI (dry run, then confirm) moves
exactly the selected job back and it runs again; scaling a pool from the UI changes its
desired and running nodes. One scenario, in order, on one running system
(tests/browser/system.py): starting it is the expensive part, and pytest-xdist 3.8 on
pytest 9 does not keep a module's tests on one worker (``xdist_group`` is ignored), so
separate tests could each start their own.

Every effect is checked behind the browser's back: the ledger through the producer API,
the DLQ through SQS, the pool through the supervisor's state, the audit line in the
console's log.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import pytest
from playwright.sync_api import Browser, Page, expect

from infra.emulator import EmulatorProcess
from tests.browser.system import POOL, QUEUE, System, running_system
from tests.support import outbox as handler_outbox
from tests.support.polling import eventually

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

#: Dead-lettering goes through the worker, the DLQ and the ledger: allow a loaded machine.
SETTLE_S = 90.0


@pytest.fixture
def system(browser: Browser, emulator: EmulatorProcess, tmp_path: Path) -> Iterator[System]:
    with running_system(emulator.endpoint_url, tmp_path) as running:
        yield running


def test_dead_letters_redrive_export_and_scaling_in_the_browser(system: System, page: Page) -> None:
    overview_renders(system, page)
    permanent_failure_is_redriven_from_the_ui_and_runs_again(system, page)
    # Each next step in a tab of its own: the redrive's page may still reload itself once
    # (its progress fragment refreshes without htmx), which would abort a navigation.
    dead_letter_export_is_json_lines(system, page.context.new_page())
    scaling_a_pool_changes_its_desired_and_running_nodes(system, page.context.new_page())


def _audit_lines(system: System) -> list[dict[str, Any]]:
    lines = (system.log_dir / "console.log").read_text(errors="replace").splitlines()
    events = [json.loads(line) for line in lines if line.startswith("{")]
    return [e for e in events if e.get("event") == "console.action"]


def permanent_failure_is_redriven_from_the_ui_and_runs_again(system: System, page: Page) -> None:
    system.dependency(down=True)
    chosen = system.enqueue("report.render", "q3-report")
    other = system.enqueue("report.render", "q4-report")
    for job_id in (chosen, other):
        eventually(
            lambda job_id=job_id: system.job_in_state(job_id, "dead-lettered"),
            what=f"job {job_id} to be dead-lettered",
            timeout_s=SETTLE_S,
        )
    eventually(lambda: system.dlq_depth() == 2, what="both jobs in the DLQ")

    # The DLQ list links to the queue's page; each dead job is a row with its reason.
    page.goto(f"{system.url}/dead-letters")
    page.locator(f'a[href$="/dead-letters/{QUEUE}"]').first.click()
    expect(page).to_have_url(re.compile(f"/dead-letters/{QUEUE}$"))
    expect(page.get_by_test_id("sample-note")).to_be_visible()
    row = page.get_by_test_id("dlq-job").filter(has_text=chosen)
    expect(row).to_have_count(1)
    expect(row).to_contain_text(re.compile("permanent", re.IGNORECASE))
    expect(page.get_by_test_id("dlq-job").filter(has_text=other)).to_have_count(1)

    # The job's page: its failure record, traceback and payload.
    row.locator(f'a[href*="/jobs/{chosen}"]').first.click()
    expect(page).to_have_url(re.compile(f"/dead-letters/{QUEUE}/jobs/{chosen}$"))
    expect(page.get_by_test_id("failure-reason")).to_contain_text(
        re.compile("permanent", re.IGNORECASE)
    )
    expect(page.get_by_test_id("traceback")).to_contain_text("PermanentError")
    expect(page.get_by_test_id("traceback")).to_contain_text("template store unreachable")
    expect(page.get_by_test_id("payload")).to_contain_text("q3-report")

    # Fixed: select only the chosen job; the dry run lists exactly it and moves nothing.
    system.dependency(down=False)
    page.goto(f"{system.url}/dead-letters/{QUEUE}")
    # The row's checkbox (named job_id; the contract leaves its value to the console).
    page.get_by_test_id("dlq-job").filter(has_text=chosen).locator('input[name="job_id"]').check()
    page.get_by_test_id("redrive-preview-button").click()
    preview = page.get_by_test_id("redrive-preview")
    expect(preview).to_contain_text(chosen)
    expect(preview).not_to_contain_text(other)
    listed = page.get_by_test_id("preview-job").evaluate_all(
        "rows => rows.map(r => r.dataset.jobId)"
    )
    assert listed == [chosen]
    assert system.dlq_depth() == 2  # a dry run moves nothing
    assert system.job_in_state(chosen, "dead-lettered")

    page.get_by_test_id("redrive-confirm").click()
    expect(page.get_by_test_id("redrive-done")).to_contain_text("moved 1")

    # It runs again, and succeeds; the other job stays in the DLQ.
    eventually(
        lambda: system.job_in_state(chosen, "succeeded"),
        what=f"redriven job {chosen} to succeed",
        timeout_s=SETTLE_S,
    )
    runs = handler_outbox.runs(system.outbox, chosen)
    assert [r["outcome"] for r in runs] == ["failed", "ok"]
    assert system.dlq_depth() == 1
    assert system.job_in_state(other, "dead-lettered")
    assert [r["outcome"] for r in handler_outbox.runs(system.outbox, other)] == ["failed"]

    # One audit line for the redrive, saying who, what, where and how many.
    redrives = [e for e in _audit_lines(system) if "redrive" in str(e.get("action"))]
    assert len(redrives) == 1, redrives
    assert QUEUE in json.dumps(redrives[0])
    assert 1 in redrives[0].values(), redrives[0]


def _number(page: Page, pool: str, testid: str) -> int | None:
    text = page.get_by_test_id(f"pool-{pool}").get_by_test_id(testid).inner_text().strip()
    return int(text) if text.isdigit() else None


def scaling_a_pool_changes_its_desired_and_running_nodes(system: System, page: Page) -> None:
    page.goto(f"{system.url}/pools")
    row = page.get_by_test_id(f"pool-{POOL}")
    expect(row.get_by_test_id("pool-desired")).to_have_text(re.compile(r"^\s*1\s*$"))
    expect(row.get_by_test_id("pool-running")).to_have_text(re.compile(r"^\s*1\s*$"))

    page.get_by_test_id(f"scale-input-{POOL}").fill("2")
    page.get_by_test_id(f"scale-submit-{POOL}").click()

    state = eventually(
        lambda: system.nodes_ready(2), what="two nodes of the pool", timeout_s=SETTLE_S
    )
    assert len({n.pid for n in state.nodes}) == 2

    def page_shows_two() -> bool:
        page.goto(f"{system.url}/pools")
        return _number(page, POOL, "pool-desired") == 2 and _number(page, POOL, "pool-running") == 2

    eventually(page_shows_two, what="the pools page to show 2 desired and 2 running nodes")
    scales = [e for e in _audit_lines(system) if "scale" in str(e.get("action"))]
    assert len(scales) == 1, scales
    assert POOL in json.dumps(scales[0])


def overview_renders(system: System, page: Page) -> None:
    response = page.goto(f"{system.url}/")
    assert response is not None
    assert response.status == 200
    expect(page.locator("body")).to_contain_text(QUEUE)
    expect(page.locator("body")).to_contain_text(POOL)
    expect(page.get_by_test_id("error-banner")).to_have_count(0)
    # Static assets are served by the console itself (no CDN).
    for src in page.locator("script[src]").evaluate_all("els => els.map(e => e.src)"):
        assert str(src).startswith(system.url), src


def dead_letter_export_is_json_lines(system: System, page: Page) -> None:
    page.goto(f"{system.url}/dead-letters/{QUEUE}")
    href = page.get_by_test_id("export").get_attribute("href")
    assert href is not None
    response = page.request.get(urljoin(page.url, href))
    assert response.status == 200, response.text()
    rows = [json.loads(line) for line in response.text().splitlines() if line.strip()]
    assert rows
    assert len(rows) == system.dlq_depth()
    assert all("report.render" in json.dumps(row) for row in rows)
