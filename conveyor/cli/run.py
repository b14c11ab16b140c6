"""``conveyor check``, ``conveyor emulator`` and ``conveyor worker``."""

from __future__ import annotations

import warnings
from typing import Annotated

import typer

from conveyor.cli.common import EXIT_FAILED, EXIT_USAGE, fail, load
from infra.logs import configure_logging
from infra.settings import load_settings
from infra.topology import (
    Topology,
    TopologyError,
    check_imports,
    load_topology,
    use_project_dir,
)


def check() -> None:
    """Validate queues.yaml, including that every payload model and handler imports.

    Every problem is reported at once, one line each (file, key, what is wrong).
    """
    settings = load_settings().topology
    source = str(settings.queues_file)
    problems: list[str] = []
    topology: Topology | None
    try:
        topology = load_topology(settings.queues_file, environment=settings.environment)
    except TopologyError as exc:
        problems += str(exc).splitlines()
        # What could be read (unknown keys left out) still gets its imports checked.
        topology = exc.partial
        use_project_dir(settings.queues_file)
    if topology is not None:
        try:
            check_imports(topology, source=source, handlers=True)
        except TopologyError as exc:
            problems += str(exc).splitlines()
    if problems or topology is None:
        for line in problems:
            typer.echo(line, err=True)
        raise typer.Exit(EXIT_USAGE)
    typer.echo(
        f"{load_settings().topology.queues_file}: OK — {len(topology.topics)} topics,"
        f" {len(topology.queues)} queues, {len(topology.job_types)} job types,"
        f" {len(topology.pools)} pools"
    )


def emulator(
    port: Annotated[int, typer.Option(help="Loopback port; 0 picks a free one.")] = 0,
    host: Annotated[str, typer.Option(help="Address to bind (keep it on loopback).")] = "127.0.0.1",
) -> None:
    """Run the embedded AWS emulator (moto with Conveyor's fixes) in the foreground."""
    from infra.emulator.server import serve  # noqa: PLC0415 - moto is an optional extra

    raise typer.Exit(serve(host=host, port=port))


def worker(
    pool: Annotated[str, typer.Option(help="The pool (from queues.yaml) this node serves.")],
    concurrency: Annotated[
        int | None, typer.Option(min=1, help="Jobs at once; default: the pool's.")
    ] = None,
    health_port: Annotated[
        int | None,
        typer.Option(help="Serve /healthz and /metrics on this port (0: any free port)."),
    ] = None,
) -> None:
    """Run one worker node of POOL in the foreground (SIGTERM drains and stops it)."""
    from infra.errors import MissingResourceError  # noqa: PLC0415 - keep `conveyor --help` fast
    from workers.node import run_node  # noqa: PLC0415

    settings = load_settings()
    configure_logging(settings.logging.format, settings.logging.level)
    worker = settings.worker
    topology = load()
    if pool not in topology.pools:
        fail(f"unknown pool '{pool}' (known: {', '.join(topology.pools) or 'none'})", EXIT_USAGE)
    # Celery warns about running as root; the image runs as a non-root user, and the
    # warning would break the JSON log stream in development containers.
    warnings.filterwarnings("ignore", message=".*superuser privileges.*")
    try:
        code = run_node(
            topology,
            pool,
            concurrency=concurrency,
            loglevel=settings.logging.level,
            health_port=health_port if health_port is not None else worker.worker_health_port,
            liveness_timeout_s=worker.worker_liveness_timeout_s,
            shutdown_grace_s=worker.worker_shutdown_grace_s,
        )
    except TopologyError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(EXIT_USAGE) from None
    except MissingResourceError as exc:
        fail(str(exc), EXIT_FAILED)
    raise typer.Exit(code)


def register(app: typer.Typer) -> None:
    """Add these commands to ``app``."""
    app.command()(check)
    app.command()(emulator)
    app.command()(worker)
