"""Redrives started from the console, run in the background so a page can poll them.

A redrive of many jobs takes longer than a request should (it sends and deletes in
batches of 10, at a rate if one is set); the confirming POST starts a task and
redirects to its page, whose progress fragment htmx polls until the task is done.
Tasks live in this process's memory (the last :data:`KEEP` of them): a restarted
console forgets them, not the jobs, which :func:`ops.dlq.redrive` never loses.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from ops.console.bounded import describe
from ops.dlq import RedriveResult

#: Finished tasks kept for their pages.
KEEP = 50


@dataclass
class RedriveTask:
    """One redrive: what was selected, and how far it got."""

    id: str
    queue: str
    dlq: str
    target: str
    by: str
    selected: int
    started_at: float = field(default_factory=time.time)
    result: RedriveResult | None = None
    done: bool = False
    #: Why the task could not run at all (the DLQ or target could not be read).
    error: str | None = None

    @property
    def moved(self) -> int:
        """Jobs moved so far."""
        return self.result.moved if self.result else 0

    def to_json(self) -> dict[str, object]:
        """The task as its JSON twin shows it."""
        result = self.result
        return {
            "id": self.id,
            "queue": self.queue,
            "dlq": self.dlq,
            "target": self.target,
            "by": self.by,
            "selected": self.selected,
            "moved": self.moved,
            "failed": result.failed if result else 0,
            "duplicated": result.duplicated if result else 0,
            "missing": result.missing if result else 0,
            "errors": list(result.errors) if result else [],
            "aborted": result.aborted if result else None,
            "done": self.done,
            "error": self.error,
        }


class Tasks:
    """The redrive tasks of this process."""

    def __init__(self) -> None:
        self._tasks: OrderedDict[str, RedriveTask] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, task_id: str) -> RedriveTask | None:
        """The task ``task_id``, if this process still knows it."""
        with self._lock:
            return self._tasks.get(task_id)

    def start(
        self,
        task: RedriveTask,
        run: Callable[[Callable[[RedriveResult], None]], RedriveResult],
        on_done: Callable[[RedriveTask], None] = lambda task: None,
    ) -> RedriveTask:
        """Run ``run(on_progress)`` in a thread, recording its progress on ``task``."""

        def progress(result: RedriveResult) -> None:
            task.result = result

        def body() -> None:
            try:
                task.result = run(progress)
            except Exception as exc:  # noqa: BLE001 - the page shows it, the thread ends
                task.error = describe(exc)
            finally:
                task.done = True
                on_done(task)

        with self._lock:
            self._tasks[task.id] = task
            while len(self._tasks) > KEEP:
                self._tasks.popitem(last=False)
        threading.Thread(target=body, name=f"redrive-{task.id}", daemon=True).start()
        return task


def new_task_id() -> str:
    """A task id that cannot be guessed (its page shows job ids)."""
    return secrets.token_urlsafe(9)
