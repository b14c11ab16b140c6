"""Every page's shell and Python examples run as written (tests/docs/runner.py says how).

Pages that need no running system are one test each, so pytest-xdist spreads them.
Pages that start the local system (``make run``, ``conveyor up``) serve the API on port
8000, as they say, so two of them can never run at once: they run one after the other
in one test (an ``xdist_group`` would not keep them apart: pytest-xdist 3.8 groups by
rewriting ``item._nodeid``, which pytest 9 no longer reads). Each such page still runs
to its end; the test fails listing every page that failed.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests import REPO
from tests.docs.runner import PAGES, DocsTestError, Session, parse_page, runnable_pages


def _starts_a_system(page: Path) -> bool:
    return any(b.long_running() for b in parse_page(page) if b.runnable)


SYSTEM_PAGES = [p for p in runnable_pages() if _starts_a_system(p)]
OTHER_PAGES = [p for p in runnable_pages() if not _starts_a_system(p)]
#: Each page starts and stops the whole system; a loaded 2-core machine needs minutes.
SYSTEM_PAGES_TIMEOUT_S = 1200


def _run(page: Path, root: Path) -> Session:
    session = Session(root)
    session.run_page(parse_page(page))
    assert session.ran, f"{page}: nothing ran"
    print(f"{page.relative_to(REPO)}:")
    print(
        "\n".join(
            f"  {line}" for line in [*session.ran, *(f"skipped {s}" for s in session.skipped)]
        )
    )
    return session


@pytest.mark.parametrize("page", OTHER_PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_page_runs_as_written(page: Path, tmp_path: Path) -> None:
    _run(page, tmp_path)


@pytest.mark.e2e
@pytest.mark.slow
@pytest.mark.timeout(SYSTEM_PAGES_TIMEOUT_S)
def test_pages_with_a_running_system_run_as_written(tmp_path: Path) -> None:
    assert SYSTEM_PAGES, "no page starts the system: the runner's detection is broken"
    failures = []
    for index, page in enumerate(SYSTEM_PAGES):
        try:
            _run(page, tmp_path / f"page-{index}")
        except DocsTestError as exc:
            failures.append(str(exc))
    assert not failures, "\n\n".join(failures)


def test_every_page_is_parsed() -> None:
    """Every page parses (directives valid, blocks closed), whether or not it has examples."""
    for page in PAGES:
        parse_page(page)
