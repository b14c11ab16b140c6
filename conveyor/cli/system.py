"""``conveyor up`` and ``conveyor demo``: the whole system on this machine.

``up`` records the running system in ``.conveyor/up.json`` beside queues.yaml
(:mod:`infra.discovery`), so commands in other shells find it with nothing exported,
and removes the file when it stops. A start-up failure (a busy port, an emulator that
did not start, a missing keys file, an AWS endpoint that does not answer) is one line
with the fix; ``--debug`` (or ``CONVEYOR_LOG_LEVEL=DEBUG``) shows the traceback.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Annotated

import typer

from conveyor.cli.common import EXIT_FAILED, EXIT_USAGE, fail, load
from conveyor.demo import DELIBERATELY_INVALID, Summary, submit_sample_workload, wait_for_outcomes
from conveyor.system import LocalSystem, local_system
from infra.discovery import (
    Discovered,
    discovery_path,
    read_discovery,
    remove_discovery,
    write_discovery,
)
from infra.errors import ConveyorError, exit_code
from infra.logs import configure_logging, get_logger
from infra.net import answers, port_in_use
from infra.settings import aws_endpoint_url, aws_target_variables, load_settings
from infra.topology import Topology, TopologyError, check_imports, load_topology

log = get_logger("conveyor.cli")

UseAws = Annotated[
    bool,
    typer.Option(
        "--aws",
        help="Use the AWS account (or AWS_ENDPOINT_URL) the environment configures"
        " instead of starting the embedded emulator (also: CONVEYOR_USE_AWS=true).",
    ),
]
Debug = Annotated[
    bool,
    typer.Option(
        "--debug",
        help="Show the full traceback of a start-up failure (also: CONVEYOR_LOG_LEVEL=DEBUG).",
    ),
]

#: How often ``up`` looks at queues.yaml for changes.
WATCH_INTERVAL_S = 1.0


class _StopRequested(ConveyorError):  # noqa: N818 - a request, not an error
    """SIGTERM, turned into an exception so the `with` blocks unwind and stop children."""


def _raise_stop(signum: int, frame: FrameType | None) -> None:
    raise _StopRequested


def _use_emulator(use_aws: bool) -> bool:
    """Whether to start the embedded emulator; exit with one line when the environment
    says otherwise without ``--aws``, or names an endpoint that does not answer."""
    use_aws = use_aws or load_settings().local.use_aws
    endpoint = aws_endpoint_url()
    if not use_aws:
        if endpoint:
            fail(
                f"AWS_ENDPOINT_URL is set ({endpoint}) but `conveyor up` starts its own"
                " emulator: `unset AWS_ENDPOINT_URL` (other shells find the running system"
                " without it), or pass --aws to use that endpoint",
                EXIT_USAGE,
            )
        return True
    if endpoint and not answers(endpoint):
        fail(
            f"nothing answers at {endpoint}, which AWS_ENDPOINT_URL names: start it, or"
            " `unset AWS_ENDPOINT_URL` (without --aws, `conveyor up` starts its own emulator)",
            EXIT_FAILED,
        )
    return False


def _prepare(use_aws: bool) -> tuple[Topology, bool]:
    settings = load_settings()
    configure_logging(settings.logging.format, settings.logging.level)
    topology = load()
    try:
        check_imports(topology, source=str(settings.topology.queues_file), handlers=True)
    except TopologyError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(EXIT_USAGE) from None
    return topology, _use_emulator(use_aws)


def _check_ports(
    api_port: int, emulator_port: int, use_emulator: bool, console_port: int = 0
) -> None:
    """Exit with one line naming the option when a port ``up`` needs is taken."""
    if api_port and port_in_use(api_port):
        fail(
            f"port {api_port} (the producer API's) is in use: stop what listens there,"
            " or pass --api-port with another port",
            EXIT_FAILED,
        )
    if console_port and port_in_use(console_port):
        fail(
            f"port {console_port} (the web console's) is in use: stop what listens there,"
            " or pass --console-port with another port (0: any free one)",
            EXIT_FAILED,
        )
    if use_emulator and emulator_port and port_in_use(emulator_port):
        fail(
            f"port {emulator_port} (the emulator's) is in use: stop what listens there,"
            " or pass --emulator-port with another port (0: any free one)",
            EXIT_FAILED,
        )


def _check_keys(use_emulator: bool, topology: Topology) -> None:
    """On AWS the API needs keys: a missing keys file is one line now, not a dead API later."""
    if use_emulator or load_settings().api.auth == "none":
        return
    from conveyor.cli.api import require_keys  # noqa: PLC0415 - only on this path

    require_keys(load_settings().api, topology)


def _debugging(debug: bool) -> bool:
    return debug or load_settings().logging.level.upper() == "DEBUG"


def _run_reporting(debug: bool, body: Callable[[], None]) -> None:
    """Run ``body``; an error is one line (the traceback with ``--debug``), exit non-zero."""
    try:
        body()
    except (typer.Exit, KeyboardInterrupt, _StopRequested):
        raise
    except Exception as exc:  # noqa: BLE001 - every start-up failure becomes one line
        if _debugging(debug):
            traceback.print_exc()
            raise typer.Exit(exit_code(exc)) from None
        if isinstance(exc, ConveyorError):
            fail(str(exc), exit_code(exc))
        fail(f"{type(exc).__name__}: {exc} (--debug shows the traceback)", EXIT_FAILED)


class _FileWatch:
    """Notices a changed file (its mtime, then its content's hash)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stamp = self._mtime()
        self._digest = self._hash()

    def _mtime(self) -> int | None:
        try:
            return self.path.stat().st_mtime_ns
        except OSError:
            return None

    def _hash(self) -> str | None:
        try:
            return hashlib.sha256(self.path.read_bytes()).hexdigest()
        except OSError:
            return None

    def changed(self) -> bool:
        """True once per change of the file's content."""
        stamp = self._mtime()
        if stamp == self._stamp:
            return False
        self._stamp = stamp
        digest = self._hash()
        if digest == self._digest:
            return False  # touched, not changed
        self._digest = digest
        return True


def _changed_notice(queues_file: Path) -> str:
    """The one line ``up`` prints when queues.yaml changed under it."""
    settings = load_settings().topology
    try:
        load_topology(queues_file, environment=settings.environment)
    except TopologyError as exc:
        return (
            f"{queues_file} changed and has {len(exc.problems)} problem(s) (`conveyor check`"
            " lists them); the running system keeps the version it started with"
        )
    return (
        f"{queues_file} changed: restart `conveyor up` (Ctrl-C, then again) to apply it;"
        " until then the API and the workers run the version they started with"
    )


def _record(system: LocalSystem, queues_file: Path, use_emulator: bool) -> Discovered:
    return Discovered(
        pid=os.getpid(),
        api_url=system.api_url,
        endpoint_url=system.emulator_url if use_emulator else None,
        region=system.env.get("AWS_DEFAULT_REGION") or system.env.get("AWS_REGION") or "",
        queues_file=str(queues_file.resolve()),
        project=system.topology.project,
        environment=system.topology.environment,
        state_dir=str(system.state_dir.resolve()) if system.state_dir else None,
        health_urls={
            "api": f"{system.api_url}/healthz",
            **({"console": f"{system.console_url}/healthz"} if system.console_url else {}),
        },
        started_at=datetime.now(UTC).isoformat(timespec="seconds"),
        console_url=system.console_url,
    )


def _banner(system: LocalSystem, discovery_file: Path, *, export_needed: bool) -> None:
    where = "the embedded emulator" if system.emulator_url else "AWS"
    typer.echo(f"conveyor is up on {where} (environment {system.topology.environment})")
    typer.echo(f"  API        {system.api_url}   (OpenAPI {system.api_url}/docs)")
    typer.echo(f"  health     {system.api_url}/healthz")
    if system.console_url:
        typer.echo(f"  console    {system.console_url}   (queues, dead letters, jobs, pools)")
    typer.echo(f"  scheduler  {system.scheduler_health_url}   (delayed jobs, cron schedules)")
    if system.emulator_url:
        typer.echo(f"  emulator   {system.emulator_url}")
    typer.echo(f"  state      {system.state_dir}   (conveyor workers ls, workers scale POOL=N)")
    typer.echo(
        f"  discovery  {discovery_file}: conveyor status, dlq list, enqueue … in another"
        " shell of this directory use this system"
    )
    if system.emulator_url and export_needed:
        typer.echo(
            "  other shells ignore discovery while AWS_* settings are set or CONVEYOR_DISCOVERY"
            " is false; there:\n"
            f"  export AWS_ENDPOINT_URL={system.emulator_url} AWS_ACCESS_KEY_ID=testing"
            f" AWS_SECRET_ACCESS_KEY=testing AWS_DEFAULT_REGION=us-east-1"
            f" CONVEYOR_API_URL={system.api_url}"
        )


def up(
    sample_workload: Annotated[
        bool, typer.Option(help="Submit the sample workload once the system is up.")
    ] = False,
    *,
    use_aws: UseAws = False,
    api_port: Annotated[int, typer.Option(help="Port of the producer API.")] = 8000,
    emulator_port: Annotated[
        int, typer.Option(help="Port of the embedded emulator (0: any free port).")
    ] = 0,
    console_port: Annotated[
        int, typer.Option(help="Port of the web console (conveyor console; 0: any free port).")
    ] = 8080,
    autoscale: Annotated[
        bool, typer.Option(help="Also run the backlog autoscaler (conveyor workers autoscale).")
    ] = False,
    debug: Debug = False,
) -> None:
    """Start the embedded emulator (--aws: use AWS instead), apply the topology,
    start the API, the worker pools and the web console; stay in the foreground until Ctrl-C.

    Worker nodes run under the local supervisor: replicas.min per pool until
    conveyor workers scale changes it, and a node that crashes is restarted.
    Other shells in this directory find the system through .conveyor/up.json.
    A changed queues.yaml is reported in one line; it applies after a restart.
    """
    topology, use_emulator = _prepare(use_aws)
    queues_file = load_settings().topology.queues_file
    path = discovery_path(queues_file)
    running = read_discovery(path)
    if running is not None and running.pid != os.getpid():
        fail(
            f"`conveyor up` already runs for {queues_file} (pid {running.pid}, API"
            f" {running.api_url}): use it, or stop it first",
            EXIT_FAILED,
        )
    _check_ports(api_port, emulator_port, use_emulator, console_port)
    _check_keys(use_emulator, topology)
    signal.signal(signal.SIGTERM, _raise_stop)
    # Discovery covers other shells unless it is off, or AWS settings (as in this shell,
    # before the emulator's are set) win over it there.
    export_needed = bool(aws_target_variables()) or not load_settings().local.discovery

    def serve() -> None:
        with local_system(
            topology,
            use_emulator=use_emulator,
            api_port=api_port,
            emulator_port=emulator_port,
            autoscale=autoscale,
            console_port=console_port,
        ) as system:
            write_discovery(path, _record(system, queues_file, use_emulator))
            try:
                _banner(system, path, export_needed=export_needed)
                _serve(system, queues_file, sample_workload)
            finally:
                remove_discovery(path, os.getpid())

    try:
        _run_reporting(debug, serve)  # a ScalingError (a second supervisor) is one line too
    except (KeyboardInterrupt, _StopRequested):
        typer.echo("conveyor stopped", err=True)


def _serve(system: LocalSystem, queues_file: Path, sample_workload: bool) -> None:
    if sample_workload:
        summary = Summary()
        submit_sample_workload(system.api_url, summary)
        deliberate = (
            f" ({DELIBERATELY_INVALID} on purpose: the sample includes an invalid payload,"
            " to show the API's 422)"
            if summary.rejected == DELIBERATELY_INVALID
            else ""
        )
        typer.echo(
            f"sample workload: {summary.accepted} jobs accepted, {summary.rejected}"
            f" rejected{deliberate}; watch the workers' job.* events below. Ctrl-C stops."
        )
    watch = _FileWatch(queues_file)
    next_look = time.monotonic() + WATCH_INTERVAL_S
    while not (failures := system.failures()):
        time.sleep(0.5)  # supervision poll; worker nodes are the supervisor's
        if time.monotonic() >= next_look:
            next_look = time.monotonic() + WATCH_INTERVAL_S
            if watch.changed():
                typer.echo(_changed_notice(queues_file))
    for failure in failures:
        log.error("system.failed", reason=failure)
    raise typer.Exit(EXIT_FAILED)


def demo(
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
    use_aws: UseAws = False,
    timeout_s: Annotated[
        float, typer.Option(help="Give up waiting for outcomes after this long.")
    ] = 180.0,
    debug: Debug = False,
) -> None:
    """Bring the system up, submit the sample workload over HTTP, wait until every job
    succeeded or was dead-lettered, print a summary, stop everything."""
    topology, use_emulator = _prepare(use_aws)
    log_dir = Path(".conveyor") / f"demo-{datetime.now(UTC):%Y%m%dT%H%M%S}"
    log_dir.mkdir(parents=True, exist_ok=True)
    summary = Summary()
    signal.signal(signal.SIGTERM, _raise_stop)
    started = time.monotonic()
    outcome: list[bool] = []

    def run() -> None:
        with local_system(topology, use_emulator=use_emulator, log_dir=log_dir) as system:
            job_ids = submit_sample_workload(system.api_url, summary)
            worker_logs = [log_dir / f"worker-{pool}.log" for pool in topology.pools]
            outcome.append(wait_for_outcomes(worker_logs, job_ids, summary, timeout_s=timeout_s))
            summary.elapsed_s = round(time.monotonic() - started, 2)

    _run_reporting(debug, run)
    if as_json:
        typer.echo(json.dumps({**summary.to_json(), "logs": str(log_dir)}, indent=2))
    else:
        typer.echo(summary.render())
        typer.echo(f"logs: {log_dir}")
    if not all(outcome) or not outcome or summary.accepted == 0:
        raise typer.Exit(EXIT_FAILED)


def register(app: typer.Typer) -> None:
    """Add these commands to ``app``."""
    app.command()(up)
    app.command()(demo)
