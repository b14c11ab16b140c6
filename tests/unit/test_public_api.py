"""``conveyor``'s public API: every exported name resolves, and each loads only what it needs."""

from __future__ import annotations

import ast
import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

import conveyor

REPO = Path(__file__).resolve().parents[2]

#: What a handler module must not pull in by importing the handler API.
HEAVY = ("celery", "fastapi", "uvicorn", "producers.app", "kombu")


def _loaded_after(code: str, watched: tuple[str, ...]) -> list[str]:
    """Run ``code`` in a fresh interpreter; which of ``watched`` it left in sys.modules."""
    report = f"import json, sys\nprint(json.dumps([m for m in {watched!r} if m in sys.modules]))"
    probe = f"{code}\n{report}"
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO, check=True, capture_output=True, text=True
    )
    loaded: list[str] = json.loads(done.stdout.strip().splitlines()[-1])
    return loaded


@pytest.mark.parametrize("name", conveyor.__all__)
def test_every_exported_name_resolves(name: str) -> None:
    assert getattr(conveyor, name) is not None


def test_exports_are_the_objects_of_their_home_modules() -> None:
    homes = {
        "JobContext": "workers.api",
        "RetryLater": "workers.api",
        "PermanentError": "workers.api",
        "Client": "producers.client",
        "EnqueueError": "producers.client",
        "ApiError": "producers.client",
        "ConveyorError": "infra.errors",
        "lambda_handler": "workers.lambda_adapter",
    }
    for name, module in homes.items():
        assert getattr(conveyor, name) is getattr(importlib.import_module(module), name), name


def test_the_client_errors_are_conveyor_errors() -> None:
    assert issubclass(conveyor.EnqueueError, conveyor.ApiError)
    assert issubclass(conveyor.ApiError, conveyor.ConveyorError)
    assert issubclass(conveyor.RetryLater, conveyor.ConveyorError)


def test_the_handler_api_loads_no_worker_runtime_or_producer_api() -> None:
    code = (
        "import conveyor\n"
        "from conveyor import JobContext, PermanentError, RetryLater\n"
        "assert conveyor.JobContext is JobContext\n"
    )
    assert _loaded_after(code, HEAVY) == []


def test_the_sanity_probe_sees_a_loaded_module() -> None:
    # The probe above must be able to fail: importing the Celery app is seen.
    assert _loaded_after("import workers.app", HEAVY) != []


def test_the_client_loads_no_celery() -> None:
    assert _loaded_after("from conveyor import Client", ("celery", "kombu", "fastapi")) == []


def test_an_unknown_name_raises_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no_such_name"):
        _ = conveyor.no_such_name  # type: ignore[attr-defined]
    with pytest.raises(ImportError):
        from conveyor import no_such_name  # type: ignore[attr-defined]  # noqa: F401, PLC0415


def test_submodules_still_import() -> None:
    from conveyor import cli  # noqa: PLC0415 - the package's own submodule, not an export

    assert cli.main is not None


def test_version_is_a_literal_setup_cfg_can_read_without_importing() -> None:
    assert "version = attr: conveyor.__version__" in (REPO / "setup.cfg").read_text()
    tree = ast.parse((REPO / "conveyor" / "__init__.py").read_text())
    versions = [
        node.value.value
        for node in tree.body
        if isinstance(node, ast.Assign)
        and any(isinstance(t, ast.Name) and t.id == "__version__" for t in node.targets)
        and isinstance(node.value, ast.Constant)
    ]
    assert versions == [conveyor.__version__]
