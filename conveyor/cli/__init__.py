"""``conveyor``: one entry point, a subcommand group per area. It composes; it holds no logic."""

from __future__ import annotations

import sys

import typer

from infra.discovery import apply_discovery
from infra.errors import ConveyorError, exit_code

#: Commands that start their own system, so never adopt a running one's (local discovery).
_STARTS_ITS_OWN = frozenset({"up", "demo", "emulator"})


def _discover(ctx: typer.Context) -> None:
    # Before any command: with no AWS settings given, talk to the running `conveyor up`
    # of this project (infra.discovery). No docstring: it would replace the app's help.
    if ctx.invoked_subcommand not in _STARTS_ITS_OWN:
        apply_discovery()


def build_app() -> typer.Typer:
    """The whole CLI. Command groups are imported here, not by ``import conveyor.cli``."""
    from conveyor.cli import (  # noqa: PLC0415
        api,
        console,
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

    app = typer.Typer(
        name="conveyor",
        help="A producer-consumer job system on Amazon SNS and SQS.",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
    )
    app.callback()(_discover)
    app.add_typer(infra.app, name="infra", help="Provision queues.yaml: plan, apply, destroy.")
    app.add_typer(dlq.app, name="dlq", help="DLQs: list, show, redrive, export, delete, purge.")
    app.add_typer(
        workers.app, name="workers", help="Worker pools: scale, ls, up (supervisor), autoscale."
    )
    app.add_typer(jobs.app, name="jobs", help="Jobs: show one's status, cancel one.")
    app.add_typer(
        schedules.app, name="schedules", help="Cron schedules: ls, pause, resume, trigger."
    )
    api.register(app)
    console.register(app)
    run.register(app)
    scheduler.register(app)
    system.register(app)
    status.register(app)
    return app


def _node_app() -> typer.Typer:
    """``conveyor worker`` alone (with ``check`` and ``emulator``, its module's other commands).

    A worker node, and every pool process it forks, then holds none of the API,
    client, provisioning, export or operator code the other commands import.
    """
    from conveyor.cli import run  # noqa: PLC0415

    app = typer.Typer(name="conveyor", add_completion=False, pretty_exceptions_enable=False)
    # A group (so that ``worker`` stays a subcommand) that finds a running `conveyor up`.
    app.callback()(_discover)
    run.register(app)
    return app


def __getattr__(name: str) -> typer.Typer:
    # ``conveyor.cli.app`` (docs/generate_cli.py, tests): built on first access.
    if name == "app":
        app = globals()["app"] = build_app()
        return app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def main() -> None:
    """The console script: any Conveyor error a command did not handle is one line, and
    its exit code comes from the error tree (:func:`infra.errors.exit_code`)."""
    app = _node_app() if sys.argv[1:2] == ["worker"] else build_app()
    try:
        app()
    except ConveyorError as exc:
        typer.echo(f"conveyor: {exc}", err=True)
        sys.exit(exit_code(exc))
