"""``conveyor scheduler``: run the scheduler role (delayed jobs, cron schedules)."""

from __future__ import annotations

from typing import Annotated

import typer

from conveyor.cli.common import EXIT_USAGE, fail, load
from infra.errors import ConfigError
from infra.logs import configure_logging
from infra.settings import SchedulingSettings, SettingsError, load_settings
from infra.topology import TopologyError, check_imports


def scheduler(
    health_port: Annotated[
        int | None,
        typer.Option(
            help="Serve /healthz and /metrics on this port (0: any free port; default:"
            " CONVEYOR_SCHEDULING_HEALTH_PORT, else not served).",
            envvar=SchedulingSettings.env_name("health_port"),
            min=0,
            max=65535,
            show_default=False,
        ),
    ] = None,
) -> None:
    """Publish delayed jobs when they are due (any number of replicas; SIGTERM stops).

    Each due job is claimed with a conditional write before it is published, so
    replicas share the work and a job is published once (again, with the same id,
    only if its replica died between claim and delete). See docs/scheduling.md.
    """
    topology = load()
    settings = load_settings()
    try:
        scheduling = settings.scheduling
    except SettingsError as exc:  # names every bad CONVEYOR_SCHEDULING_* variable
        fail(str(exc), EXIT_USAGE)
    try:
        # Cron schedules' payloads are validated against the models: they must import.
        check_imports(topology, source=str(settings.topology.queues_file), handlers=False)
    except TopologyError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(EXIT_USAGE) from None
    configure_logging(settings.logging.format, settings.logging.level)
    # Imported here: `conveyor --help` needs neither boto3 nor prometheus_client.
    from producers.scheduler import metrics  # noqa: PLC0415
    from producers.scheduler.serve import run_scheduler  # noqa: PLC0415

    if not topology.schedules:
        raise typer.Exit(run_scheduler(topology, scheduling, health_port=health_port))
    # Cron schedules fire from the same loop (docs/scheduling.md, "Cron schedules").
    from producers.schedules import ScheduleFirer  # noqa: PLC0415
    from producers.schedules import metrics as schedule_metrics  # noqa: PLC0415

    try:
        firer = ScheduleFirer(topology)
    except ConfigError as exc:  # a schedule's data no longer fits its job type's model
        fail(str(exc), EXIT_USAGE)
    metrics.also_expose(schedule_metrics.REGISTRY)
    try:
        code = run_scheduler(
            topology, scheduling, health_port=health_port, tick_sources=[firer.fire_due]
        )
    finally:
        firer.close()
    raise typer.Exit(code)


def register(app: typer.Typer) -> None:
    """Add ``scheduler`` to the ``conveyor`` command."""
    app.command()(scheduler)
