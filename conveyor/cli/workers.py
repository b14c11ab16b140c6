"""``conveyor workers``: scale pools, list their nodes, run the supervisor and the autoscaler."""

from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Annotated

import typer
from rich.console import Console

from conveyor.cli.common import EXIT_FAILED, EXIT_USAGE, fail, load
from infra.errors import AwsError
from infra.logs import configure_logging
from infra.settings import child_environment, load_settings
from infra.topology import Topology
from ops.scaling.backends import BACKEND_ENV, Backend, backend_for
from ops.scaling.errors import ScalingError
from ops.scaling.model import PoolState
from ops.text import printable

app = typer.Typer(no_args_is_help=True)

BackendOption = Annotated[
    str,
    typer.Option(
        "--backend",
        envvar=BACKEND_ENV,
        help="Where replicas live: local (this machine's supervisor), ecs or kubernetes.",
    ),
]
PoolsOption = Annotated[
    list[str] | None,
    typer.Option("--pool", help="Only this pool (repeatable); default: every pool."),
]


@contextmanager
def _errors() -> Iterator[None]:
    try:
        yield
    except ScalingError as exc:
        fail(exc.message, EXIT_USAGE if exc.usage else EXIT_FAILED)
    except AwsError as exc:
        fail(str(exc), EXIT_FAILED)


def _backend(name: str, topology: Topology, *, with_jobs: bool = True) -> Backend:
    with _errors():
        return backend_for(name, topology, with_jobs=with_jobs)


def _pools(topology: Topology, pools: list[str] | None) -> list[str]:
    for pool in pools or []:
        if pool not in topology.pools:
            known = ", ".join(topology.pools) or "none"
            fail(f"unknown pool '{pool}' (known: {known})", EXIT_USAGE)
    return list(pools or topology.pools)


def _stop_on_signals(on_second: Callable[[], None] | None = None) -> threading.Event:
    stop = threading.Event()

    def handler(signum: int, frame: FrameType | None) -> None:
        if stop.is_set() and on_second is not None:
            on_second()
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    return stop


@app.command()
def scale(
    requests: Annotated[list[str], typer.Argument(help="POOL=N, one or more.", metavar="POOL=N")],
    force: Annotated[
        bool, typer.Option("--force", help="Allow counts outside the pool's replicas bounds.")
    ] = False,
    wait: Annotated[
        bool, typer.Option("--wait", help="Return once the running nodes match.")
    ] = False,
    timeout_s: Annotated[float, typer.Option(help="How long --wait waits.")] = 60.0,
    backend_name: BackendOption = "local",
) -> None:
    """Set the desired replicas of pools (media=3) and print before → after.

    Counts outside the pool's replicas bounds need --force. The local supervisor
    applies a change within a second; --wait returns once the nodes run.
    """
    from ops.scaling.scale import parse_requests, scale  # noqa: PLC0415

    topology = load()
    backend = _backend(backend_name, topology, with_jobs=False)
    with _errors():
        desired = parse_requests(topology, requests)
        changes = scale(topology, backend, desired, force=force)
    for change in changes:
        same = " (unchanged)" if change.before == change.after else ""
        typer.echo(f"{change.pool}: {change.before} → {change.after}{same}")
    note = next((s.note for s in backend.pools(list(desired)).values() if s.note), None)
    if note:
        typer.echo(f"note: {printable(note)}", err=True)
    if wait:
        _wait_for(backend, desired, timeout_s)


def _wait_for(backend: Backend, desired: dict[str, int], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        with _errors():
            states = backend.pools(list(desired))
        pending = {p: s for p, s in states.items() if s.running != desired[p] or _draining(s)}
        if not pending:
            typer.echo("running: " + ", ".join(f"{p}={n}" for p, n in desired.items()))
            return
        if time.monotonic() > deadline:
            fail(
                "not converged after "
                f"{timeout_s:g} s: "
                + ", ".join(f"{p} {s.running}/{desired[p]} running" for p, s in pending.items()),
                EXIT_FAILED,
            )
        time.sleep(0.5)  # polling the backend, bounded by the deadline


def _draining(state: PoolState) -> bool:
    return any(n.state == "draining" for n in state.nodes)


@app.command("ls")
def list_(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    pools: PoolsOption = None,
    backend_name: BackendOption = "local",
) -> None:
    """Per pool: desired and running replicas; per node: pid, host, uptime, jobs done."""
    from ops.scaling.render import pools_table  # noqa: PLC0415 - keep --help fast

    topology = load()
    names = _pools(topology, pools)
    backend = _backend(backend_name, topology)
    with _errors():
        states = backend.pools(names)
    now = time.time()
    if as_json:
        typer.echo(
            json.dumps(
                {"backend": backend.name, "pools": [s.to_json(now) for s in states.values()]},
                indent=2,
            )
        )
        return
    table = pools_table(list(states.values()), backend.name, now)
    console = Console()
    console.print(table)
    notes = {s.note for s in states.values() if s.note}
    for note in notes:
        typer.echo(f"note: {printable(note)}", err=True)


@app.command()
def up(pools: PoolsOption = None) -> None:
    """Run the local supervisor in the foreground (Ctrl-C drains and stops).

    It runs each pool's desired number of worker nodes (replicas.min until
    conveyor workers scale says otherwise), restarts crashed nodes with backoff
    and scales in with SIGTERM, so nodes finish their jobs before they exit.
    """
    from ops.scaling.store import state_dir_for  # noqa: PLC0415
    from ops.scaling.supervisor import Supervisor  # noqa: PLC0415

    settings = load_settings()
    configure_logging(settings.logging.format, settings.logging.level)
    topology = load()
    names = _pools(topology, pools)
    with _errors():
        _check_queues(topology, names)
        supervisor = Supervisor(
            topology,
            state_dir_for(topology),
            env=child_environment(CONVEYOR_ENVIRONMENT=topology.environment),
            pools=names,
            grace_s=settings.worker.worker_shutdown_grace_s,
        )
        supervisor.acquire()
    typer.echo(
        f"supervising {', '.join(names)} ({supervisor.state_dir});"
        " conveyor workers scale POOL=N changes the counts; Ctrl-C stops",
        err=True,
    )
    # A second Ctrl-C passes on to the draining nodes: they stop at once.
    supervisor.run(_stop_on_signals(on_second=supervisor.force))


def _check_queues(topology: Topology, pools: list[str]) -> None:
    """AwsError (a missing queue, with how to create it) before any node starts."""
    from infra.aws import lookup  # noqa: PLC0415

    for pool in pools:
        for queue in topology.pools[pool].queues:
            lookup.queue_url(topology, queue)


@app.command()
def autoscale(
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the decisions; change nothing.")
    ] = False,
    once: Annotated[bool, typer.Option("--once", help="Decide once per pool, then exit.")] = False,
    pools: PoolsOption = None,
    backend_name: BackendOption = "local",
) -> None:
    """Scale pools on their backlog (visible + in-flight messages of their queues).

    desired = clamp(ceil(backlog / target_backlog_per_worker), replicas.min,
    replicas.max); out at once, in only after the backlog stayed low for the
    scale-in cooldown. Every decision is logged (autoscale.decision).
    """
    from ops.scaling.autoscaler import Autoscaler, Decision  # noqa: PLC0415

    settings = load_settings()
    configure_logging(settings.logging.format, settings.logging.level)
    topology = load()
    names = _pools(topology, pools)
    backend = _backend(backend_name, topology, with_jobs=False)

    def show(decision: Decision) -> None:
        if dry_run or once:
            typer.echo(("(dry run) " if dry_run else "") + decision.render())

    with _errors():
        note = next((s.note for s in backend.pools(names).values() if s.note), None)
    if note:
        local = backend.name == "local"
        later = "; decisions are stored and applied once one runs" if local else ""
        typer.echo(f"note: {printable(note)}{later}", err=True)
    # A decision printed on stdout is not logged again on stderr: once per stream.
    autoscaler = Autoscaler(
        topology,
        backend,
        pools=names,
        dry_run=dry_run,
        on_decision=show,
        log_decisions=not (dry_run or once),
    )
    if once:
        with _errors():
            autoscaler.tick()
        return
    autoscaler.run(_stop_on_signals())
