"""Shared fixtures: a real moto server over HTTP, and an AWS environment pointed at it.

Integration tests never use in-process mocks: the `emulator` fixture runs the
embedded emulator (moto in server mode, with Conveyor's fixes) as a subprocess
on a loopback port — one per session, so one per pytest-xdist worker — and
`aws_env` points boto3 at it through the standard variables under a fresh
environment name (see tests/support/emulator.py).
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog
from hypothesis.configuration import set_hypothesis_home_dir

from infra.emulator import EmulatorProcess
from tests.support.emulator import AwsEnv, fresh_environment, pointed_at
from tests.support.scenarios import FULL, REPORT, SCENARIO_PROPERTY

# Hypothesis keeps its caches outside the checkout (nothing to ignore, nothing to commit),
# whichever tests run (tests/integration and tests/fuzz use it).
set_hypothesis_home_dir(str(Path(tempfile.gettempdir()) / "conveyor-hypothesis"))

#: Run order by kind, longest first, so that pytest-xdist's workers (``-n`` in
#: pyproject.toml) do not end the run waiting on one long test started last. Tests
#: marked ``slow`` come before all of these; within a kind, the collection order stays.
_KIND_ORDER = {"faults": 1, "e2e": 1, "perf": 1, "emulator": 2, "integration": 2, "fuzz": 2}
_UNIT = 3
_TESTS = Path(__file__).resolve().parent


def _run_order(item: pytest.Item) -> int:
    if item.get_closest_marker("slow"):
        return 0
    kind = Path(item.path).resolve().relative_to(_TESTS).parts[0]
    return _KIND_ORDER.get(kind, _UNIT)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=_run_order)  # stable: a module's tests stay together and in order


@pytest.fixture(scope="session")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorProcess]:
    """One emulator process for the whole session (tests isolate by resource names)."""
    with EmulatorProcess(log_path=tmp_path_factory.mktemp("emulator") / "emulator.log") as proc:
        yield proc


@pytest.fixture
def aws_env(emulator: EmulatorProcess, monkeypatch: pytest.MonkeyPatch) -> Iterator[AwsEnv]:
    """Point this process at the emulator under a fresh environment name."""
    with pointed_at(emulator.endpoint_url, fresh_environment(), monkeypatch) as env:
        yield env


# --- structlog: no cached loggers in the test process ----------------------------------------
# infra.logs configures structlog with cache_logger_on_first_use (a process logs the same way
# all its life). In a test process, a command run in-process (CliRunner) would then freeze the
# loggers it touched, and a later test's structlog.testing.capture_logs would see nothing.


@pytest.fixture(autouse=True, scope="session")
def _uncached_structlog_loggers() -> Iterator[None]:
    configure = structlog.configure

    def uncached(*args: Any, **kwargs: Any) -> None:
        kwargs["cache_logger_on_first_use"] = False
        configure(*args, **kwargs)

    structlog.configure = uncached  # type: ignore[assignment]
    yield
    structlog.configure = configure  # type: ignore[assignment]


# --- the fault scenarios' figures (tests/faults, tests/fuzz) at the end of the run ----------
# A scenario appends its line to tests.support.scenarios.REPORT in the process it runs in; the
# line travels in its test report (user_properties), so pytest-xdist workers' lines arrive.

_SCENARIO_LINES: list[str] = []


@pytest.fixture(autouse=True)
def _scenario_lines(request: pytest.FixtureRequest) -> Iterator[None]:
    before = len(REPORT)
    yield
    for line in REPORT[before:]:
        request.node.user_properties.append((SCENARIO_PROPERTY, line))


@pytest.fixture(autouse=True)
def _no_event_loop_left_running() -> Iterator[None]:
    """A test that leaves an asyncio loop marked as running in the main thread fails here.

    The next tests on the same xdist worker would otherwise fail instead, far from the
    cause ("Already running asyncio in this thread"): Playwright's sync API, started and
    not stopped, does that.
    """
    yield
    # The low-level check asyncio.run itself makes.
    left = asyncio._get_running_loop()
    if left is not None:
        pytest.fail(f"the test left an event loop running in the main thread: {left!r}")


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.when == "teardown":
        _SCENARIO_LINES.extend(
            str(value) for key, value in report.user_properties if key == SCENARIO_PROPERTY
        )


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not _SCENARIO_LINES:
        return
    sizes = "full" if FULL else "short (CONVEYOR_FAULTS=full or `make faults` for the full sizes)"
    terminalreporter.section(f"fault scenarios, {sizes}")
    for line in _SCENARIO_LINES:
        terminalreporter.write_line(line)
