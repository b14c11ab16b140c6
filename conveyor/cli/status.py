"""``conveyor status``: queues (depths, DLQ, oldest message) and pools (desired/running)."""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.live import Live

from conveyor.cli.common import EXIT_FAILED, EXIT_USAGE, fail, load
from infra.discovery import current_target
from infra.errors import AwsError
from ops.scaling.backends import BACKEND_ENV, Backend, backend_for
from ops.scaling.errors import ScalingError

if TYPE_CHECKING:
    from ops.scaling.status import SystemStatus


def status(
    watch: Annotated[bool, typer.Option("--watch", help="Refresh in place until Ctrl-C.")] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print JSON (one document per refresh with --watch).")
    ] = False,
    interval_s: Annotated[
        float, typer.Option(min=0.5, help="Seconds between refreshes with --watch.")
    ] = 2.0,
    backend_name: Annotated[
        str,
        typer.Option("--backend", envvar=BACKEND_ENV, help="Where pool replicas live."),
    ] = "local",
) -> None:
    """Per queue: visible, in flight, delayed, DLQ depth, oldest message; per pool: replicas.

    The first line says what it talks to (AWS or the emulator, the API) and why; off a
    terminal, --watch prints each refresh in turn.
    """
    from ops.scaling.render import status_view  # noqa: PLC0415 - keep --help fast
    from ops.scaling.status import StatusReader  # noqa: PLC0415

    topology = load()
    backend: Backend | None = None
    backend_error = None
    try:
        backend = backend_for(backend_name, topology, with_jobs=False)
    except ScalingError as exc:
        if exc.usage and "unknown scaling backend" in exc.message:
            fail(exc.message, EXIT_USAGE)
        backend_error = exc.message  # the queues are still worth showing
    reader = StatusReader(topology, backend, backend_name)

    def read() -> SystemStatus:
        try:
            found = reader.read()
        except AwsError as exc:
            fail(str(exc), EXIT_FAILED)
        if backend_error:
            found = dataclasses.replace(found, pools_error=backend_error)
        return found

    target = current_target()

    def document() -> dict[str, Any]:
        return {**read().to_json(), "target": target.to_json()}

    if not watch:
        if as_json:
            typer.echo(json.dumps(document(), indent=2))
        else:
            found = read()
            typer.echo(target.line())
            Console().print(status_view(found))
        return
    try:
        if as_json:
            while True:
                typer.echo(json.dumps(document()))
                sys.stdout.flush()  # a pipe's reader sees each refresh as it comes
                time.sleep(interval_s)  # the refresh period
        if not sys.stdout.isatty():
            # Off a terminal, a live display writes nothing: print each refresh in turn.
            typer.echo(target.line())
            while True:
                found = read()
                typer.echo(f"-- {datetime.now(UTC):%Y-%m-%dT%H:%M:%SZ}")
                Console().print(status_view(found))
                sys.stdout.flush()
                time.sleep(interval_s)  # the refresh period
        typer.echo(target.line())
        with Live(status_view(read()), auto_refresh=False) as live:
            while True:
                time.sleep(interval_s)  # the refresh period
                live.update(status_view(read()), refresh=True)
    except KeyboardInterrupt:
        return


def register(app: typer.Typer) -> None:
    """Add ``status`` to ``app``."""
    app.command()(status)
