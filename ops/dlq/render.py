"""Plain text for people: job blocks, one-line previews, the list table, notes on results.

The CLI prints these; keeping them here leaves it with parsing options only, and
makes the wording testable without a terminal. Everything that came from a
message goes through :func:`ops.text.printable`: a DLQ holds whatever was sent,
terminal escape sequences included.
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime
from typing import Any

from ops.dlq.delete import DeleteResult
from ops.dlq.jobs import DeadJob
from ops.dlq.peek import Peek
from ops.dlq.queues import DeadLetterQueue
from ops.dlq.redrive import RedriveResult
from ops.dlq.summary import DlqSummary
from ops.text import printable, printable_json


def show_document(
    dlq: DeadLetterQueue, found: Peek, *, traceback: bool = False, full: bool = False
) -> dict[str, Any]:
    """What ``dlq show --json`` prints (and the console's JSON twin of a DLQ page)."""
    return {
        "queue": dlq.queue,
        "dlq": dlq.name,
        "source": dlq.source_name,
        "depth": found.depth,
        "scanned": found.scanned,
        "limited": found.limited,
        "jobs": [j.to_json(traceback=traceback, full=full) for j in found.jobs],
    }


def age(seconds: float) -> str:
    """``45s``, ``12m``, ``3h 05m``, ``2d 04h``."""
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m"
    if s < 86400:
        return f"{s // 3600}h {s % 3600 // 60:02d}m"
    return f"{s // 86400}d {s % 86400 // 3600:02d}h"


def when(value: datetime | None, now: datetime | None = None) -> str:
    """``2026-11-23 10:00:05Z (3m ago)``, or ``unknown``."""
    if value is None:
        return "unknown"
    ago = age(max(0.0, ((now or datetime.now(UTC)) - value).total_seconds()))
    return f"{value.astimezone(UTC):%Y-%m-%d %H:%M:%S}Z ({ago} ago)"


def job_line(job: DeadJob) -> str:
    """One line per job (previews of redrive and delete): id, type, reason, error."""
    if job.undecodable is not None:
        line = f"{job.message_id}  ?  {job.reason}  {job.payload_summary()}"
    else:
        line = f"{job.job_id or job.message_id}  {job.job_type or '?'}  {job.reason}  {job.error}"
    return printable(line)


def job_block(job: DeadJob, *, traceback: bool = False, full: bool = False) -> list[str]:
    """The lines ``dlq show`` prints for one job (control characters escaped)."""
    f = job.failure
    attempts = f"attempts {f.attempts}/{f.max_attempts}" if f else f"received {job.receive_count}x"
    lines = [
        f"{job.job_id or '(no job id)'}  {job.job_type or '(unknown type)'}  {attempts}",
        f"  reason    {job.reason}",
    ]
    if f is not None:
        lines.append(f"  error     {f.error_type}: {f.error_message}")
        lines.append(
            f"  failed    {when(job.failed_at)}, first attempt {when(job.first_attempt_at)}"
        )
        lines.append(f"  worker    {f.worker} on {f.queue}")
    else:
        lines.append(f"  arrived   {when(job.sent_at)}")
    if job.redrive_count:
        lines.append(f"  redriven  {job.redrive_count}x, last {job.redriven_at}")
    lines.append(f"  message   {job.message_id}")
    lines = [printable(line) for line in lines]
    if job.undecodable is not None or not full:
        lines.append(printable(f"  payload   {job.payload_summary()}"))
    if full:
        doc = job.document if job.envelope is not None else None
        text = (
            printable_json(json.dumps(doc, indent=2, ensure_ascii=False))
            if doc is not None
            else printable(job.body, multiline=True)
        )
        lines.append("  envelope" if doc is not None else "  body")
        lines += [f"    {line}" for line in text.splitlines()]
    if traceback:
        lines.append("  traceback")
        excerpt = printable(job.traceback_excerpt(), multiline=True) or "(none recorded)"
        lines += [f"    {line}" for line in excerpt.splitlines()]
    return lines


def count_by_type(jobs: list[DeadJob]) -> str:
    """``image.resize: 3, order.placed: 1``."""
    counts = Counter(job.job_type or "?" for job in jobs)
    return printable(", ".join(f"{t}: {n}" for t, n in sorted(counts.items())))


def list_table(rows: list[DlqSummary]) -> list[str]:
    """The ``dlq list`` table, columns aligned."""
    table = [("QUEUE", "DLQ", "DEPTH", "IN FLIGHT", "OLDEST")]
    for r in rows:
        if r.depth is None:
            table.append((r.dlq.queue, r.dlq.name, "missing", "-", "-"))
            continue
        oldest = "-" if r.depth.total == 0 else "unknown"
        if r.oldest_age_s is not None:
            oldest = ("" if r.oldest_exact else ">= ") + age(r.oldest_age_s)
        table.append((r.dlq.queue, r.dlq.name, str(r.depth.total), str(r.depth.in_flight), oldest))
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    return [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in table
    ]


def peek_notes(found: Peek) -> list[str]:
    """What a reader should know about a scan: it saw less than there is, or could not release."""
    notes: list[str] = []
    if found.partial:
        notes.append(
            f"note: saw {found.scanned} of ~{found.depth} messages (the others are in flight"
            " with another reader, or wait behind a held FIFO message group)"
        )
    notes += [
        f"warning: {printable(problem)} (the messages become visible again on their own)"
        for problem in found.problems
    ]
    return notes


def redrive_notes(result: RedriveResult, dlq_name: str) -> list[str]:
    """Everything about a redrive that was not a clean move, one line each."""
    notes: list[str] = []
    if result.failed:
        notes.append(f"{result.failed} jobs could not be sent and are still in {dlq_name}")
    if result.duplicated:
        notes.append(
            f"{result.duplicated} jobs were sent but not deleted from {dlq_name}:"
            " they may be in both queues (same job id)"
        )
    if result.missing:
        notes.append(
            f"{result.missing} selected jobs were not found again (moved or deleted by"
            " someone else, or held by another reader)"
        )
    return notes + [f"error: {printable(text)}" for text in result.errors[:5]]


def delete_notes(result: DeleteResult) -> list[str]:
    """Everything about a delete or purge that did not go as planned, one line each."""
    notes: list[str] = []
    if result.missing:
        notes.append(f"{result.missing} messages were not found again (deleted by someone else?)")
    if result.failed:
        notes.append(f"{result.failed} messages could not be deleted")
    return notes + [f"error: {printable(text)}" for text in result.errors[:5]]
