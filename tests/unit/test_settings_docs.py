"""docs/settings.md is the settings object's own description: a new setting ships with its page."""

from __future__ import annotations

import importlib.util
from pathlib import Path

DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_settings_reference_matches_the_settings() -> None:
    spec = importlib.util.spec_from_file_location(
        "generate_settings", DOCS / "generate_settings.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    page = module.render()
    # Every section and its fields are there, with type, default and description.
    rate = "| `CONVEYOR_API_RATE_PER_S` | number, > 0 | `200.0` | Default per-key rate limit"
    assert rate in page
    assert "| `CONVEYOR_CLIENT_API_KEY` | string | unset | The API key the CLI sends" in page
    assert (DOCS / "settings.md").read_text(encoding="utf-8") == page, (
        "docs/settings.md is stale: run `make docs`"
    )
