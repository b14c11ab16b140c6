"""Batched message deletes and visibility changes: up to 10 entries per SQS call.

Celery's SQS transport deletes each message with its own DeleteMessage call. The
consumer instead buffers receipt handles per queue and sends them with
DeleteMessageBatch / ChangeMessageVisibilityBatch when 10 are waiting, when the
oldest has waited ``max_delay_s``, and when the consumer stops. A crash before a
flush means the message is delivered again (at least once), never lost.

A consumer calls :meth:`SqsBatcher.start_sender` so the calls go from a thread of
their own: a DeleteMessageBatch takes a round trip, and made from kombu's event
loop it stalled receiving and dispatching jobs for that long every 10 jobs.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import structlog
from botocore.exceptions import BotoCoreError, ClientError

log = structlog.stdlib.get_logger("conveyor.worker")

#: SQS's batch limit.
BATCH_SIZE = 10
#: Entries that failed this often are given up (logged); SQS redelivers the message.
MAX_TRIES = 3
#: Failure codes that retrying cannot fix: the handle expired or was already used.
_FINAL_CODES = frozenset({"ReceiptHandleIsInvalid", "InvalidParameterValue", "MessageNotInflight"})

Kind = Literal["delete", "visibility"]


@dataclass
class _Entry:
    receipt_handle: str
    timeout_s: int = 0
    tries: int = 0


@dataclass
class _Buffer:
    entries: list[_Entry]
    oldest_at: float


class SqsBatcher:
    """Buffers deletes and visibility changes per queue URL; thread-safe."""

    def __init__(self, client_for: Callable[[str], Any], *, max_delay_s: float = 1.0) -> None:
        self._client_for = client_for
        self.max_delay_s = max_delay_s
        self._lock = threading.Lock()
        self._buffers: dict[tuple[Kind, str], _Buffer] = {}
        self._sender: threading.Thread | None = None
        self._wake = threading.Event()
        self._stopping = threading.Event()

    def start_sender(self) -> None:
        """Send from a background thread from now on: full batches at once, others when due."""
        if self._sender is not None:
            return
        self._stopping.clear()
        self._sender = threading.Thread(target=self._send_loop, name="sqs-batcher", daemon=True)
        self._sender.start()

    def stop_sender(self, timeout_s: float = 10.0) -> None:
        """Stop the sending thread (a call in progress completes); `flush` sends the rest."""
        sender, self._sender = self._sender, None
        if sender is None:
            return
        self._stopping.set()
        self._wake.set()
        sender.join(timeout_s)

    def _send_loop(self) -> None:
        while not self._stopping.is_set():
            # Woken by a full batch; otherwise look for due buffers twice per max delay.
            self._wake.wait(self.max_delay_s / 2)
            self._wake.clear()
            try:
                for key in self._full_keys():
                    self._flush_key(key, only_full=True)
                self.flush_due()
            except Exception:  # the sender must outlive any one failure
                log.exception("sqs.batch_sender_failed")

    def _full_keys(self) -> list[tuple[Kind, str]]:
        with self._lock:
            return [k for k, b in self._buffers.items() if len(b.entries) >= BATCH_SIZE]

    def delete(self, queue_url: str, receipt_handle: str) -> None:
        """Delete the message later (within ``max_delay_s``, or at once in a full batch)."""
        self._add("delete", queue_url, _Entry(receipt_handle))

    def change_visibility(self, queue_url: str, receipt_handle: str, timeout_s: int) -> None:
        """Set the message's visibility timeout later, batched like deletes."""
        self._add("visibility", queue_url, _Entry(receipt_handle, timeout_s))

    def pending(self) -> int:
        """Entries waiting to be sent."""
        with self._lock:
            return sum(len(b.entries) for b in self._buffers.values())

    def _add(self, kind: Kind, queue_url: str, entry: _Entry) -> None:
        with self._lock:
            buffer = self._buffers.setdefault((kind, queue_url), _Buffer([], time.monotonic()))
            buffer.entries.append(entry)
            full = len(buffer.entries) >= BATCH_SIZE
        if full:
            if self._sender is not None:
                self._wake.set()
            else:
                self._flush_key((kind, queue_url), only_full=True)

    def flush_due(self) -> None:
        """Send every buffer whose oldest entry has waited ``max_delay_s`` (timer callback)."""
        now = time.monotonic()
        with self._lock:
            due = [k for k, b in self._buffers.items() if now - b.oldest_at >= self.max_delay_s]
        for key in due:
            self._flush_key(key)

    def flush(self) -> None:
        """Send everything now (shutdown); entries that keep failing are logged and dropped."""
        for _ in range(MAX_TRIES + 1):
            with self._lock:
                keys = list(self._buffers)
            if not keys:
                return
            for key in keys:
                self._flush_key(key)

    def _take(self, key: tuple[Kind, str], only_full: bool) -> list[_Entry]:
        with self._lock:
            buffer = self._buffers.get(key)
            if buffer is None or (only_full and len(buffer.entries) < BATCH_SIZE):
                return []
            taken, rest = buffer.entries[:BATCH_SIZE], buffer.entries[BATCH_SIZE:]
            if rest:
                buffer.entries = rest
            else:
                del self._buffers[key]
            return taken

    def _flush_key(self, key: tuple[Kind, str], *, only_full: bool = False) -> None:
        # One pass over what is buffered now: entries that fail go back into the
        # buffer and wait for the next flush, which spaces out the retries.
        with self._lock:
            buffer = self._buffers.get(key)
            passes = -(-len(buffer.entries) // BATCH_SIZE) if buffer else 0
        for _ in range(passes):
            batch = self._take(key, only_full)
            if not batch:
                return
            self._send(key, batch)

    def _send(self, key: tuple[Kind, str], batch: list[_Entry]) -> None:
        kind, queue_url = key
        ids = {str(i): entry for i, entry in enumerate(batch)}
        client = self._client_for(queue_url)
        try:
            if kind == "delete":
                response = client.delete_message_batch(
                    QueueUrl=queue_url,
                    Entries=[{"Id": i, "ReceiptHandle": e.receipt_handle} for i, e in ids.items()],
                )
            else:
                response = client.change_message_visibility_batch(
                    QueueUrl=queue_url,
                    Entries=[
                        {
                            "Id": i,
                            "ReceiptHandle": e.receipt_handle,
                            "VisibilityTimeout": e.timeout_s,
                        }
                        for i, e in ids.items()
                    ],
                )
        except (ClientError, BotoCoreError) as exc:
            log.warning("sqs.batch_failed", action=kind, queue_url=queue_url, error=str(exc))
            self._retry(key, batch)
            return
        failed = response.get("Failed") or []
        retry = []
        for failure in failed:
            entry = ids[failure["Id"]]
            code = failure.get("Code", "")
            if code in _FINAL_CODES:
                # The message is visible again or already gone: nothing to do, nothing lost.
                log.warning("sqs.batch_entry_dropped", action=kind, code=code)
            else:
                retry.append(entry)
        if retry:
            log.warning("sqs.batch_entries_failed", action=kind, count=len(retry))
            self._retry(key, retry)

    def _retry(self, key: tuple[Kind, str], entries: list[_Entry]) -> None:
        again = []
        for entry in entries:
            entry.tries += 1
            if entry.tries < MAX_TRIES:
                again.append(entry)
            else:
                log.error("sqs.batch_entry_given_up", action=key[0], tries=entry.tries)
        if again:
            with self._lock:
                buffer = self._buffers.setdefault(key, _Buffer([], time.monotonic()))
                buffer.entries.extend(again)
