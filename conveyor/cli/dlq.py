"""``conveyor dlq list | show | redrive | export | delete | purge``: dead-letter queues.

Options are parsed and results printed here; the operations are in
:mod:`ops.dlq`. Data goes to stdout (tables, jobs, JSON), everything about
the run (previews, progress, notes) to stderr, so ``--json`` and ``export -``
stay machine-readable. Exit codes: 0 success (including "nothing to do" on an
empty DLQ), 1 partial or failed (including ids asked for but not found), 2 usage.

Confirmation: ``purge`` and ``delete`` always ask (``--yes`` for scripts);
``redrive`` asks unless ``--ids`` names every job it may move — it never loses a
job, but a broad redrive puts load back on the workers. Without a terminal, a
command that would ask refuses with exit 2 and changes nothing.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from conveyor.cli import common
from infra import aws
from infra.aws.lookup import queue_depth
from infra.durations import parse_duration_s
from infra.errors import ConveyorError, exit_code
from infra.topology import Topology
from ops import dlq as dlq_ops
from ops.dlq import DeadLetterQueue, DlqError, JobFilter, Peek, RedriveResult, render
from ops.dlq.redrive import without_handler
from ops.text import printable, printable_json

#: A redrive shorter than this reports no jobs-per-second figure: too short to mean one.
MIN_RATE_WINDOW_S = 1.0

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

app = typer.Typer(
    help="Inspect dead-letter queues and act on them: `list` and `show` never consume;"
    " `redrive` moves chosen jobs back (sent before deleted: nothing is lost); `export`"
    " writes JSON Lines; `delete` and `purge` remove jobs after confirmation.",
    no_args_is_help=True,
)

QueueArg = Annotated[
    str,
    typer.Argument(
        metavar="QUEUE",
        help="The queue whose DLQ to use, as declared in queues.yaml (e.g. billing),"
        " or the DLQ's own name.",
        show_default=False,
    ),
]
Types = Annotated[
    list[str] | None,
    typer.Option(
        "--type", "-t", help="Only jobs of this type (shell patterns such as image.*); repeatable."
    ),
]
ErrorText = Annotated[
    str | None,
    typer.Option(
        "--error", help="Only jobs whose reason, error type or message contains this text."
    ),
]
Since = Annotated[
    str | None,
    typer.Option(
        "--since",
        metavar="DURATION",
        help="Only jobs that failed within DURATION (30m, 2h, 3d) or since an ISO time.",
    ),
]
Limit = Annotated[int | None, typer.Option("--limit", "-n", min=1, help="At most this many jobs.")]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON on stdout.")]
Yes = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")]
Hold = Annotated[
    str,
    typer.Option(
        "--visibility-timeout",
        metavar="DURATION",
        help="How long messages read by this command stay hidden if it dies without"
        " releasing them (renewed while it runs; released at once when it ends).",
    ),
]


# -- plumbing ---------------------------------------------------------------------------


@contextmanager
def _errors() -> Iterator[None]:
    """DlqError and AwsError as one line and the right exit code."""
    try:
        yield
    except ConveyorError as exc:  # DlqError, AwsError …
        common.fail(str(exc), exit_code(exc))


def _note(text: str) -> None:
    typer.echo(text, err=True)


def _hold_s(value: str) -> float:
    try:
        seconds = parse_duration_s(value)
    except ValueError as exc:
        common.fail(f"--visibility-timeout: {exc}", common.EXIT_USAGE)
    if not 1 <= seconds <= 12 * 3600:
        common.fail("--visibility-timeout must be between 1s and 12h", common.EXIT_USAGE)
    return seconds


def _filter(
    types: list[str] | None,
    error: str | None,
    since: str | None,
    ids: list[str] | None = None,
) -> JobFilter:
    when = None
    if since is not None:
        try:
            when = dlq_ops.parse_since(since, datetime.now(UTC))
        except ValueError as exc:
            common.fail(str(exc), common.EXIT_USAGE)
    return JobFilter(
        job_types=tuple(types or ()),
        error=error or None,
        since=when,
        ids=frozenset(_split_ids(ids)),
    )


def _split_ids(values: list[str] | None) -> list[str]:
    """``--ids a,b --ids c`` → ``[a, b, c]``."""
    return [part for value in values or () for part in re.split(r"[,\s]+", value) if part]


def _open(topology: Topology, queue: str) -> tuple[SQSClient, DeadLetterQueue, str]:
    dlq = dlq_ops.resolve_dlq(topology, queue)
    return aws.client("sqs"), dlq, dlq_ops.dlq_url(topology, dlq)


def _nothing(verb: str, dlq: DeadLetterQueue, found: Peek, job_filter: JobFilter) -> str:
    if found.depth == 0 and not found.scanned:
        return f"nothing to {verb}: {dlq.name} is empty"
    return f"nothing to {verb}: no job in {dlq.name} matches ({job_filter.describe()})"


def _notes(found: Peek) -> None:
    for line in render.peek_notes(found):
        _note(line)


# -- formatting ---------------------------------------------------------------------------


class _Progress:
    """Redrive progress on stderr: a rich bar on a terminal, a line per batch otherwise."""

    def __init__(self, total: int) -> None:
        self.total = total
        self._bar: Any = None
        self._task: Any = None
        if sys.stderr.isatty():
            from rich.console import Console  # noqa: PLC0415 - only for terminals
            from rich.progress import (  # noqa: PLC0415
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
            )

            self._bar = Progress(
                TextColumn("redrive"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[detail]}"),
                TimeElapsedColumn(),
                console=Console(stderr=True),
            )
            self._task = self._bar.add_task("redrive", total=total, detail="")

    def __enter__(self) -> _Progress:
        if self._bar is not None:
            self._bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()

    def __call__(self, result: RedriveResult) -> None:
        rate = f"{result.rate_per_s:.1f}/s" if result.elapsed_s >= MIN_RATE_WINDOW_S else ""
        detail = ", ".join(filter(None, [rate, f"{result.failed} failed" if result.failed else ""]))
        if self._bar is not None:
            self._bar.update(self._task, completed=result.moved, detail=detail)
        else:
            _note(f"redrive: {result.moved}/{self.total} moved, {detail}")


# -- commands ---------------------------------------------------------------------------


@app.command("list")
def list_dlqs(
    as_json: AsJson = False,
    visibility_timeout: Hold = "30s",
) -> None:
    """Every DLQ of queues.yaml with its depth and the age of its oldest message.

    Depth counts visible and in-flight messages.

    The age comes from a non-consuming peek; ">=" marks a lower bound (not all seen).
    """
    topology = common.load()
    hold_s = _hold_s(visibility_timeout)
    with _errors():
        rows = dlq_ops.summarize(aws.client("sqs"), topology, hold_s=hold_s)
    missing = [r.dlq.name for r in rows if not r.exists]
    if as_json:
        typer.echo(json.dumps({"dlqs": [r.to_json() for r in rows]}, indent=2))
    else:
        for line in render.list_table(rows):
            typer.echo(line)
        if rows and all(r.depth is not None and r.depth.total == 0 for r in rows):
            _note("every dead-letter queue is empty")
    if missing:
        common.fail(
            f"{len(missing)} DLQ(s) do not exist ({', '.join(missing)}): run `conveyor infra apply`"
        )


@app.command()
def show(
    queue: QueueArg,
    *,
    limit: Annotated[
        int, typer.Option("--limit", "-n", min=1, help="At most this many jobs.")
    ] = 20,
    types: Types = None,
    error: ErrorText = None,
    since: Since = None,
    as_json: AsJson = False,
    traceback: Annotated[
        bool, typer.Option("--traceback", help="Include the end of each job's traceback.")
    ] = False,
    full: Annotated[
        bool, typer.Option("--full", help="The whole envelope instead of a payload summary.")
    ] = False,
    visibility_timeout: Hold = "30s",
) -> None:
    """Decode the jobs in QUEUE's DLQ: id, type, attempts, why and when they failed.

    Nothing is consumed: messages are read briefly hidden and released at once.
    """
    topology = common.load()
    job_filter = _filter(types, error, since)
    hold_s = _hold_s(visibility_timeout)
    with _errors():
        sqs, dlq, url = _open(topology, queue)
        found = dlq_ops.peek(sqs, url, job_filter, limit=limit, hold_s=hold_s)
    if as_json:
        doc = render.show_document(dlq, found, traceback=traceback, full=full)
        typer.echo(printable_json(json.dumps(doc, indent=2, ensure_ascii=False)))
        _notes(found)
        return
    if not found.jobs:
        if found.depth == 0 and not found.scanned:
            typer.echo(f"{dlq.name} is empty")
        else:
            typer.echo(f"no job in {dlq.name} matches ({job_filter.describe()})")
        _notes(found)
        return
    what = f" matching {job_filter.describe()}" if not job_filter.is_empty else ""
    typer.echo(
        f"{dlq.name} (DLQ of {dlq.queue}): ~{found.depth} messages; showing {len(found.jobs)}{what}"
    )
    for job in found.jobs:
        typer.echo("")
        typer.echo("\n".join(render.job_block(job, traceback=traceback, full=full)))
    if found.limited:
        _note(f"showing the first {limit}: raise --limit to see more")
    _notes(found)


@app.command()
def redrive(
    queue: QueueArg,
    *,
    to: Annotated[
        str | None,
        typer.Option("--to", metavar="QUEUE", help="Send to this queue instead of the source."),
    ] = None,
    types: Types = None,
    error: ErrorText = None,
    since: Since = None,
    ids: Annotated[
        list[str] | None,
        typer.Option(
            "--ids", metavar="ID[,ID…]", help="Only these job ids or message ids; repeatable."
        ),
    ] = None,
    limit: Limit = None,
    rate: Annotated[
        str | None,
        typer.Option(
            "--rate", metavar="N/s", help="At most this many jobs per second (5, 5/s, 300/m)."
        ),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="List what would move; move nothing.")
    ] = False,
    yes: Yes = False,
    native: Annotated[
        bool,
        typer.Option(
            "--native",
            help="Use SQS StartMessageMoveTask (AWS only; every message, no filters, no"
            " redrive record in the envelope).",
        ),
    ] = False,
    visibility_timeout: Hold = "30s",
) -> None:
    """Move jobs from QUEUE's DLQ back to QUEUE (or --to), with a fresh attempt budget.

    Each job is sent before it is deleted: a crash can duplicate a job, never lose one.

    The envelope records the redrive count and time; the job id stays the same.

    Asks for confirmation unless --yes is given or --ids names the jobs.
    """
    topology = common.load()
    job_filter = _filter(types, error, since, ids)
    hold_s = _hold_s(visibility_timeout)
    rate_per_s = None
    if rate is not None:
        try:
            rate_per_s = dlq_ops.parse_rate(rate)
        except ValueError as exc:
            common.fail(str(exc), common.EXIT_USAGE)
    with _errors():
        sqs, dlq, url = _open(topology, queue)
        target = (
            dlq_ops.resolve_target(topology, to) if to else dlq_ops.source_target(topology, dlq)
        )
        destination = dlq_ops.target_url(topology, target)
        if native:
            native_to = destination if to else None
            _native(
                sqs,
                dlq,
                url,
                native_to,
                job_filter=job_filter,
                limit=limit,
                dry_run=dry_run,
                yes=yes,
                rate_per_s=rate_per_s,
            )
            return
        found = dlq_ops.peek(sqs, url, job_filter, limit=limit, hold_s=hold_s)
    _notes(found)
    not_found = _not_found(job_filter, found, dlq)
    if not found.jobs:
        typer.echo(_nothing("redrive", dlq, found, job_filter))
        if not_found:
            raise typer.Exit(common.EXIT_FAILED)
        return
    unknown = without_handler(topology, target.queue, found.jobs)
    if unknown:
        _note(
            f"warning: queue '{target.queue}' has no handler for {printable(', '.join(unknown))}:"
            " those jobs will be dead-lettered again"
        )
    if dry_run:
        for job in found.jobs:
            typer.echo(render.job_line(job))
        typer.echo(
            f"dry run: {len(found.jobs)} jobs would move from {dlq.name} to {target.name};"
            " nothing was moved"
        )
        return
    by_type = render.count_by_type(found.jobs)
    _note(f"redrive {len(found.jobs)} jobs from {dlq.name} to {target.name} ({by_type})")
    if not job_filter.ids:
        common.confirm(f"Move these {len(found.jobs)} jobs to {target.name}?", yes=yes)
    with _Progress(len(found.jobs)) as progress:
        result = dlq_ops.redrive(
            sqs,
            url,
            target,
            destination,
            found.jobs,
            rate_per_s=rate_per_s,
            hold_s=hold_s,
            on_progress=progress,
        )
    _redrive_summary(result, dlq, target.name, partial=bool(not_found), rate_limit_per_s=rate_per_s)


def _not_found(job_filter: JobFilter, found: Peek, dlq: DeadLetterQueue) -> list[str]:
    """The ids ``--ids`` named that the scan did not find (reported; the exit code is 1)."""
    if found.limited:
        return []  # the scan stopped early: the others may well be there
    missing = [i for i in sorted(job_filter.ids) if not any(j.has_id(i) for j in found.jobs)]
    if missing:
        _note(f"not found in {dlq.name}: {printable(', '.join(missing))}")
    return missing


def _duration_and_rate(result: RedriveResult, rate_limit_per_s: float | None) -> str:
    """``12.0 s (5.0/s, limit 5/s)``; a run shorter than a second has no rate worth
    printing (4 jobs in one batch would read as hundreds per second)."""
    limit = f"limit {rate_limit_per_s:g}/s" if rate_limit_per_s is not None else ""
    if result.elapsed_s < MIN_RATE_WINDOW_S:
        return f"{result.elapsed_s:.2f} s" + (f" ({limit})" if limit else "")
    rate = f"{result.rate_per_s:.1f}/s"
    return f"{result.elapsed_s:.1f} s ({rate}{', ' + limit if limit else ''})"


def _redrive_summary(
    result: RedriveResult,
    dlq: DeadLetterQueue,
    target: str,
    *,
    partial: bool,
    rate_limit_per_s: float | None = None,
) -> None:
    typer.echo(
        f"moved {result.moved} of {result.selected} jobs from {dlq.name} to {target}"
        f" in {_duration_and_rate(result, rate_limit_per_s)}"
    )
    for line in render.redrive_notes(result, dlq.name):
        _note(line)
    if result.interrupted:
        common.fail(
            f"interrupted: {result.not_moved} jobs were not moved and are still in {dlq.name}"
        )
    if result.aborted:
        common.fail(f"{result.aborted}; {result.not_moved} jobs are still in {dlq.name}")
    if partial or not result.complete:
        raise typer.Exit(common.EXIT_FAILED)


def _native(
    sqs: SQSClient,
    dlq: DeadLetterQueue,
    url: str,
    destination: str | None,
    *,
    job_filter: JobFilter,
    limit: int | None,
    dry_run: bool,
    yes: bool,
    rate_per_s: float | None,
) -> None:
    if not job_filter.is_empty or limit is not None or dry_run:
        raise DlqError(
            "--native moves every message: it takes no --type, --error, --since, --ids,"
            " --limit or --dry-run",
            usage=True,
        )
    depth = queue_depth(sqs, url)
    if depth.total == 0:
        typer.echo(f"nothing to redrive: {dlq.name} is empty")
        return
    where = destination.rsplit("/", 1)[-1] if destination else "their source queues"
    _note(f"StartMessageMoveTask: move all ~{depth.total} messages of {dlq.name} to {where}")
    common.confirm(f"Move all ~{depth.total} messages to {where}?", yes=yes)
    move = dlq_ops.start_native_move(sqs, url, destination, rate_per_s=rate_per_s)
    typer.echo(
        f"started message move task {move.task_handle} (SQS moves the messages in the background)"
    )


@app.command()
def export(
    queue: QueueArg,
    file: Annotated[
        str,
        typer.Argument(
            metavar="FILE.jsonl", help="Where to write (- for stdout).", show_default=False
        ),
    ],
    *,
    types: Types = None,
    error: ErrorText = None,
    since: Since = None,
    limit: Limit = None,
    visibility_timeout: Hold = "30s",
) -> None:
    """Write QUEUE's DLQ jobs to FILE as JSON Lines; the DLQ is left as it was.

    One line per job: ids, type, reason, original body, failure record, attributes.

    FILE is written whole or not at all; - writes to stdout.
    """
    topology = common.load()
    job_filter = _filter(types, error, since)
    hold_s = _hold_s(visibility_timeout)
    with _errors():
        sqs, dlq, url = _open(topology, queue)
        # Opened before the DLQ is read, so an unwritable path fails first.
        with dlq_ops.ExportFile(Path(file)) if file != "-" else nullcontext() as out:
            found = dlq_ops.peek(sqs, url, job_filter, limit=limit, hold_s=hold_s)
            for job in found.jobs:
                if out is None:
                    typer.echo(dlq_ops.export_line(job))
                else:
                    out.write(job)
            if out is not None:
                out.commit()
    _notes(found)
    if not found.jobs:
        _note(_nothing("export", dlq, found, job_filter))
        return
    _note(f"exported {len(found.jobs)} jobs from {dlq.name} to {file if out else 'stdout'}")


@app.command()
def delete(
    queue: QueueArg,
    ids: Annotated[
        list[str],
        typer.Argument(metavar="ID...", help="Job ids or message ids.", show_default=False),
    ],
    yes: Yes = False,
    visibility_timeout: Hold = "30s",
) -> None:
    """Delete the jobs with these ids from QUEUE's DLQ (after printing them and asking)."""
    topology = common.load()
    wanted = _split_ids(ids)
    job_filter = JobFilter(ids=frozenset(wanted))
    hold_s = _hold_s(visibility_timeout)
    with _errors():
        sqs, dlq, url = _open(topology, queue)
        found = dlq_ops.peek(sqs, url, job_filter, hold_s=hold_s)
    _notes(found)
    if not found.jobs:
        common.fail(
            f"nothing to delete: no message in {dlq.name} has id {printable(', '.join(wanted))}"
        )
    typer.echo(f"will delete {len(found.jobs)} messages from {dlq.name}:")
    for job in found.jobs:
        typer.echo(f"  {render.job_line(job)}")
    unknown = _not_found(job_filter, found, dlq)
    common.confirm(f"Delete these {len(found.jobs)} messages? This cannot be undone.", yes=yes)
    with _errors():
        result = dlq_ops.delete_jobs(sqs, url, found.jobs, hold_s=hold_s)
    typer.echo(f"deleted {result.deleted} messages from {dlq.name}")
    _delete_outcome(result, dlq, partial=bool(unknown))


def _delete_outcome(result: dlq_ops.DeleteResult, dlq: DeadLetterQueue, *, partial: bool) -> None:
    for line in render.delete_notes(result):
        _note(line)
    if result.interrupted:
        common.fail(f"interrupted after deleting {result.deleted} messages from {dlq.name}")
    if result.aborted:
        common.fail(result.aborted)
    if partial or result.missing or result.failed:
        raise typer.Exit(common.EXIT_FAILED)


@app.command()
def purge(
    queue: QueueArg,
    yes: Yes = False,
    visibility_timeout: Hold = "30s",
) -> None:
    """Delete every message of QUEUE's DLQ (after printing the count and asking).

    Deletes in batches rather than with PurgeQueue (once a minute, no count).

    Messages in flight with another reader are not deleted.
    """
    topology = common.load()
    hold_s = _hold_s(visibility_timeout)
    with _errors():
        sqs, dlq, url = _open(topology, queue)
        depth = queue_depth(sqs, url)
    if depth.total == 0:
        typer.echo(f"nothing to purge: {dlq.name} is empty")
        return
    typer.echo(
        f"{dlq.name} holds ~{depth.total} messages ({depth.visible} visible,"
        f" {depth.in_flight} in flight)"
    )
    common.confirm(
        f"Delete all ~{depth.total} messages of {dlq.name}? This cannot be undone.", yes=yes
    )
    with _errors():
        result = dlq_ops.purge(sqs, url, hold_s=hold_s)
        left = queue_depth(sqs, url)
    typer.echo(f"deleted {result.deleted} messages from {dlq.name}")
    if left.total:
        _note(f"~{left.total} messages remain ({left.in_flight} in flight, or newly arrived)")
    _delete_outcome(result, dlq, partial=False)
