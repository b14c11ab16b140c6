"""``conveyor``: one entry point, a subcommand group per area. It composes; it holds no logic."""

from __future__ import annotations

import typer

from conveyor.cli import api, dlq, infra, jobs, run, status, system, workers

app = typer.Typer(
    name="conveyor",
    help="A producer-consumer job system on Amazon SNS and SQS.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(infra.app, name="infra", help="Provision queues.yaml: plan, apply, destroy.")
app.add_typer(dlq.app, name="dlq", help="DLQs: list, show, redrive, export, delete, purge.")
app.add_typer(
    workers.app, name="workers", help="Worker pools: scale, ls, up (supervisor), autoscale."
)
app.add_typer(jobs.app, name="jobs", help="Jobs: show one's status (the job ledger).")
api.register(app)
run.register(app)
system.register(app)
status.register(app)


def main() -> None:
    """The console script."""
    app()
