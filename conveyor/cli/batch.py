"""``conveyor enqueue --batch FILE.jsonl``: read jobs line by line, send them in batches.

Each line is ``{"type": "...", "data": {...}, "idempotency_key": "..."}`` (``data``
defaults to ``{}``; blank lines and lines starting with ``#`` are skipped). A line
that is not such an object is reported with its number and not sent; the others
go through ``POST /v1/jobs``. stdout gets ``<line>\\t<job id>`` per accepted job,
stderr a progress bar, every refused line (``line 7: 422: data.width_px: …``)
and a summary.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from conveyor.cli import common
from producers.client import Client, EnqueueError


@dataclass(frozen=True)
class _Line:
    number: int
    job: dict[str, Any]


def describe(exc: EnqueueError) -> str:
    """``enqueue failed: 503: <reason> (retry after 5s)``."""
    if exc.status_code is None:
        return f"enqueue failed: {exc.detail}"
    retry = f" (retry after {exc.retry_after_s:g}s)" if exc.retry_after_s is not None else ""
    return f"enqueue failed: {exc.status_code}: {exc.detail}{retry}"


def parse_line(text: str) -> dict[str, Any] | str:
    """The job of one line, or why it is not one."""
    try:
        doc = json.loads(text)
    except ValueError as exc:
        return f"not valid JSON: {exc}"
    if not isinstance(doc, dict):
        return "not a JSON object"
    known = {"type", "data", "idempotency_key", "message_group_id", "delay_s", "not_before"}
    unknown = sorted(set(doc) - known)
    if unknown:
        return f"unknown field(s): {', '.join(unknown)}"
    if not isinstance(doc.get("type"), str) or not doc["type"]:
        return 'no "type" (the job type, a string)'
    if not isinstance(doc.get("data", {}), dict):
        return '"data" must be a JSON object'
    return {"data": {}, **doc}


def _read(path: Path) -> list[str]:
    if str(path) == "-":
        return sys.stdin.read().splitlines()
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        common.fail(f"cannot read {path}: {exc}", common.EXIT_USAGE)


def enqueue_file(
    client: Client, path: Path, *, batch_size: int, delay: dict[str, Any] | None = None
) -> int:
    """Send every job of ``path``; report per line; return how many were not accepted.

    ``delay`` (``enqueue_many``'s ``delay_s`` or ``not_before``) delays every line that
    sets neither itself."""
    lines: list[_Line] = []
    errors: dict[int, str] = {}
    for number, text in enumerate(_read(path), start=1):
        if not text.strip() or text.lstrip().startswith("#"):
            continue
        parsed = parse_line(text)
        if isinstance(parsed, str):
            errors[number] = parsed
        else:
            lines.append(_Line(number, parsed))
    total = len(lines) + len(errors)
    accepted = 0
    err = Console(stderr=True)
    progress = Progress(
        TextColumn("enqueueing"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=True,
    )
    with progress:
        task = progress.add_task("jobs", total=len(lines))
        for start in range(0, len(lines), batch_size):
            chunk = lines[start : start + batch_size]
            try:
                results = client.enqueue_many([line.job for line in chunk], **(delay or {}))
            except EnqueueError as exc:
                for line in chunk:
                    errors[line.number] = describe(exc).removeprefix("enqueue failed: ")
                progress.advance(task, len(chunk))
                continue
            for line, result in zip(chunk, results, strict=True):
                if result.accepted:
                    accepted += 1
                    typer.echo(f"{line.number}\t{result.id}")
                else:
                    errors[line.number] = f"{result.status}: {result.error or 'not accepted'}"
            progress.advance(task, len(chunk))
    for number in sorted(errors):
        typer.echo(f"line {number}: {errors[number]}", err=True)
    typer.echo(f"{accepted} of {total} jobs accepted, {len(errors)} not", err=True)
    return len(errors)
