"""No log format shows a traceback's frame locals (a job's payload would be printed)."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
import structlog

from infra.logs import configure_logging, get_logger

MARKER = "jane.doe.locals-marker@example.com"


@pytest.fixture
def restored_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    structlog.reset_defaults()


def _fail_with_a_payload_in_hand() -> None:
    payload = {"contact": MARKER}
    raise ValueError(f"handler failed on {len(payload)} fields")


@pytest.mark.parametrize("fmt", ["console", "json"])
def test_a_logged_traceback_shows_no_locals(
    fmt: str, restored_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging(fmt, "INFO")  # type: ignore[arg-type]
    try:
        _fail_with_a_payload_in_hand()
    except ValueError:
        get_logger(f"test.{fmt}").exception("job.failed")
    stderr = capsys.readouterr().err
    assert "handler failed on 1 fields" in stderr  # the traceback is there
    assert "_fail_with_a_payload_in_hand" in stderr
    assert MARKER not in stderr


def test_stdlib_records_with_a_traceback_show_no_locals_either(
    restored_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging("console", "INFO")
    try:
        _fail_with_a_payload_in_hand()
    except ValueError:
        logging.getLogger("celery.app.trace").exception("Task raised")
    stderr = capsys.readouterr().err
    assert "handler failed on 1 fields" in stderr
    assert MARKER not in stderr
