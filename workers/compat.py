"""The private Celery, kombu and billiard internals the worker relies on, checked at import.

Every hook (a library method we override, or a private method or attribute we
call, read or write) is listed once in :data:`HOOKS`, with what we rely on. On
import, the installed versions must be within :data:`SUPPORTED` and every hook
must still be there (and take the same parameters); otherwise
:class:`IncompatibleLibraryError` names the package or the hook. Subclasses of
library classes declare themselves with :func:`overrides` (each override must be
a listed hook); modules that touch private attributes name them with :func:`require`.
Each hook's behaviour is exercised in ``tests/unit/test_celery_compat.py``.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import inspect
import re
from collections.abc import Iterator
from dataclasses import dataclass
from types import CodeType, ModuleType
from typing import Any, Final, Literal, TypeVar

from infra.errors import ConveyorError

T = TypeVar("T", bound=type)

Use = Literal["override", "call", "read", "write"]


class IncompatibleLibraryError(ConveyorError, RuntimeError):
    """An installed Celery, kombu or billiard is not what the worker's hooks were written for."""


#: Installed versions the hooks accept: package -> (lowest, first excluded).
SUPPORTED: Final[dict[str, tuple[str, str]]] = {
    "celery": ("5.7.0", "5.8"),
    "kombu": ("5.7.0", "5.8"),
    "billiard": ("4.3.2", "4.4"),  # what celery 5.7 requires
}
#: The releases every hook below was read against and tested on.
VERIFIED_ON: Final[dict[str, str]] = {"celery": "5.7.0", "kombu": "5.7.0", "billiard": "4.3.2"}


@dataclass(frozen=True)
class Hook:
    """One internal of a library that the worker overrides, calls, reads or writes."""

    #: ``module:Class`` (or ``module`` for a module attribute), where ``attribute`` is found.
    owner: str
    attribute: str
    use: Use
    #: What we rely on it for (and what breaks if it changes).
    relied_on: str
    #: The parameter names (without ``self``) of a method or function, checked when given.
    params: tuple[str, ...] | None = None
    #: For an attribute set on instances only: ``module:Class.method`` whose code assigns it.
    assigned_in: str | None = None

    @property
    def name(self) -> str:
        """``module:Class.attribute``: how code and errors refer to the hook."""
        return f"{self.owner}.{self.attribute}"

    @property
    def package(self) -> str:
        """The distribution the hook belongs to (celery, kombu or billiard)."""
        return self.owner.split(".", 1)[0]


_SQS = "kombu.transport.SQS:Channel"
_VIRTUAL = "kombu.transport.virtual:Channel"
_ASYNPOOL = "celery.concurrency.asynpool:AsynPool"

_HOOK_LIST: Final = [
    # -- kombu: receiving (workers.transport.Channel) ------------------------------------
    Hook(
        _SQS,
        "_message_to_python",
        "override",
        "builds the kombu payload of each received SQS message, called from "
        "_on_messages_ready; ours maps a CloudEvents job to a Celery protocol-2 task message",
        params=("message", "queue_name", "q_url"),
    ),
    Hook(
        _SQS,
        "_on_messages_ready",
        "override",
        "handles the async ReceiveMessage result (wired by _get_async); its return value "
        "reaches _loop1 as messages_fetched; ours buffers the batch, counts a failure",
        params=("queue", "qname", "messages"),
    ),
    Hook(
        _SQS,
        "_get_message_estimate",
        "override",
        "how many messages _get_bulk_async asks for; ours asks for a full batch",
        params=("max_if_unlimited",),
    ),
    Hook(
        _SQS,
        "_schedule_queue",
        "override",
        "one step of the receive loop, scheduled on the hub by basic_consume and _loop1",
        params=("queue",),
    ),
    Hook(
        _SQS,
        "_loop1",
        "override",
        "called after each poll with the messages fetched; ours polls again at once",
        params=("queue", "messages_fetched"),
    ),
    Hook(
        _SQS,
        "_get_bulk_async",
        "call",
        "starts one async ReceiveMessage of _get_message_estimate() messages whose "
        "result goes through _on_messages_ready to the callback",
        params=("queue", "callback"),
    ),
    Hook(
        _SQS,
        "hub",
        "read",
        "the event loop the channel was made in (None outside a worker's consumer)",
        assigned_in=f"{_SQS}.__init__",
    ),
    Hook(
        _VIRTUAL,
        "_active_queues",
        "read",
        "the queues being consumed: the receive loop of a cancelled queue stops",
        assigned_in=f"{_VIRTUAL}.__init__",
    ),
    Hook(
        "kombu.transport.virtual:Transport",
        "_callbacks",
        "read",
        "queue name -> the consumer callback basic_consume registered (popped on "
        "cancel); the channel's connection is the transport",
    ),
    Hook(
        "kombu.transport.virtual:QoS",
        "can_consume",
        "call",
        "whether a prefetch slot is free",
        params=(),
    ),
    Hook(
        "kombu.transport.virtual:QoS",
        "get",
        "call",
        "the delivered kombu Message of a delivery tag (KeyError once acknowledged)",
        params=("delivery_tag",),
    ),
    # -- kombu: acknowledging -----------------------------------------------------------
    Hook(
        _SQS,
        "basic_ack",
        "override",
        "Celery acknowledges through it; kombu's deletes, ours applies the job's outcome",
        params=("delivery_tag", "multiple"),
    ),
    Hook(
        _VIRTUAL,
        "basic_ack",
        "call",
        "only frees the prefetch slot (QoS.ack): called past SQS's basic_ack, which deletes",
        params=("delivery_tag", "multiple"),
    ),
    Hook(
        _SQS,
        "basic_reject",
        "override",
        "kombu's deletes a rejected message when its queue has no RedrivePolicy; ours "
        "never deletes",
        params=("delivery_tag", "requeue"),
    ),
    Hook(
        "kombu.transport.SQS:QoS",
        "reject",
        "call",
        "frees the prefetch slot; applies a backoff policy only when predefined_queues "
        "set one (ours never do)",
        params=("delivery_tag", "requeue"),
    ),
    Hook(
        _SQS,
        "_restore",
        "override",
        "QoS.restore_unacked calls it for each unacknowledged message when the channel "
        "closes; kombu's publishes a copy, ours makes the original visible again",
        params=("message", "unwanted_delivery_info"),
    ),
    Hook(
        _SQS,
        "basic_cancel",
        "override",
        "stops a consumer (pops its callback); ours then releases what it buffered",
        params=("consumer_tag",),
    ),
    Hook(
        _SQS,
        "close",
        "override",
        "kombu's cancels the consumers and restores the unacknowledged messages through "
        "_restore; ours first sends the batched deletes and visibility changes",
        params=(),
    ),
    Hook(
        _SQS,
        "new_sqs_client",
        "override",
        "every boto3 SQS client the channel makes (sqs(), asynsqs()) comes from it",
        params=("region", "access_key_id", "secret_access_key", "session_token"),
    ),
    Hook(
        "kombu.transport.SQS:Transport",
        "Channel",
        "override",
        "the channel class the transport instantiates",
    ),
    # -- celery: the request (workers.request.JobRequest) ----------------------------------
    Hook(
        "celery.worker.request:Request",
        "on_accepted",
        "override",
        "the pool reports the job started; ours starts its runtime limit",
        params=("pid", "time_accepted"),
    ),
    Hook(
        "celery.worker.request:Request",
        "on_failure",
        "override",
        "the job raised; ours sends an expected outcome to the transport and acknowledges",
        params=("exc_info", "send_failed_event", "return_ok"),
    ),
    Hook(
        "celery.worker.state",
        "task_ready",
        "call",
        "removes a finished request from the worker's state, as Celery's on_failure does",
        params=(
            "request",
            "successful",
            "remove_request",
            "discard_active_request",
            "discard_reserved_request",
            "discard_scheduled_request",
        ),
    ),
    Hook(
        "billiard.einfo:ExceptionWithTraceback",
        "exc",
        "read",
        "the prefork pool wraps a child's exception in it; .exc is the original",
        assigned_in="billiard.einfo:ExceptionWithTraceback.__init__",
    ),
    # -- celery and billiard: the node's shutdown (workers.node) --------------------------
    Hook(
        "celery.worker.state", "should_stop", "write", "set to 0, the worker makes a warm shutdown"
    ),
    Hook(
        "celery.apps.worker:Worker",
        "install_platform_tweaks",
        "override",
        "installs the signal handlers; ours then puts the node's SIGTERM/SIGINT handler",
        params=("worker",),
    ),
    Hook(
        "celery.apps.worker:Worker",
        "on_consumer_ready",
        "override",
        "the consumer started, its pool is set; ours wraps the pool's flush",
        params=("consumer",),
    ),
    Hook(
        "celery.concurrency.prefork:TaskPool",
        "flush",
        "write",
        "the consumer calls pool.flush() when it stops; TaskPool.on_start binds it to "
        "AsynPool.flush, which the node wraps per instance",
        assigned_in="celery.concurrency.prefork:TaskPool.on_start",
    ),
    Hook(
        "celery.concurrency.prefork:TaskPool",
        "_pool",
        "read",
        "the AsynPool of a started TaskPool",
        assigned_in="celery.concurrency.prefork:TaskPool.on_start",
    ),
    Hook(
        _ASYNPOOL,
        "flush",
        "call",
        "forgets every job not yet accepted, even one fully written to a child (which "
        "then runs anyway): the reason the node keeps those during a warm shutdown",
        params=(),
    ),
    Hook(
        _ASYNPOOL,
        "_active_writers",
        "read",
        "the generators still writing a job to a child",
        assigned_in=f"{_ASYNPOOL}.__init__",
    ),
    Hook(
        "billiard.pool:Pool",
        "_cache",
        "read",
        "job number -> ApplyResult of every job the pool has not finished",
        assigned_in="billiard.pool:Pool.__init__",
    ),
    Hook(
        "billiard.pool:ApplyResult",
        "_accepted",
        "read",
        "whether a child reported the job started",
        assigned_in="billiard.pool:ApplyResult.__init__",
    ),
    Hook(
        "billiard.pool:ApplyResult",
        "_write_to",
        "read",
        "the child a job is being (or was) written to; None before writing began",
    ),
    Hook(
        "billiard.pool:ApplyResult",
        "_writer",
        "read",
        "a weak reference to the generator writing the job to its child",
        assigned_in=f"{_ASYNPOOL}._create_write_handlers",
    ),
    # -- celery: the asyncio pool (workers.aio.pool.AsyncioPool) --------------------------
    Hook(
        "celery.concurrency.base:BasePool",
        "signal_safe",
        "override",
        "False: Celery then never runs the pool's stop from inside a signal handler "
        "(the asyncio pool's stop waits for its loop's thread)",
    ),
    Hook(
        "celery.concurrency.base:BasePool",
        "on_start",
        "override",
        "called once when the worker starts the pool: the asyncio pool starts its loop",
        params=(),
    ),
    Hook(
        "celery.concurrency.base:BasePool",
        "on_apply",
        "override",
        "called by apply_async for every job with the tracer as target and the "
        "request's callbacks: the asyncio pool starts the job as a task on its loop",
    ),
    Hook(
        "celery.concurrency.base:BasePool",
        "on_stop",
        "override",
        "called on a warm shutdown once the consumer stopped: wait for jobs in flight",
        params=(),
    ),
    Hook(
        "celery.concurrency.base:BasePool",
        "on_terminate",
        "override",
        "called on a cold shutdown: cancel the jobs in flight",
        params=(),
    ),
    Hook(
        "celery.concurrency.base:BasePool",
        "terminate_job",
        "override",
        "Request.cancel (a cold shutdown cancelling active requests) calls it with the "
        "job's pid, then terminate() on what apply_async returned: the asyncio pool "
        "cancels the job's task there",
        params=("pid", "signal"),
    ),
    Hook(
        "celery.concurrency.base",
        "apply_target",
        "call",
        "runs the tracer with the accept callback first and the result callback after, "
        "turning a BaseException (a cancelled job) into WorkerLostError: the message is "
        "made visible again",
        params=(
            "target",
            "args",
            "kwargs",
            "callback",
            "accept_callback",
            "pid",
            "getpid",
            "propagate",
            "monotonic",
            "_",
        ),
    ),
    # -- billiard: small pool children (workers.node) -------------------------------------
    Hook(
        "billiard.util",
        "get_pdeathsig",
        "call",
        "called in the node before forking: with cffi installed it builds cffi's C parser, "
        "which each child would otherwise build for itself when it sets its pdeathsig",
        params=(),
    ),
]

#: Every hook by name (``module:Class.attribute``).
HOOKS: Final[dict[str, Hook]] = {hook.name: hook for hook in _HOOK_LIST}


def _release(version: str) -> tuple[int, ...]:
    match = re.match(r"\d+(?:\.\d+)*", version)
    return tuple(int(part) for part in match.group().split(".")) if match else ()


def check_version(package: str, installed: str) -> None:
    """Raise :class:`IncompatibleLibraryError` unless ``installed`` is in ``package``'s range."""
    low, high = SUPPORTED[package]
    if _release(low) <= _release(installed) < _release(high):
        return
    raise IncompatibleLibraryError(
        f"{package} {installed} is installed, but Conveyor's worker supports {package} "
        f">={low},<{high} (its private hooks in workers/compat.py were verified on "
        f"{package} {VERIFIED_ON[package]}): install a supported version, or re-check "
        f"each {package} hook and tests/unit/test_celery_compat.py, then widen SUPPORTED"
    )


def _resolve(path: str) -> Any:
    """The object at ``module:Qual.name`` (or the module ``module``)."""
    module_name, _, qualname = path.partition(":")
    found: Any = importlib.import_module(module_name)
    for part in qualname.split(".") if qualname else []:
        found = getattr(found, part)
    return found


def _code_names(code: CodeType) -> Iterator[str]:
    """Every name a function's code (nested functions included) refers to."""
    yield from code.co_names
    for const in code.co_consts:
        if isinstance(const, CodeType):
            yield from _code_names(const)


def _broken(hook: Hook, problem: str) -> IncompatibleLibraryError:
    installed = importlib.metadata.version(hook.package)
    return IncompatibleLibraryError(
        f"hook {hook.name} ({hook.use}) {problem} in {hook.package} {installed}; the worker "
        f"relies on it: {hook.relied_on}. Re-read that code and fix workers/compat.py"
    )


def check_hook(hook: Hook) -> None:
    """Raise :class:`IncompatibleLibraryError` naming ``hook`` if the library changed under it."""
    try:
        owner = _resolve(hook.owner)
    except (ImportError, AttributeError) as exc:
        raise _broken(hook, f"has no owner ({exc})") from exc
    if hook.assigned_in is not None:
        try:
            setter = inspect.unwrap(_resolve(hook.assigned_in))
        except (ImportError, AttributeError) as exc:
            raise _broken(hook, f"has no {hook.assigned_in} ({exc})") from exc
        if hook.attribute not in set(_code_names(setter.__code__)):
            raise _broken(hook, f"is no longer assigned in {hook.assigned_in}")
        return
    if not hasattr(owner, hook.attribute):
        raise _broken(hook, "is gone")
    if hook.params is not None:
        params = list(inspect.signature(getattr(owner, hook.attribute)).parameters)
        if not isinstance(owner, ModuleType):
            params = params[1:]  # self
        if tuple(params) != hook.params:
            raise _broken(hook, f"takes ({', '.join(params)}), not ({', '.join(hook.params)})")


def check_all() -> None:
    """Check every supported package's version, then every hook (what importing does)."""
    for package in SUPPORTED:
        check_version(package, importlib.metadata.version(package))
    for hook in HOOKS.values():
        check_hook(hook)


def require(*names: str) -> None:
    """Declare that the calling module relies on these hooks (each must be listed)."""
    for name in names:
        if name not in HOOKS:
            raise IncompatibleLibraryError(f"{name} is not a hook listed in workers/compat.py")


def overrides(cls: T) -> T:
    """Class decorator: every library attribute ``cls`` overrides must be a listed hook.

    It also catches a library that adds, in a new release, a method with the name of
    one of our own helpers (which would then silently replace it).
    """
    for name in vars(cls):
        if name.startswith("__") and name.endswith("__"):
            continue
        base = next((b for b in cls.__mro__[1:] if name in vars(b)), None)
        if base is None:
            continue  # ours alone
        hook = f"{base.__module__}:{base.__qualname__}.{name}"
        if HOOKS.get(hook, None) is None or HOOKS[hook].use != "override":
            raise IncompatibleLibraryError(
                f"{cls.__qualname__}.{name} overrides {hook}, which is not an override "
                f"listed in workers/compat.py: list it (and test it), or rename ours"
            )
    return cls


check_all()
