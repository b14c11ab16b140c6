"""What every CLI command shares: loading the topology, failing with one readable line."""

from __future__ import annotations

import sys
from typing import NoReturn

import typer

from infra.errors import EXIT_FAILED, EXIT_USAGE
from infra.settings import load_settings
from infra.topology import Topology, TopologyError, load_topology

__all__ = ["EXIT_FAILED", "EXIT_USAGE", "confirm", "fail", "load"]


def fail(message: str, code: int = EXIT_FAILED) -> NoReturn:
    """Print ``conveyor: <message>`` to stderr and exit with ``code``."""
    typer.echo(f"conveyor: {message}", err=True)
    raise typer.Exit(code)


def load() -> Topology:
    """The topology from ``CONVEYOR_QUEUES_FILE`` (default ./queues.yaml), or exit 2 with why."""
    settings = load_settings().topology
    try:
        return load_topology(settings.queues_file, environment=settings.environment)
    except TopologyError as exc:
        # Every problem on its own line; the first names the file, so it stays readable.
        typer.echo(str(exc), err=True)
        raise typer.Exit(EXIT_USAGE) from None


def confirm(prompt: str, *, yes: bool) -> None:
    """Ask before destroying anything; without a terminal, ``--yes`` is required."""
    if yes:
        return
    if not sys.stdin.isatty():
        fail("refusing to continue without confirmation: pass --yes", EXIT_USAGE)
    if not typer.confirm(prompt, default=False):
        fail("aborted", EXIT_FAILED)
