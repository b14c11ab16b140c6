"""``conveyor jobs show ID`` and ``conveyor jobs cancel ID``, through the producer API."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from conveyor.cli import common
from conveyor.cli.api import ApiKeyOption, ApiUrl, TimeoutS, api_client, describe_failure
from infra.errors import EXIT_FAILED, exit_code
from producers.client import Cancellation, EnqueueError, JobStatus, NotCancelledError

app = typer.Typer(help="Jobs: show one's status, cancel one.", no_args_is_help=True)

#: Per-queue fields, in the order a person reads them.
_COLUMNS = (
    ("state", "state"),
    ("attempt", "attempt"),
    ("updated_at", "updated"),
    ("next_attempt_at", "next attempt"),
    ("finished_at", "finished"),
    ("reason", "reason"),
    ("error", "last error"),
)


def _cell(value: Any) -> str:
    return "" if value is None else str(value)


def render(status: JobStatus, console: Console) -> None:
    """The job's overall state, then one row per queue."""
    raw = status.raw
    console.print(f"job {status.id}  type {status.type or '?'}  [bold]{status.state}[/bold]")
    extra = [f"{k} {raw[k]}" for k in ("queued_at", "due_at", "trace_id") if raw.get(k)]
    if extra:
        console.print("  ".join(extra))
    table = Table("queue", *(title for _, title in _COLUMNS))
    for queue, record in sorted(status.queues.items()):
        table.add_row(queue, *(_cell(record.get(key)) for key, _ in _COLUMNS))
    console.print(table)


@app.command("show")
def show(
    job_id: Annotated[str, typer.Argument(metavar="ID", help="The job id.")],
    *,
    as_json: Annotated[bool, typer.Option("--json", help="Print the API's JSON answer.")] = False,
    api_url: ApiUrl = None,
    api_key: ApiKeyOption = None,
    timeout_s: TimeoutS = 10.0,
) -> None:
    """Show a job's status: overall, and per queue (attempt, times, dead-letter reason)."""
    try:
        with api_client(api_url, api_key, timeout_s) as client:
            status = client.status(job_id)
    except EnqueueError as exc:
        common.fail(describe_failure(exc, "status unavailable"), exit_code(exc))
    if as_json:
        typer.echo(json.dumps(status.raw, indent=2, sort_keys=True))
        return
    render(status, Console(width=120))


def render_cancellation(result: Cancellation, console: Console) -> None:
    """``job ID cancelled``, then each queue's state when not every queue was cancelled."""
    console.print(f"job {result.id}  type {result.type or '?'}  [bold]{result.state}[/bold]")
    console.print(result.detail)
    if any(state != "cancelled" for state in result.queues.values()):
        table = Table("queue", "state")
        for queue, state in sorted(result.queues.items()):
            table.add_row(queue, state)
        console.print(table)


@app.command("cancel")
def cancel(
    job_id: Annotated[str, typer.Argument(metavar="ID", help="The job id.")],
    *,
    as_json: Annotated[bool, typer.Option("--json", help="Print the API's JSON answer.")] = False,
    api_url: ApiUrl = None,
    api_key: ApiKeyOption = None,
    timeout_s: TimeoutS = 10.0,
) -> None:
    """Cancel a job that has not started: a delayed job is never published, a queued one
    is deleted unrun. A running or finished job is not interrupted (exit 1, its state)."""
    try:
        with api_client(api_url, api_key, timeout_s) as client:
            result = client.cancel(job_id)
    except NotCancelledError as exc:
        if as_json and isinstance(exc.body, dict):
            typer.echo(json.dumps(exc.body, indent=2, sort_keys=True))
        common.fail(f"not cancelled: {exc.detail}", EXIT_FAILED)
    except EnqueueError as exc:
        common.fail(
            describe_failure(exc).replace("enqueue failed", "cancel failed", 1), exit_code(exc)
        )
    if as_json:
        typer.echo(json.dumps(result.raw, indent=2, sort_keys=True))
        return
    render_cancellation(result, Console(width=120))
