"""``conveyor``: one entry point, a subcommand group per area. It composes; it holds no logic."""

from __future__ import annotations

import sys

import typer

from conveyor.cli import (
    api,
    dlq,
    infra,
    jobs,
    run,
    scheduler,
    schedules,
    status,
    system,
    workers,
)
from infra.discovery import apply_discovery
from infra.errors import ConveyorError, exit_code

app = typer.Typer(
    name="conveyor",
    help="A producer-consumer job system on Amazon SNS and SQS.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
#: Commands that start their own system, so never adopt a running one's (local discovery).
_STARTS_ITS_OWN = frozenset({"up", "demo", "emulator"})


@app.callback()
def _discover(ctx: typer.Context) -> None:
    # Before any command: with no AWS settings given, talk to the running `conveyor up`
    # of this project (infra.discovery). No docstring: it would replace the app's help.
    if ctx.invoked_subcommand not in _STARTS_ITS_OWN:
        apply_discovery()


app.add_typer(infra.app, name="infra", help="Provision queues.yaml: plan, apply, destroy.")
app.add_typer(dlq.app, name="dlq", help="DLQs: list, show, redrive, export, delete, purge.")
app.add_typer(
    workers.app, name="workers", help="Worker pools: scale, ls, up (supervisor), autoscale."
)
app.add_typer(jobs.app, name="jobs", help="Jobs: show one's status (the job ledger).")
app.add_typer(schedules.app, name="schedules", help="Cron schedules: ls, pause, resume, trigger.")
api.register(app)
run.register(app)
scheduler.register(app)
system.register(app)
status.register(app)


def main() -> None:
    """The console script: any Conveyor error a command did not handle is one line, and
    its exit code comes from the error tree (:func:`infra.errors.exit_code`)."""
    try:
        app()
    except ConveyorError as exc:
        typer.echo(f"conveyor: {exc}", err=True)
        sys.exit(exit_code(exc))
