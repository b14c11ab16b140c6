"""``conveyor infra plan | apply | destroy | export``: provision queues.yaml, or export it."""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml

from conveyor.cli import common
from infra import aws, provision
from infra.errors import ProvisionError
from infra.export import cloudformation_template, kubernetes_manifests
from infra.export.cfn_console import ConsoleMode
from infra.export.kubernetes import ACCOUNT_PLACEHOLDER, manifest_filename
from infra.provision import Change, Plan

app = typer.Typer(
    help="Provision queues.yaml on SNS/SQS: `plan` shows what `apply` would change,"
    " `apply` creates or updates topics, queues, DLQs and subscriptions (idempotent),"
    " `destroy` deletes them; `export` writes CloudFormation or Kubernetes manifests.",
    no_args_is_help=True,
)

AsJson = Annotated[bool, typer.Option("--json", help="Print the changes as JSON on stdout.")]


class ConsoleChoice(StrEnum):
    """Whether an export runs the web console, and what it may do."""

    none = "none"
    read_only = "read-only"
    operate = "operate"

    def mode(self) -> ConsoleMode | None:
        """The exporters' argument: None for no console."""
        return None if self is ConsoleChoice.none else self.value  # type: ignore[return-value]


Console = Annotated[
    ConsoleChoice,
    typer.Option(
        help="Also export the web console (conveyor console): read-only (its role and pages"
        " only read), or operate (it may redrive and delete dead letters, cancel jobs and"
        " scale pools).",
    ),
]

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
    """Delete what queues.yaml declares: topics, queues, DLQs, subscriptions, tables, bucket.

    The payload bucket is emptied first (the plan shows how many objects it holds).
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


export_app = typer.Typer(
    help="Generate infrastructure as code from queues.yaml: CloudFormation, Kubernetes/KEDA.",
    no_args_is_help=True,
)
app.add_typer(export_app, name="export")


@export_app.command("cloudformation")
def export_cloudformation(
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Write the template (JSON) here; default stdout."),
    ] = None,
    console: Console = ConsoleChoice.none,
) -> None:
    """A CloudFormation template: topics, queues, DLQs, tables, bucket, IAM, ECS, alarms."""
    template = cloudformation_template(common.load(), console=console.mode())
    text = json.dumps(template, indent=2, ensure_ascii=False)
    if output is None:
        typer.echo(text)
        return
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text + "\n", encoding="utf-8")
    typer.echo(f"wrote {output}", err=True)


@export_app.command("kubernetes")
def export_kubernetes(
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="Write one YAML file per manifest into this directory;"
            " default: all of them to stdout, as one multi-document YAML stream.",
        ),
    ] = None,
    image: Annotated[str, typer.Option(help="The Conveyor container image.")] = "conveyor:latest",
    region: Annotated[
        str | None, typer.Option(help="AWS region of the queues; default: the configured one.")
    ] = None,
    account: Annotated[
        str | None,
        typer.Option(help=f"AWS account id in the queue URLs; default: {ACCOUNT_PLACEHOLDER}."),
    ] = None,
    prometheus_rule: Annotated[
        bool,
        typer.Option(
            "--prometheus-rule",
            help="Add a PrometheusRule with the job alerts (dead-letter rate, queue lag);"
            " the cluster needs the Prometheus Operator's CRDs.",
        ),
    ] = False,
    *,
    console: Console = ConsoleChoice.none,
) -> None:
    """Kubernetes manifests: Deployments for the API and each pool, KEDA ScaledObjects."""
    manifests = kubernetes_manifests(
        common.load(),
        image=image,
        region=region or aws.region_name(),
        account=account or ACCOUNT_PLACEHOLDER,
        prometheus_rule=prometheus_rule,
        console=console.mode(),
    )
    if output is None:
        typer.echo(yaml.safe_dump_all(manifests, sort_keys=False), nl=False)
        return
    output.mkdir(parents=True, exist_ok=True)
    for index, manifest in enumerate(manifests):
        path = output / manifest_filename(index, manifest)
        path.write_text(yaml.safe_dump(manifest, sort_keys=False), encoding="utf-8")
    typer.echo(f"wrote {len(manifests)} manifests to {output}", err=True)
