"""Dead-letter queue operations: list, show, redrive, export, delete, purge.

Every read is a non-consuming peek (:mod:`workers.dlq.peek`); every change acts
on exactly the messages a previous peek selected, so what a user saw and
confirmed is what is moved or deleted; a redrive sends before it deletes
(:mod:`workers.dlq.redrive`). The CLI (``conveyor dlq``) only parses options
and prints.
"""

from workers.dlq.delete import DeleteResult, delete_jobs, purge
from workers.dlq.export import ExportFile, export_line
from workers.dlq.filters import JobFilter, parse_rate, parse_since
from workers.dlq.jobs import NATIVE_REDRIVE_REASON, REDRIVE_COUNT, REDRIVEN_AT, DeadJob
from workers.dlq.native import NativeMove, start_native_move
from workers.dlq.peek import DEFAULT_HOLD_S, Peek, Scan, peek
from workers.dlq.queues import (
    DeadLetterQueue,
    Depth,
    DlqError,
    TargetQueue,
    dlq_url,
    queue_depth,
    resolve_dlq,
    resolve_target,
    source_target,
    target_url,
)
from workers.dlq.redrive import Pacer, RedriveResult, redrive, stamp_redrive
from workers.dlq.summary import DlqSummary, summarize

__all__ = [
    "DEFAULT_HOLD_S",
    "NATIVE_REDRIVE_REASON",
    "REDRIVEN_AT",
    "REDRIVE_COUNT",
    "DeadJob",
    "DeadLetterQueue",
    "DeleteResult",
    "Depth",
    "DlqError",
    "DlqSummary",
    "ExportFile",
    "JobFilter",
    "NativeMove",
    "Pacer",
    "Peek",
    "RedriveResult",
    "Scan",
    "TargetQueue",
    "delete_jobs",
    "dlq_url",
    "export_line",
    "parse_rate",
    "parse_since",
    "peek",
    "purge",
    "queue_depth",
    "redrive",
    "resolve_dlq",
    "resolve_target",
    "source_target",
    "stamp_redrive",
    "start_native_move",
    "summarize",
    "target_url",
]
