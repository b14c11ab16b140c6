"""What the console is given by the composition layer (``conveyor/cli/console.py``).

The console lives in :mod:`ops`, which may not import :mod:`producers`; what only
producers has — the API key check, cancelling a job, the schedule store, idempotency
keys — arrives as small callables. Each may be None: the page then says the feature
is not available here, rather than failing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from infra.topology import Topology
from ops.scaling.backends import Backend

Role = Literal["viewer", "operator"]


@dataclass(frozen=True)
class Principal:
    """Who is logged in: the API key's name and its console role."""

    name: str
    role: Role

    @property
    def operator(self) -> bool:
        """Whether this principal may act (redrive, delete, scale, cancel, fire)."""
        return self.role == "operator"


#: ``presented key -> Principal`` (None: unknown key, or a key without a console scope).
Authenticate = Callable[[str], Principal | None]


@dataclass(frozen=True)
class CancelOutcome:
    """What cancelling a job answered: the API's HTTP status and JSON body."""

    status: int
    body: dict[str, Any]


class Schedules(Protocol):
    """The schedule operations of ``conveyor schedules`` (producers/schedules)."""

    def list(self) -> list[dict[str, Any]]:
        """Every schedule, as ``conveyor schedules ls --json`` prints it."""
        ...

    def pause(self, name: str) -> None:
        """Stop ``name`` from firing until resumed."""
        ...

    def resume(self, name: str) -> None:
        """Let ``name`` fire again."""
        ...

    def trigger(self, name: str) -> str:
        """Fire ``name`` now; the new job's id."""
        ...


@dataclass
class ConsoleDeps:
    """Everything :func:`ops.console.app.create_app` needs."""

    topology: Topology
    #: None: authentication is off (the embedded emulator, as for the API).
    authenticate: Authenticate | None
    #: Refuse every action, whoever asks (``conveyor console --read-only``).
    read_only: bool = False
    #: Where pool replicas live (None: it could not be built; ``backend_error`` says why).
    backend: Backend | None = None
    backend_name: str = "local"
    backend_error: str | None = None
    #: Signs sessions and CSRF tokens (random per process unless configured).
    session_secret: bytes = b""
    session_max_age_s: float = 12 * 3600.0
    aws_timeout_s: float = 5.0
    sample_interval_s: float = 10.0
    #: ``(job_id, by) -> outcome``: producers.cancel's Canceller (None: not available).
    cancel: Callable[[str, str], CancelOutcome] | None = None
    #: ``idempotency key -> [(scope, job id)]`` over the configured API key names.
    find_idempotency_key: Callable[[str], list[tuple[str, str]]] | None = None
    schedules: Schedules | None = None
    #: The target line of ``conveyor status`` (what the console talks to, and why).
    target: dict[str, Any] = field(default_factory=dict)
