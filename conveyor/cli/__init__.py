"""``conveyor``: one entry point, a subcommand group per area. It composes; it holds no logic."""

from __future__ import annotations

import sys

import typer

from infra.errors import ConveyorError, exit_code


def build_app() -> typer.Typer:
    """The whole CLI. Command groups are imported here, not by ``import conveyor.cli``."""
    from conveyor.cli import api, dlq, infra, jobs, run, status, system, workers  # noqa: PLC0415

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
    return app


def _node_app() -> typer.Typer:
    """``conveyor worker`` alone (with ``check`` and ``emulator``, its module's other commands).

    A worker node, and every pool process it forks, then holds none of the API,
    client, provisioning, export or operator code the other commands import.
    """
    from conveyor.cli import run  # noqa: PLC0415

    app = typer.Typer(name="conveyor", add_completion=False, pretty_exceptions_enable=False)

    @app.callback()
    def _group() -> None:
        """A group, so that ``worker`` stays a subcommand."""

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
