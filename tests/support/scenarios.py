"""The fault and fuzz scenarios' sizes and their one-line figures for the end of the run.

``CONVEYOR_FAULTS=full`` (``make faults``) selects the full sizes, anything else the
short ones that ``make test`` runs. A scenario's line is kept in :data:`REPORT` of the
process it ran in; tests/conftest.py moves it into the test's report, so the run's
summary lists it also when the scenario ran in a pytest-xdist worker.
"""

from __future__ import annotations

import os

#: ``make faults`` sets this to ``full``.
FULL = os.environ.get("CONVEYOR_FAULTS", "short").strip().lower() == "full"

#: Every scenario line this process reported, in run order.
REPORT: list[str] = []
#: The ``user_properties`` key under which a test report carries its scenario lines.
SCENARIO_PROPERTY = "fault_scenario"


def size(short: int, full: int) -> int:
    """The short or the full figure, by ``CONVEYOR_FAULTS``."""
    return full if FULL else short


def report(line: str) -> None:
    """Keep ``line`` for the run's summary, and print it (visible with -s)."""
    REPORT.append(line)
    print(f"\nFAULTS {line}")
