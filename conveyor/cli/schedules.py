"""``conveyor schedules``: list queues.yaml's cron schedules, pause, resume, trigger one now."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from conveyor.cli import common
from infra.aws.names import timers_table_name
from infra.errors import ConfigError
from infra.ledger import ledger_for
from infra.settings import load_settings
from infra.topology import Topology, TopologyError, check_imports
from producers.schedules import (
    ScheduleError,
    ScheduleFirer,
    ScheduleStore,
    ScheduleStoreError,
    unknown_schedule,
)
from producers.schedules.listing import ScheduleView, describe_schedules

app = typer.Typer(
    help="Cron schedules (queues.yaml schedules:): list, pause, resume, trigger.",
    no_args_is_help=True,
)

Name = Annotated[str, typer.Argument(metavar="NAME", help="The schedule's name in queues.yaml.")]


def _schedule(name: str) -> Topology:
    """The topology, once ``name`` is known to be one of its schedules (else exit 2)."""
    topology = common.load()
    if name not in topology.schedules:
        common.fail(unknown_schedule(name, topology.schedules), common.EXIT_USAGE)
    return topology


def _store(topology: Topology) -> ScheduleStore:
    return ScheduleStore(timers_table_name(topology))


def _time(at: datetime | None) -> str:
    return at.strftime("%Y-%m-%d %H:%M:%S%z") if at is not None else "-"


def _render(views: list[ScheduleView], console: Console) -> None:
    table = Table("name", "timetable", "timezone", "job type", "state", "next fire", "last fire")
    table.add_column("last job")
    table.add_column("status")
    for v in views:
        last = v.last_job_id or "-"
        if v.last_kind == "trigger":
            last += " (trigger)"
        table.add_row(
            v.name,
            v.timetable,
            v.timezone,
            v.job_type,
            v.mode,
            _time(v.next_fire),
            _time(v.last_fire),
            last,
            v.last_status or "-",
        )
    console.print(table)


@app.command("ls")
def ls(
    *,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON list.")] = False,
) -> None:
    """List every schedule: state, next and last fire, the last job and its status.

    The status comes from the job ledger, when the job type records one.
    """
    topology = common.load()
    try:
        views = describe_schedules(
            topology, _store(topology), ledger_for(topology), datetime.now(UTC)
        )
    except ScheduleStoreError as exc:
        common.fail(str(exc))
    if as_json:
        typer.echo(json.dumps([v.to_json() for v in views], indent=2))
        return
    if not views:
        typer.echo(f"{load_settings().topology.queues_file}: no schedules declared")
        return
    _render(views, Console(width=160))


@app.command("pause")
def pause(name: Name) -> None:
    """Stop NAME from firing (on every scheduler replica) until `resume`."""
    topology = _schedule(name)
    try:
        _store(topology).set_paused(name, True, datetime.now(UTC))
    except ScheduleStoreError as exc:
        common.fail(str(exc))
    typer.echo(f"schedule '{name}' paused")


@app.command("resume")
def resume(name: Name) -> None:
    """Let NAME fire again from its next tick (ticks while paused are not caught up)."""
    topology = _schedule(name)
    now = datetime.now(UTC)
    try:
        _store(topology).set_paused(name, False, now)
    except ScheduleStoreError as exc:
        common.fail(str(exc))
    schedule = topology.schedules[name]
    note = "" if schedule.enabled else " (but enabled: false in queues.yaml: it does not fire)"
    typer.echo(f"schedule '{name}' resumed{note}")


@app.command("trigger")
def trigger(name: Name) -> None:
    """Fire NAME once now, under a fresh job id (its timetable is unchanged)."""
    topology = _schedule(name)
    source = str(load_settings().topology.queues_file)
    try:
        check_imports(topology, source=source, handlers=False)
    except TopologyError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(common.EXIT_USAGE) from None
    try:
        firer = ScheduleFirer(topology)
    except ConfigError as exc:
        common.fail(f"{source}: {exc}", common.EXIT_USAGE)
    try:
        job_id = firer.trigger(name)
    except (ScheduleError, ScheduleStoreError) as exc:
        common.fail(str(exc))
    finally:
        firer.close()
    typer.echo(f"schedule '{name}' fired: job {job_id}")
