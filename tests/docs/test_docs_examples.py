"""Every page's shell and Python examples run as written (tests/docs/runner.py says how).

One test per page, so pytest-xdist spreads them. Pages that start the local system
(``make run``, ``conveyor up``) serve the API on port 8000, as they say: they share one
xdist group, so two of them never run at once.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests import REPO
from tests.docs.runner import PAGES, Session, parse_page, runnable_pages


def _param(page: Path) -> object:
    blocks = parse_page(page)
    marks = [pytest.mark.e2e]
    if any(b.long_running() for b in blocks if b.runnable):
        marks += [pytest.mark.slow, pytest.mark.xdist_group("docs-port-8000")]
    return pytest.param(page, id=str(page.relative_to(REPO)), marks=marks)


@pytest.mark.parametrize("page", [_param(p) for p in runnable_pages()])
def test_page_runs_as_written(page: Path, tmp_path: Path) -> None:
    session = Session(tmp_path)
    session.run_page(parse_page(page))
    assert session.ran, f"{page}: nothing ran"
    print("\n".join([*session.ran, *(f"skipped {s}" for s in session.skipped)]))


def test_every_page_is_parsed() -> None:
    """Every page parses (directives valid, blocks closed), whether or not it has examples."""
    for page in PAGES:
        parse_page(page)
