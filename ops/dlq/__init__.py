"""Dead-letter queue operations: list, show, redrive, export, delete, purge.

Every read is a non-consuming peek (:mod:`ops.dlq.peek`); every change acts
on exactly the messages a previous peek selected, so what a user saw and
confirmed is what is moved or deleted; a redrive sends before it deletes
(:mod:`ops.dlq.redrive`). The CLI (``conveyor dlq``) only parses options
and prints.
"""

from ops.dlq.delete import DeleteResult, delete_jobs, purge
from ops.dlq.export import ExportFile, export_line
from ops.dlq.filters import JobFilter, parse_rate, parse_since
from ops.dlq.jobs import NATIVE_REDRIVE_REASON, DeadJob
from ops.dlq.native import NativeMove, start_native_move
from ops.dlq.peek import DEFAULT_HOLD_S, Peek, Scan, peek
from ops.dlq.queues import (
    DeadLetterQueue,
    DlqError,
    TargetQueue,
    dlq_url,
    resolve_dlq,
    resolve_target,
    source_target,
    target_url,
)
from ops.dlq.redrive import Pacer, RedriveResult, redrive, stamp_redrive
from ops.dlq.summary import DlqSummary, summarize

__all__ = [
    "DEFAULT_HOLD_S",
    "NATIVE_REDRIVE_REASON",
    "DeadJob",
    "DeadLetterQueue",
    "DeleteResult",
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
    "redrive",
    "resolve_dlq",
    "resolve_target",
    "source_target",
    "stamp_redrive",
    "start_native_move",
    "summarize",
    "target_url",
]
