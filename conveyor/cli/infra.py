"""``conveyor infra plan | apply | destroy``: provision queues.yaml on SNS/SQS."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from conveyor.cli import common
from infra import provision
from infra.provision import Change, Plan, ProvisionError

app = typer.Typer(
    help="Provision queues.yaml on SNS/SQS: `plan` shows what `apply` would change,"
    " `apply` creates or updates topics, queues, DLQs and subscriptions (idempotent),"
    " `destroy` deletes them.",
    no_args_is_help=True,
)

AsJson = Annotated[bool, typer.Option("--json", help="Print the changes as JSON on stdout.")]

_COLOURS = {"create": "green", "update": "yellow", "delete": "red", "note": "cyan"}


def _echo_changes(changes: list[Change], *, err: bool = False) -> None:
    for change in changes:
        typer.secho(change.render(), fg=_COLOURS[change.action], err=err)


def _echo_json(data: dict[str, Any]) -> None:
    typer.echo(json.dumps(data, indent=2, ensure_ascii=False))


def _failed(exc: ProvisionError, *, as_json: bool) -> None:
    """Show what was done before the failure, then exit 1 with the error on one line."""
    if as_json:
        _echo_json({**Plan(exc.applied).to_json(), "error": exc.message})
    elif exc.applied:
        _echo_changes(exc.applied)
        typer.echo(f"{len(Plan(exc.applied).actions)} changes applied before the error")
    common.fail(exc.message)


@app.command()
def plan(as_json: AsJson = False) -> None:
    """Show what `apply` would create (+), update (~) and delete (-); notes (!) change nothing."""
    topology = common.load()
    try:
        result = provision.plan(topology)
    except ProvisionError as exc:
        common.fail(exc.message)
    if as_json:
        _echo_json(result.to_json())
        return
    _echo_changes(result.changes)
    typer.echo(result.summary())


@app.command()
def apply(as_json: AsJson = False) -> None:
    """Create or update what queues.yaml declares; a second run changes nothing."""
    topology = common.load()
    try:
        result = provision.apply(topology)
    except ProvisionError as exc:
        _failed(exc, as_json=as_json)
        return
    if as_json:
        _echo_json(result.to_json())
        return
    _echo_changes(result.changes)
    if result.is_empty:
        typer.echo("no changes: already up to date")
    else:
        typer.echo(f"{len(result.actions)} changes applied")


@app.command()
def destroy(
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    as_json: AsJson = False,
) -> None:
    """Delete the topics, queues, DLQs and subscriptions queues.yaml declares (and their messages).

    Without a terminal, --yes is required. Resources that do not exist are skipped.
    """
    topology = common.load()
    try:
        preview = provision.plan_destroy(topology)
    except ProvisionError as exc:
        common.fail(exc.message)
    if preview.is_empty:
        if as_json:
            _echo_json(preview.to_json())
        else:
            _echo_changes(preview.changes)
            typer.echo("nothing to destroy")
        return
    # With --json, stdout is kept for the result: the preview goes to stderr.
    _echo_changes(preview.changes, err=as_json)
    count = len(preview.actions)
    env = f"{topology.project}-{topology.environment}"
    common.confirm(f"Delete these {count} resources of {env}?", yes=yes)
    try:
        result = provision.destroy(topology)
    except ProvisionError as exc:
        _failed(exc, as_json=as_json)
        return
    if as_json:
        _echo_json(result.to_json())
        return
    typer.echo(f"{len(result.actions)} resources deleted")
    if any(c.kind in ("queue", "dlq") for c in result.actions):
        typer.echo("note: AWS lets a deleted queue's name be reused only after 60 seconds")
