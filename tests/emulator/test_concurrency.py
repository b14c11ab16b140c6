"""serialise_queue_mutations: no message lost or delivered twice under concurrent traffic."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from moto.sqs.models import Message, SQSBackend

from infra.emulator import EmulatorProcess, fixes
from tests.emulator.traffic import run_concurrent_traffic

# Sized for well under 30 s on 2 cores with the fixes (about 10 s here). The
# backlog matters: moto's races have windows that grow with the queue's depth.
MESSAGES = 5_000
BACKLOG = 2_000
DEADLINE_S = 60.0  # only reached when something is wrong (e.g. moto unfixed: far slower)


@pytest.mark.integration
@pytest.mark.timeout(180)
def test_no_message_is_lost_or_delivered_twice(emulator: EmulatorProcess) -> None:
    """4 producers send while 4 consumers receive and delete, over HTTP to a real server."""
    result = run_concurrent_traffic(
        emulator.endpoint_url, messages=MESSAGES, backlog=BACKLOG, deadline_s=DEADLINE_S
    )
    assert (result.lost, result.duplicated, result.errors, result.timed_out) == (
        0,
        0,
        [],
        False,
    ), f"{result.summary()}\nemulator output:\n{emulator.output()}"


# --- the same, deterministically: one queue operation at a time ----------------------


class ObservedLock:
    """An RLock that reports when a thread has to wait for it."""

    def __init__(self, contended: threading.Event) -> None:
        self._lock = threading.RLock()
        self._contended = contended

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        if self._lock.acquire(blocking=False):
            return True
        if not blocking:
            return False
        self._contended.set()
        return self._lock.acquire(True, timeout)

    def release(self) -> None:
        self._lock.release()

    __enter__ = acquire

    def __exit__(self, *exc_info: object) -> None:
        self.release()

    # What threading.Condition uses to wait on an RLock held more than once.
    def _is_owned(self) -> bool:
        return self._lock._is_owned()  # type: ignore[attr-defined, no-any-return]

    def _release_save(self) -> Any:
        return self._lock._release_save()  # type: ignore[attr-defined]

    def _acquire_restore(self, state: Any) -> None:
        self._lock._acquire_restore(state)  # type: ignore[attr-defined]


class PausedScan:
    """Pauses one thread the first time it checks a message's visibility (mid-receive)."""

    def __init__(self) -> None:
        self.thread: threading.Thread | None = None
        self.inside = threading.Event()
        self.resume = threading.Event()

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        visible = vars(Message)["visible"]

        def paused(message: Message) -> bool:
            if threading.current_thread() is self.thread and not self.inside.is_set():
                self.inside.set()
                assert self.resume.wait(timeout=30), "the test never resumed the scan"
            return bool(visible.fget(message))

        monkeypatch.setattr(Message, "visible", property(paused))


@pytest.fixture
def progress(env_fixes: list[str], monkeypatch: pytest.MonkeyPatch) -> threading.Event:
    """Set when a thread has to wait for a queue's lock (queues created from now on)."""
    event = threading.Event()
    monkeypatch.setattr(fixes, "_SQS_LOCK", ObservedLock(event))
    return event


Operation = Callable[[SQSBackend, str], object]

OPERATIONS: dict[str, Operation] = {
    "send": lambda backend, handle: backend.send_message("serial", "new"),
    "delete": lambda backend, handle: backend.delete_message("serial", handle),
    "receive": lambda backend, handle: backend.receive_message("serial", 10, 0, 600),
    "change visibility": lambda backend, handle: backend.change_message_visibility(
        "serial", handle, 0
    ),
}


@pytest.mark.parametrize("operation", OPERATIONS)
def test_a_queue_operation_waits_for_a_receive_in_progress(
    operation: str,
    progress: threading.Event,
    env_fixes: list[str],
    backend: SQSBackend,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """moto's receive, send-vs-delete and visibility changes interleave; fixed, they take turns."""
    backend.create_queue("serial")
    for number in range(3):
        backend.send_message("serial", f"old-{number}")
    (in_flight,) = backend.receive_message("serial", 1, 0, 600)
    assert in_flight.receipt_handle is not None
    pause = PausedScan()
    pause.install(monkeypatch)
    errors: list[BaseException] = []
    finished: set[str] = set()

    def run(name: str, work: Callable[[], object]) -> None:
        try:
            work()
        except BaseException as exc:
            errors.append(exc)
        finally:
            finished.add(name)
            progress.set()

    receiver = threading.Thread(
        target=run, args=("receive", lambda: backend.receive_message("serial", 10, 0, 600))
    )
    pause.thread = receiver
    receiver.start()
    assert pause.inside.wait(timeout=30), "the receive never scanned the queue"
    progress.clear()
    other = threading.Thread(
        target=run,
        args=("other", lambda: OPERATIONS[operation](backend, in_flight.receipt_handle)),
    )
    other.start()
    # Wait until the operation either finished (it ran inside the receive) or
    # blocked on the queue's lock; the receive stays paused meanwhile.
    assert progress.wait(timeout=30)
    finished_during_receive = "other" in finished
    pause.resume.set()
    receiver.join(timeout=30)
    other.join(timeout=30)
    assert not errors, errors
    assert not finished_during_receive, (
        f"{operation} ran in the middle of a receive (fixes applied: {env_fixes})"
    )
