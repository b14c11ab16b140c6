"""Refresh the web console's screenshots in docs/img/ (``make docs``; docs/console.md shows them).

Runs the same system and browser as the browser tests (tests/browser/system.py and
tests/browser/browser.py): an emulator of its own, the producer API, the local
supervisor with the pool of tests/fixtures/console.yaml, and ``conveyor console``;
some jobs that work and some that fail permanently; then headless chromium opens each
page and saves a PNG. Needs Debian's chromium (``make browser``): without it, one line
says so and the exit code is 1.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "docs" / "img"
#: The page width the screenshots are taken at (the console's layout at a laptop's size).
VIEWPORT = {"width": 1280, "height": 800}


def main() -> int:
    """Take every screenshot; 0 when all were written."""
    sys.path.insert(0, str(REPO))  # the tests package (not installed) holds the fixtures
    from infra.emulator import EmulatorProcess  # noqa: PLC0415 - after the path is set
    from tests.browser.browser import MISSING, chromium, chromium_executable  # noqa: PLC0415
    from tests.browser.system import QUEUE, running_system  # noqa: PLC0415
    from tests.support.polling import eventually  # noqa: PLC0415

    if chromium_executable() is None:
        print(f"docs/console_screenshots.py: {MISSING}", file=sys.stderr)
        return 1
    OUT.mkdir(parents=True, exist_ok=True)
    with (
        tempfile.TemporaryDirectory(prefix="console-shots-") as tmp,
        EmulatorProcess(log_path=Path(tmp) / "emulator.log") as emulator,
        running_system(emulator.endpoint_url, Path(tmp)) as system,
        chromium() as browser,
    ):
        system.dependency(down=True)
        failed = [system.enqueue("report.render", f"q{n}-report") for n in range(1, 4)]
        done = [system.enqueue("report.mail", f"mail-{n}") for n in range(1, 3)]
        for job_id in failed:
            eventually(
                lambda job_id=job_id: system.job_in_state(job_id, "dead-lettered"),
                what=f"job {job_id} to be dead-lettered",
                timeout_s=120,
            )
        for job_id in done:
            eventually(
                lambda job_id=job_id: system.job_in_state(job_id, "succeeded"),
                what=f"job {job_id} to succeed",
                timeout_s=120,
            )
        page = browser.new_page(viewport=VIEWPORT)
        shots = {
            "console-overview.png": "/",
            "console-dead-letters.png": f"/dead-letters/{QUEUE}",
            "console-dead-job.png": f"/dead-letters/{QUEUE}/jobs/{failed[0]}",
            "console-job.png": f"/jobs/{done[0]}",
            "console-pools.png": "/pools",
        }
        for name, path in shots.items():
            page.goto(f"{system.url}{path}")
            page.wait_for_load_state("networkidle")
            page.screenshot(path=str(OUT / name), full_page=True)
            print(f"wrote docs/img/{name}")
        # The redrive's dry run: one job selected, nothing moved yet.
        page.goto(f"{system.url}/dead-letters/{QUEUE}")
        row = page.get_by_test_id("dlq-job").filter(has_text=failed[0])
        row.locator('input[name="job_id"]').check()
        page.get_by_test_id("redrive-preview-button").click()
        page.get_by_test_id("redrive-preview").wait_for()
        page.screenshot(path=str(OUT / "console-redrive-preview.png"), full_page=True)
        print("wrote docs/img/console-redrive-preview.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
