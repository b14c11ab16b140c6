"""Small, named fixes to moto's SQS backend, applied inside the embedded emulator only.

moto's SQS backend (``moto/sqs/models.py``, the release :data:`MOTO_VERSION`) races
(a delete rebuilds the message list without the lock an append holds; receives
take no lock), does O(backlog) work per message (attribute reads that scan every
queued message, a slow datetime clock, deletes that scan the queue twice) and
keeps every message and every deleted receipt handle alive. Each fix below
removes one of those; docs/emulator.md has the figures measured against moto as
shipped.

Each fix is one function registered in :data:`FIXES` and applied by
:func:`apply_fixes` (see :mod:`infra.emulator.patching` for how patches compose).
Nothing is patched on import: only the emulator (:mod:`infra.emulator.server`)
calls :func:`apply_fixes`, in its own process. Behaviour is otherwise moto's:
same results, same errors.
"""

from __future__ import annotations

import functools
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, MutableSet
from datetime import datetime
from typing import Any, Final

from infra.emulator.patching import (
    AnyFunction,
    Edit,
    FixDoesNotApplyError,
    Patch,
    PatchSet,
    edited,
)
from infra.settings import EmulatorSettings, load_settings

ENV_VAR: Final = EmulatorSettings.env_name("emulator_fixes")
"""Environment variable selecting the fixes: ``all`` (default), ``none`` or ``name,name``."""

MOTO_VERSION: Final = "5.2.5"
"""The moto release these fixes were written against (setup.cfg pins it exactly)."""

RECENTLY_DELETED_RECEIPTS_PER_QUEUE = 10_000
"""How many deleted receipt handles a queue remembers (read when a queue is created)."""

FIXES: dict[str, Callable[[], None]] = {}
"""Every fix by name, in the order they are defined below (and applied)."""

_patches = PatchSet(FIXES)


def _fix(build: Callable[[], list[Patch]]) -> Callable[[], None]:
    """Register a function returning a fix's patches as the (idempotent) fix itself."""

    def apply() -> None:
        _check_moto_version()
        _patches.activate(build.__name__, build)

    # The fix takes the builder's name and docstring (not its signature: it returns None).
    apply.__name__ = apply.__qualname__ = build.__name__
    apply.__doc__ = build.__doc__
    FIXES[build.__name__] = apply
    return apply


def _check_moto_version() -> None:
    import moto  # noqa: PLC0415 - moto is imported only when a fix is applied

    if moto.__version__ != MOTO_VERSION:
        raise FixDoesNotApplyError(
            f"the emulator's fixes were written against moto {MOTO_VERSION}, found "
            f"{moto.__version__}: re-read moto/sqs/models.py, re-check each fix and its "
            f"test, then update MOTO_VERSION (or run with {ENV_VAR}=none)"
        )


# --- serialise_queue_mutations -------------------------------------------------------

# One re-entrant lock under every queue's condition. A receive holding queue A's lock
# moves messages to A's DLQ (B.add_message takes B's lock); with per-queue locks, a
# receive on B redriving to A at the same time would deadlock. The GIL serialises
# this Python code anyway, so one lock costs no parallelism.
_SQS_LOCK = threading.RLock()


def _with_shared_lock(init: AnyFunction) -> AnyFunction:
    @functools.wraps(init)
    def init_with_shared_lock(self: Any, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        # moto's per-queue `Condition()`, re-based on the shared lock; it keeps its
        # job (long polls wait on it, add_message notifies it). `Condition.wait`
        # releases an RLock however deeply held, so a long poll holding the lock
        # across receive_message still lets everyone else in while it waits.
        self._messages_lock = threading.Condition(_SQS_LOCK)

    return init_with_shared_lock


def _holding_own_lock(method: AnyFunction) -> AnyFunction:
    """``Queue.method`` run holding the queue's ``_messages_lock``."""

    @functools.wraps(method)
    def locked(self: Any, *args: Any, **kwargs: Any) -> Any:
        with self._messages_lock:
            return method(self, *args, **kwargs)

    return locked


def _holding_queue_lock(method: AnyFunction) -> AnyFunction:
    """``SQSBackend.method(queue_name, ...)`` run holding that queue's ``_messages_lock``."""

    @functools.wraps(method)
    def locked(self: Any, queue_name: str, *args: Any, **kwargs: Any) -> Any:
        # Each wrapped method starts with this lookup, so a missing queue raises
        # moto's QueueDoesNotExist as before. The queue's own condition rather than
        # _SQS_LOCK: a queue created before the fix keeps its private condition,
        # and that is the one its long polls wait on (and release).
        queue = self.get_queue(queue_name)
        with queue._messages_lock:
            return method(self, queue_name, *args, **kwargs)

    return locked


@_fix
def serialise_queue_mutations() -> list[Patch]:
    """Run every read-modify-write of a queue's messages under the queue's lock
    (one lock shared by all queues: see ``_SQS_LOCK``).

    Fixes lost messages (``delete_message`` replacing the list an ``add_message``
    has just appended to) and double deliveries (two ``receive_message`` calls
    marking the same visible message received). ``add_message``'s FIFO
    de-duplication check becomes atomic with its append, and
    ``change_message_visibility`` (it mutates a message and the pending set
    receive reads) and ``purge_queue`` are serialised too.
    """
    from moto.sqs import models  # noqa: PLC0415 - moto is imported only when a fix is applied

    return [
        Patch(models.Queue, "__init__", wrapper=_with_shared_lock),
        Patch(models.Queue, "add_message", wrapper=_holding_own_lock),
        Patch(models.Queue, "delete_message", wrapper=_holding_own_lock),
        Patch(models.SQSBackend, "receive_message", wrapper=_holding_queue_lock),
        Patch(models.SQSBackend, "change_message_visibility", wrapper=_holding_queue_lock),
        Patch(models.SQSBackend, "purge_queue", wrapper=_holding_queue_lock),
    ]


# --- fast_clock ----------------------------------------------------------------------


def _unix_time(dt: datetime | None = None) -> float:
    """moto's ``unix_time``: seconds since the epoch, now read from ``time.time()``."""
    if dt is not None:
        from moto.core.utils import unix_time  # noqa: PLC0415 - moto is loaded by now

        return unix_time(dt)
    return time.time()


def _unix_time_millis(dt: datetime | None = None) -> float:
    """moto's ``unix_time_millis`` on :func:`_unix_time`."""
    return _unix_time(dt) * 1000.0


@_fix
def fast_clock() -> list[Patch]:
    """Give the SQS backend a clock read with ``time.time()``.

    moto's ``unix_time()`` builds ``utcnow()`` and ``utcfromtimestamp(0)`` datetimes
    and subtracts them (many times the cost of ``time.time()``), and the SQS backend
    reads the clock for each queued message it looks at (``Message.visible`` and
    ``Message.delayed``): every scan of a deep queue paid that per message. Same
    value, seconds since the epoch. Only ``moto.sqs.models``' names are rebound.
    """
    from moto.sqs import models  # noqa: PLC0415 - moto is imported only when a fix is applied

    return [
        Patch(models, "unix_time", replacement=_unix_time),
        Patch(models, "unix_time_millis", replacement=_unix_time_millis),
    ]


# --- cheap_attribute_reads -----------------------------------------------------------

# `queue.attributes` renders booleans "true"/"false" and has a ContentBasedDeduplication
# key only on FIFO queues (`_set_attributes` always stores a bool there). So
# `queue.attributes.get("ContentBasedDeduplication") == "true"` is
# `queue.fifo_queue and queue.content_based_deduplication`, and inside a FIFO-only
# branch `... == "false"` is `not queue.content_based_deduplication`.
_CBD: Final = 'attributes.get("ContentBasedDeduplication")'


@_fix
def cheap_attribute_reads() -> list[Patch]:
    """Read the one queue attribute the hot paths need instead of building all of them.

    ``Queue.attributes`` counts visible, delayed and in-flight messages by checking
    every queued message, so each use is O(backlog). moto used it on every send
    (``ContentBasedDeduplication``, twice more per FIFO send) and three times per
    received message (``MessageRetentionPeriod`` via ``get_queue_attributes`` in
    the retention check). Those reads now go to the queue's own field, by edits to
    moto's own source (:func:`infra.emulator.patching.edited`).
    """
    from moto.sqs import models  # noqa: PLC0415 - moto is imported only when a fix is applied

    backend, queue = models.SQSBackend, models.Queue

    def edit(owner: type, name: str, *edits: Edit) -> Patch:
        return Patch(owner, name, replacement=edited(_patches.original(owner, name), *edits))

    return [
        edit(
            backend,
            "send_message",
            Edit(
                f"queue.{_CBD} == 'true'", "queue.fifo_queue and queue.content_based_deduplication"
            ),
        ),
        edit(  # both uses sit inside `if queue.fifo_queue:`
            backend,
            "_validate_message",
            Edit(f"queue.{_CBD} == 'false'", "not queue.content_based_deduplication", count=2),
        ),
        edit(  # inside `if self.fifo_queue:`
            queue,
            "add_message",
            Edit(f"self.{_CBD} == 'true'", "self.content_based_deduplication"),
        ),
        edit(  # get_queue raises QueueDoesNotExist just as get_queue_attributes did
            backend,
            "is_message_valid_based_on_retention_period",
            Edit(
                "self.get_queue_attributes(queue_name, ['MessageRetentionPeriod'])"
                "['MessageRetentionPeriod']",
                "self.get_queue(queue_name).message_retention_period",
            ),
        ),
    ]


# --- find_deletes_among_in_flight ----------------------------------------------------


def _in_flight_first(delete_message: AnyFunction) -> AnyFunction:
    @functools.wraps(delete_message)
    def delete_in_flight_first(self: Any, receipt_handle: str) -> None:
        # (A handle already deleted goes to moto, which returns: deleting twice is fine.)
        if receipt_handle not in self.deleted_messages:
            # Received messages stay in pending_messages until deleted, purged,
            # redriven or seen visible again by a receive. One message per handle:
            # handles are 185 random letters.
            message = next(
                (m for m in self.pending_messages if m.had_receipt_handle(receipt_handle)), None
            )
            # A C-level scan that stops at the message (Message has no __eq__: identity).
            if message is not None and message in self._messages:
                index = self._messages.index(message)
                # moto's own bookkeeping, and a new list as moto builds one (a reader
                # iterating the old list without the lock is not disturbed).
                self.pending_messages.discard(message)
                self.deleted_messages.update(message.all_receipt_handles)
                self._messages = self._messages[:index] + self._messages[index + 1 :]
                return
        # Not in flight (made visible again, or an invalid handle): moto's full scan.
        delete_message(self, receipt_handle)

    return delete_in_flight_first


@_fix
def find_deletes_among_in_flight() -> list[Patch]:
    """Find the message a receipt handle deletes among the in-flight ones first.

    ``Queue.delete_message`` checked every queued message's receipt handles twice
    (a check, then a rebuild of the list), building a list of handles per message:
    O(backlog) per deleted message, and every job ends in a delete. A handle being
    deleted almost always belongs to a message received and not yet deleted, which
    ``pending_messages`` holds; other handles take moto's path unchanged.
    """
    from moto.sqs import models  # noqa: PLC0415 - moto is imported only when a fix is applied

    original = _patches.original(models.Queue, "delete_message")
    return [Patch(models.Queue, "delete_message", replacement=_in_flight_first(original))]


# --- stop_tracking_messages ----------------------------------------------------------


def _untracked_new(cls: type, *args: Any, **kwargs: Any) -> Any:
    """``BaseModel.__new__`` without appending the instance to ``cls.instances_tracked``."""
    return object.__new__(cls)


@_fix
def stop_tracking_messages() -> list[Patch]:
    """Stop moto recording every SQS message (and every received copy) for its dashboard.

    moto's ``BaseModel.__new__`` appends each instance to its class's
    ``instances_tracked`` list, which only ``/moto-api/reset`` empties, so that
    ``/moto-api/data.json`` can list it; ``receive_message`` deep-copies each
    message it returns, which creates (and records) another. That kept every
    message ever sent and every copy alive: most of the memory retained per
    message. Replacing ``Message.__new__`` (not the list, which a reset replaces)
    keeps them out; the dashboard lists no SQS messages any more.
    """
    from moto.sqs import models  # noqa: PLC0415 - moto is imported only when a fix is applied

    return [Patch(models.Message, "__new__", replacement=staticmethod(_untracked_new))]


# --- forget_old_deleted_receipts -----------------------------------------------------


class _RecentlyDeletedReceipts(MutableSet[str | None]):
    """``Queue.deleted_messages`` keeping only the most recently added handles.

    moto remembers deleted receipt handles so that deleting a message twice
    succeeds, as on AWS (a retried DeleteMessage must not fail). Retries need the
    recent ones, not all of them forever. (moto also records a ``None`` among a
    message's handles; stored like any other.)
    """

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._handles: OrderedDict[str | None, None] = OrderedDict()

    def __contains__(self, handle: object) -> bool:
        return handle in self._handles

    def __iter__(self) -> Iterator[str | None]:
        return iter(self._handles)

    def __len__(self) -> int:
        return len(self._handles)

    def add(self, value: str | None) -> None:
        """Remember ``value``, forgetting the oldest handles beyond the limit."""
        self._handles[value] = None
        self._handles.move_to_end(value)
        while len(self._handles) > self._limit:
            self._handles.popitem(last=False)

    def discard(self, value: str | None) -> None:
        """Forget ``value`` if remembered."""
        self._handles.pop(value, None)

    def update(self, values: Iterable[str | None]) -> None:
        """``set.update``, which is what ``Queue.delete_message`` calls."""
        for value in values:
            self.add(value)


def _with_bounded_deleted_receipts(init: AnyFunction) -> AnyFunction:
    @functools.wraps(init)
    def init_with_bounded_receipts(self: Any, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        self.deleted_messages = _RecentlyDeletedReceipts(RECENTLY_DELETED_RECEIPTS_PER_QUEUE)

    return init_with_bounded_receipts


@_fix
def forget_old_deleted_receipts() -> list[Patch]:
    """Keep each queue's most recent deleted receipt handles, not all of them forever.

    Deleting an already deleted message with a recent handle still succeeds; one
    more than :data:`RECENTLY_DELETED_RECEIPTS_PER_QUEUE` handles old is answered
    ``ReceiptHandleIsInvalid``, as AWS answers an expired handle. Applies to
    queues created after the fix.
    """
    from moto.sqs import models  # noqa: PLC0415 - moto is imported only when a fix is applied

    return [Patch(models.Queue, "__init__", wrapper=_with_bounded_deleted_receipts)]


# --- selecting and applying ----------------------------------------------------------


def _checked(names: Iterable[str]) -> list[str]:
    wanted = list(dict.fromkeys(names))
    unknown = [name for name in wanted if name not in FIXES]
    if unknown:
        raise ValueError(
            f"unknown emulator fix(es): {', '.join(unknown)}; "
            f"valid: {', '.join(FIXES)} (or 'all' / 'none')"
        )
    return [name for name in FIXES if name in wanted]


def apply_fixes(names: Iterable[str] | None = None) -> list[str]:
    """Apply the named fixes (all of them if ``names`` is None) to moto's SQS backend.

    Idempotent: a fix already applied stays as it is. Returns the names asked for,
    in :data:`FIXES` order; all of them are in effect afterwards. Raises ValueError
    naming any unknown fix (before applying anything), and
    :class:`~infra.emulator.patching.FixDoesNotApplyError` if moto is not the
    version (or the code) the fixes were written for.
    """
    selected = list(FIXES) if names is None else _checked(names)
    for name in selected:
        FIXES[name]()
    return selected


def applied_fixes() -> list[str]:
    """The fixes in effect in this process, in :data:`FIXES` order."""
    return _patches.active()


def revert_fixes() -> list[str]:
    """Undo every fix, restoring moto as shipped; returns the fixes reverted.

    For tests that apply fixes in-process. Queues created meanwhile keep the
    shared lock and bounded receipt set they were created with; harmless.
    """
    return _patches.revert_all()


def parse_fix_selection(text: str) -> list[str]:
    """Parse ``all`` | ``none`` | ``name,name,...`` (the syntax of :data:`ENV_VAR`).

    Blank means ``all``. Raises ValueError naming unknown fixes and the valid ones.
    """
    value = text.strip()
    if value.lower() in ("", "all"):
        return list(FIXES)
    if value.lower() == "none":
        return []
    return _checked(part.strip() for part in value.split(",") if part.strip())


def selected_fixes_from_env() -> list[str]:
    """The fixes ``CONVEYOR_EMULATOR_FIXES`` selects: ``all`` (the default), ``none`` or names."""
    return parse_fix_selection(load_settings().emulator.emulator_fixes)


def resolve_fix_selection(fixes: str | Iterable[str] | None) -> list[str]:
    """Normalise a selection: None reads the environment, a string uses its syntax, else names."""
    if fixes is None:
        return selected_fixes_from_env()
    if isinstance(fixes, str):
        return parse_fix_selection(fixes)
    return _checked(fixes)
