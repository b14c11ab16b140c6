"""Regenerate docs/cli.md from the CLI's own ``--help`` (``make docs``).

Walks every command and group of ``conveyor`` in the order they are registered,
renders each ``--help`` at a fixed width and strips rich's boxes, so the page is
plain text that diffs well. ``tests/unit/test_cli_docs.py`` fails when the page
is stale, so a changed command cannot ship with an old reference.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import typer.main
from typer.testing import CliRunner

from conveyor.cli import app

PAGE = Path(__file__).with_name("cli.md")
WIDTH = 100

HEADER = """\
# CLI reference

Generated from `conveyor … --help` by `make docs` (a test fails when it is stale).
Every command reads `queues.yaml` from `CONVEYOR_QUEUES_FILE` (default
`./queues.yaml`); `CONVEYOR_ENVIRONMENT` overrides its environment. Exit codes:
0 success, 1 the operation failed, 2 usage or configuration error.
"""

_BOX = re.compile(r"[╭╮╰╯│─]")


def _commands(command: Any, path: tuple[str, ...]) -> list[tuple[str, ...]]:
    found = [path]
    # typer's groups are not click.Group subclasses in every release: duck-type.
    subcommands: dict[str, Any] = getattr(command, "commands", {})
    for name, sub in subcommands.items():  # registration order
        if not getattr(sub, "hidden", False):
            found.extend(_commands(sub, (*path, name)))
    return found


def _plain(text: str) -> str:
    lines = []
    for raw in text.splitlines():
        line = _BOX.sub("", raw).rstrip()
        # A box's title line ("╭─ Options ───╮") leaves only its title behind.
        if line.strip():
            lines.append(line)
    return "\n".join(lines)


def render() -> str:
    """The whole page, as ``make docs`` writes it."""
    root = typer.main.get_command(app)
    runner = CliRunner()
    sections = [HEADER]
    for path in _commands(root, ("conveyor",)):
        result = runner.invoke(
            app, [*path[1:], "--help"], env={"COLUMNS": str(WIDTH), "TERM": "dumb"}
        )
        if result.exit_code != 0:
            raise SystemExit(f"`{' '.join(path)} --help` failed: {result.output}")
        sections.append(f"## `{' '.join(path)}`\n\n```text\n{_plain(result.output)}\n```\n")
    return "\n".join(sections)


def main() -> None:
    """Write docs/cli.md, or with ``--check`` exit 1 when it differs from the CLI."""
    page = render()
    if "--check" in sys.argv[1:]:
        if PAGE.read_text(encoding="utf-8") != page:
            raise SystemExit("docs/cli.md is stale: run `make docs`")
        return
    PAGE.write_text(page, encoding="utf-8")


if __name__ == "__main__":
    main()
