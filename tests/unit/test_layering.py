"""The layering holds: conveyor -> producers | workers | ops -> infra, and the runtime stays lean.

`make lint` runs the same contracts; running them here too means CI (which runs
`make test`) refuses a change that breaks them.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests import REPO

PACKAGES = ("infra", "producers", "workers", "ops", "conveyor")
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def _lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT_IMPORTS), "--config", "setup.cfg", "--no-cache"],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_contracts_hold() -> None:
    result = _lint_imports(REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "bad_import", "broken"),
    [
        ("infra/errors.py", "import ops.dlq", "conveyor -> producers | workers | ops -> infra"),
        ("workers/outcome.py", "import producers.batch", "conveyor -> producers"),
        ("producers/limits.py", "import infra.provision", "load no provisioning"),
    ],
)
def test_an_upward_or_sideways_import_breaks_them(
    tmp_path: Path, module: str, bad_import: str, broken: str
) -> None:
    for package in PACKAGES:
        shutil.copytree(REPO / package, tmp_path / package)
    shutil.copy(REPO / "setup.cfg", tmp_path / "setup.cfg")
    with (tmp_path / module).open("a", encoding="utf-8") as source:
        source.write(f"\n{bad_import}  # deliberate\n")
    result = _lint_imports(tmp_path)
    assert result.returncode != 0, result.stdout
    assert f"{broken}" in result.stdout
    assert "BROKEN" in result.stdout


def test_the_api_and_a_worker_load_no_provisioning_export_emulator_or_ops_code() -> None:
    code = (
        "import sys, workers.node, workers.lambda_adapter, producers.app; "
        "print(sorted(m for m in sys.modules if m.startswith("
        "('infra.provision', 'infra.export', 'infra.emulator', 'ops'))))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert result.stdout.strip() == "[]"
