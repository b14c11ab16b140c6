"""Tables for people: ``workers ls`` and ``status`` (the CLI prints them; testable wording).

Every value shown is plain text (no rich markup) with control characters escaped:
node ids, hosts and notes come from state files and orchestrator APIs.
"""

from __future__ import annotations

from rich.console import Group
from rich.table import Table
from rich.text import Text

from ops.dlq.render import age
from ops.scaling.model import PoolState
from ops.scaling.status import SystemStatus
from ops.text import printable


def _text(value: object, style: str = "") -> Text:
    """``value`` as a cell: escaped, and never read as rich markup (``[bold]`` stays text)."""
    return Text(printable(value), style=style)


def uptime(seconds: float | None) -> str:
    """``45s``, ``12m``, ``3h 05m`` or ``-``."""
    return age(seconds) if seconds is not None else "-"


def pools_table(states: list[PoolState], backend: str, now: float) -> Group:
    """One small table per pool (titled with desired/running), a row per node."""
    tables = []
    for state in states:
        restarts = f", {state.restarts} restarted" if state.restarts else ""
        table = Table(
            title=_text(
                f"{state.pool} ({backend}): {state.desired} desired,"
                f" {state.running} running{restarts}"
            ),
            title_justify="left",
        )
        for column in ("node", "state", "pid", "host", "uptime"):
            table.add_column(column, no_wrap=True)
        table.add_column("jobs ok/failed", justify="right", no_wrap=True)
        for node in state.nodes:
            jobs = (
                f"{node.jobs_succeeded}/{node.jobs_failed}"
                if node.jobs_succeeded is not None
                else "-"
            )
            table.add_row(
                _text(node.id),
                _text(node.state),
                str(node.pid or "-"),
                _text(node.host or "-"),
                uptime(node.uptime_s(now)),
                jobs,
            )
        tables.append(table)
    return Group(*tables)


def _count(value: int | None) -> str:
    return "-" if value is None else str(value)


def status_view(status: SystemStatus) -> Group:
    """The queues table, the pools table and any notes, as one renderable."""
    queues = Table(title="queues", title_justify="left")
    for column in (
        "queue",
        "pool",
        "visible",
        "in flight",
        "delayed",
        "oldest",
        "DLQ",
        "DLQ oldest",
    ):
        queues.add_column(column, justify="left" if column in ("queue", "pool") else "right")
    for row in status.queues:
        if not row.exists:
            queues.add_row(_text(row.queue), _text(row.pool or "-"), "missing")
            continue
        depth = row.depth
        dlq_oldest = "-"
        if row.dlq_oldest_age_s is not None:
            dlq_oldest = ("≥ " if not row.dlq_oldest_exact else "") + age(row.dlq_oldest_age_s)
        queues.add_row(
            _text(row.queue),
            _text(row.pool or "-"),
            _count(depth.visible if depth else None),
            _count(depth.in_flight if depth else None),
            _count(depth.delayed if depth else None),
            age(row.oldest_age_s) if row.oldest_age_s is not None else "unknown",
            _count(row.dlq_depth),
            dlq_oldest,
        )
    pools = Table(title=_text(f"pools ({status.backend})"), title_justify="left")
    for column in ("pool", "desired", "running", "restarts"):
        pools.add_column(column)
    for state in status.pools:
        restarts = "-" if state.restarts is None else str(state.restarts)
        pools.add_row(_text(state.pool), str(state.desired), str(state.running), restarts)
    parts: list[Table | Text] = [queues, pools]
    if any(not r.exists for r in status.queues):
        parts.append(Text("missing queues: create them with conveyor infra apply"))
    for note in dict.fromkeys(s.note for s in status.pools if s.note):
        parts.append(_text(f"pools: {note}"))
    if status.pools_error:
        parts.append(_text(f"pools: {status.pools_error}"))
    if any(r.exists and r.oldest_age_s is None for r in status.queues):
        parts.append(
            Text(
                "oldest: unknown where CloudWatch has no ApproximateAgeOfOldestMessage"
                " (the emulator has none; AWS publishes it each minute)",
                style="dim",
            )
        )
    return Group(*parts)
