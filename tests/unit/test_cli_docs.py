"""docs/cli.md is the CLI's own ``--help``: a changed command must ship with its page."""

from __future__ import annotations

import importlib.util
from pathlib import Path

DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_cli_reference_matches_the_cli() -> None:
    spec = importlib.util.spec_from_file_location("generate_cli", DOCS / "generate_cli.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    page = module.render()
    assert "## `conveyor dlq redrive`" in page  # the walk reaches nested commands
    assert (DOCS / "cli.md").read_text(encoding="utf-8") == page, (
        "docs/cli.md is stale: run `make docs`"
    )
