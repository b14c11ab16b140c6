"""``conveyor console``: serve the web console (ops/console) for queues.yaml's system.

This is the composition layer: the console lives in :mod:`ops`, which may not import
:mod:`producers`, so what only producers has is built here and handed in —
the API key check (``producers.auth``: keys with the ``viewer``/``operator``/``admin``
scopes), job cancellation (``producers.cancel``), idempotency-key lookup
(``producers.idempotency``) and the schedule operations (``producers.schedules``).

Authentication is decided exactly as for the API: on (keys required) unless
``CONVEYOR_API_AUTH=none``, which ``conveyor up`` sets on the embedded emulator.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer

from conveyor.cli import common
from infra.aws.names import IDEMPOTENCY_TABLE, timers_table_name
from infra.discovery import current_target
from infra.ledger import ledger_for
from infra.logs import configure_logging, get_logger
from infra.net import port_in_use
from infra.settings import SettingsError, load_settings
from infra.timers import TimerStore
from infra.topology import Topology
from ops.console.deps import Authenticate, CancelOutcome, ConsoleDeps, Principal
from ops.console.session import MIN_SECRET_CHARS
from ops.scaling.backends import BACKEND_ENV, Backend, backend_for
from ops.scaling.errors import ScalingError
from producers.auth import ApiKey, KeyRing, KeysError, load_keys

if TYPE_CHECKING:
    from producers.schedules import ScheduleFirer

log = get_logger("conveyor.console")


class ConsoleSchedules:
    """``conveyor schedules`` ls/pause/resume/trigger for the console (producers.schedules)."""

    def __init__(self, topology: Topology) -> None:
        from producers.schedules import ScheduleStore  # noqa: PLC0415

        self.topology = topology
        self.store = ScheduleStore(timers_table_name(topology))
        self._firer: ScheduleFirer | None = None

    def list(self) -> list[dict[str, Any]]:
        from producers.schedules.listing import describe_schedules  # noqa: PLC0415

        views = describe_schedules(
            self.topology, self.store, ledger_for(self.topology), datetime.now(UTC)
        )
        return [v.to_json() for v in views]

    def pause(self, name: str) -> None:
        self.store.set_paused(name, True, datetime.now(UTC))

    def resume(self, name: str) -> None:
        self.store.set_paused(name, False, datetime.now(UTC))

    def trigger(self, name: str) -> str:
        from producers.schedules import ScheduleFirer  # noqa: PLC0415

        if self._firer is None:
            self._firer = ScheduleFirer(self.topology)
        return self._firer.trigger(name)


def authenticator(keys: list[ApiKey]) -> Authenticate:
    """The console's key check over the API keys with a console scope (exit 2 if none has one)."""
    console_keys = [k for k in keys if k.console_role is not None]
    if not console_keys:
        common.fail(
            "the console needs an API key with a console scope: add `scopes: [viewer]` (or"
            " operator) to a key in CONVEYOR_API_KEYS_FILE / CONVEYOR_API_KEYS, or set"
            " CONVEYOR_API_AUTH=none to serve without authentication",
            common.EXIT_USAGE,
        )
    ring = KeyRing(console_keys)

    def authenticate(presented: str) -> Principal | None:
        key = ring.find(presented)
        role = key.console_role if key is not None else None
        return Principal(key.name, role) if key is not None and role is not None else None

    return authenticate


def canceller(topology: Topology) -> Callable[[str, str], CancelOutcome]:
    """``(job id, by) -> outcome``: the API's cancellation (producers.cancel), any job."""
    from producers.cancel import Canceller  # noqa: PLC0415

    canceller = Canceller(topology, ledger_for(topology), TimerStore(timers_table_name(topology)))

    def cancel(job_id: str, by: str) -> CancelOutcome:
        # An operator may cancel any job (as an admin key may through the API).
        answer = canceller.cancel(job_id, lambda owner: True, by)
        return CancelOutcome(answer.status, answer.body)

    return cancel


def idempotency_finder(
    topology: Topology, scopes: list[str]
) -> Callable[[str], list[tuple[str, str]]]:
    """``key -> [(scope, job id)]`` over ``scopes`` (the API key names; ``-`` without auth)."""
    from producers.idempotency import IdempotencyStore  # noqa: PLC0415

    store = IdempotencyStore(
        topology.resource_name(IDEMPOTENCY_TABLE), connect_timeout_s=2.0, read_timeout_s=5.0
    )

    def find(key: str) -> list[tuple[str, str]]:
        found = []
        for scope in scopes:
            match = store.find(scope, key)
            if match is not None:
                found.append((scope, match[0]))
        return found

    return find


def console(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.", min=0, max=65535)] = 8080,
    read_only: Annotated[
        bool,
        typer.Option("--read-only", help="Serve the pages only: every action is refused."),
    ] = False,
    backend_name: Annotated[
        str,
        typer.Option("--backend", envvar=BACKEND_ENV, help="Where pool replicas live."),
    ] = "local",
) -> None:
    """Serve the web console: overview, dead letters, jobs, pools, schedules.

    Log in with an API key that has the viewer or operator scope (CONVEYOR_API_KEYS_FILE
    or CONVEYOR_API_KEYS); without authentication only when CONVEYOR_API_AUTH=none
    (as `conveyor up` runs on the embedded emulator).
    """
    topology = common.load()
    settings = load_settings()
    try:
        api_settings, console_settings = settings.api, settings.console
    except SettingsError as exc:
        common.fail(str(exc), common.EXIT_USAGE)
    keys: list[ApiKey] = []
    authenticate = None
    if api_settings.auth != "none":
        try:
            keys = load_keys(
                path=api_settings.keys_file, inline=api_settings.keys, job_types=topology.job_types
            )
        except KeysError as exc:
            common.fail(str(exc), common.EXIT_USAGE)
        authenticate = authenticator(keys)
    secret = console_settings.session_secret
    if secret is not None and len(secret) < MIN_SECRET_CHARS:
        common.fail(
            f"CONVEYOR_CONSOLE_SESSION_SECRET must be at least {MIN_SECRET_CHARS} characters",
            common.EXIT_USAGE,
        )
    backend: Backend | None = None
    backend_error = None
    try:
        backend = backend_for(backend_name, topology, with_jobs=True)
    except ScalingError as exc:
        if exc.usage and "unknown scaling backend" in exc.message:
            common.fail(exc.message, common.EXIT_USAGE)
        backend_error = exc.message  # the other pages still work
    if port and port_in_use(port, host):
        common.fail(
            f"port {port} is in use: stop what listens there, or pass --port with another",
            common.EXIT_FAILED,
        )
    configure_logging(settings.logging.format, settings.logging.level)
    if authenticate is None:
        log.warning(
            "authentication is off (CONVEYOR_API_AUTH=none): anyone who reaches this port"
            " may use the console" + ("" if read_only else " and act on the queues")
        )
    deps = ConsoleDeps(
        topology=topology,
        authenticate=authenticate,
        read_only=read_only,
        backend=backend,
        backend_name=backend_name,
        backend_error=backend_error,
        session_secret=secret.encode() if secret else b"",
        session_max_age_s=console_settings.session_max_age_s,
        aws_timeout_s=console_settings.aws_timeout_s,
        sample_interval_s=console_settings.sample_interval_s,
        cancel=canceller(topology),
        find_idempotency_key=idempotency_finder(topology, [k.name for k in keys] or ["-"]),
        schedules=ConsoleSchedules(topology),
        target=current_target().to_json(),
    )
    import uvicorn  # noqa: PLC0415 - `--help` needs neither uvicorn nor FastAPI

    from ops.console.app import create_app  # noqa: PLC0415

    log.info("console.started", url=f"http://{host}:{port}", read_only=read_only)
    uvicorn.run(
        create_app(deps),
        host=host,
        port=port,
        log_config=None,
        access_log=True,
        proxy_headers=True,
    )


def register(app: typer.Typer) -> None:
    """Add ``console`` to ``app``."""
    app.command()(console)
