"""``conveyor up`` and ``conveyor demo``: the whole system on this machine."""

from __future__ import annotations

import json
import signal
import time
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Annotated

import typer

from conveyor.cli.common import EXIT_FAILED, EXIT_USAGE, fail, load
from conveyor.demo import Summary, submit_sample_workload, wait_for_outcomes
from conveyor.system import local_system
from infra.errors import ConveyorError
from infra.logs import configure_logging, get_logger
from infra.settings import aws_endpoint_url, load_settings
from infra.topology import Topology, TopologyError, check_imports
from ops.scaling.errors import ScalingError

log = get_logger("conveyor.cli")

UseAws = Annotated[
    bool,
    typer.Option(
        "--aws",
        help="Use the AWS account (or AWS_ENDPOINT_URL) the environment configures"
        " instead of starting the embedded emulator.",
    ),
]


class _StopRequested(ConveyorError):  # noqa: N818 - a request, not an error
    """SIGTERM, turned into an exception so the `with` blocks unwind and stop children."""


def _raise_stop(signum: int, frame: FrameType | None) -> None:
    raise _StopRequested


def _prepare() -> tuple[Topology, bool]:
    settings = load_settings()
    configure_logging(settings.logging.format, settings.logging.level)
    topology = load()
    try:
        check_imports(topology, source=str(settings.topology.queues_file), handlers=True)
    except TopologyError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(EXIT_USAGE) from None
    return topology, aws_endpoint_url() is None


def up(
    sample_workload: Annotated[
        bool, typer.Option(help="Submit the sample workload once the system is up.")
    ] = False,
    use_aws: UseAws = False,
    api_port: Annotated[int, typer.Option(help="Port of the producer API.")] = 8000,
    emulator_port: Annotated[
        int, typer.Option(help="Port of the embedded emulator (0: any free port).")
    ] = 0,
    autoscale: Annotated[
        bool, typer.Option(help="Also run the backlog autoscaler (conveyor workers autoscale).")
    ] = False,
) -> None:
    """Start the emulator (unless an AWS endpoint is configured), apply the topology,
    start the API and the worker pools; stay in the foreground until Ctrl-C.

    Worker nodes run under the local supervisor: replicas.min per pool until
    conveyor workers scale changes it, and a node that crashes is restarted.
    """
    topology, no_endpoint = _prepare()
    signal.signal(signal.SIGTERM, _raise_stop)
    try:
        with local_system(
            topology,
            use_emulator=no_endpoint and not use_aws,
            api_port=api_port,
            emulator_port=emulator_port,
            autoscale=autoscale,
        ) as system:
            typer.echo(f"conveyor is up: API {system.api_url} (OpenAPI at {system.api_url}/docs)")
            typer.echo(f"  scheduler (delayed jobs): {system.scheduler_health_url}")
            if system.emulator_url:
                typer.echo(
                    "to use the CLI from another shell (conveyor dlq list, infra plan …):\n"
                    f"  export AWS_ENDPOINT_URL={system.emulator_url} AWS_ACCESS_KEY_ID=testing"
                    " AWS_SECRET_ACCESS_KEY=testing AWS_DEFAULT_REGION=us-east-1"
                )
            if sample_workload:
                summary = Summary()
                submit_sample_workload(system.api_url, summary)
                typer.echo(
                    f"sample workload: {summary.accepted} jobs accepted, {summary.rejected}"
                    " rejected; watch the workers' job.* events below. Ctrl-C stops."
                )
            typer.echo(
                "worker pools: conveyor workers ls, conveyor workers scale POOL=N"
                f" (state: {system.state_dir})"
            )
            while not (failures := system.failures()):
                time.sleep(0.5)  # supervision poll; worker nodes are the supervisor's
            for failure in failures:
                log.error("system.failed", reason=failure)
            raise typer.Exit(EXIT_FAILED)
    except ScalingError as exc:
        fail(exc.message, EXIT_FAILED)
    except (KeyboardInterrupt, _StopRequested):
        typer.echo("conveyor stopped", err=True)


def demo(
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
    use_aws: UseAws = False,
    timeout_s: Annotated[
        float, typer.Option(help="Give up waiting for outcomes after this long.")
    ] = 180.0,
) -> None:
    """Bring the system up, submit the sample workload over HTTP, wait until every job
    succeeded or was dead-lettered, print a summary, stop everything."""
    topology, no_endpoint = _prepare()
    log_dir = Path(".conveyor") / f"demo-{datetime.now(UTC):%Y%m%dT%H%M%S}"
    log_dir.mkdir(parents=True, exist_ok=True)
    summary = Summary()
    signal.signal(signal.SIGTERM, _raise_stop)
    started = time.monotonic()
    with local_system(
        topology, use_emulator=no_endpoint and not use_aws, log_dir=log_dir
    ) as system:
        job_ids = submit_sample_workload(system.api_url, summary)
        worker_logs = [log_dir / f"worker-{pool}.log" for pool in topology.pools]
        finished = wait_for_outcomes(worker_logs, job_ids, summary, timeout_s=timeout_s)
        summary.elapsed_s = round(time.monotonic() - started, 2)
    if as_json:
        typer.echo(json.dumps({**summary.to_json(), "logs": str(log_dir)}, indent=2))
    else:
        typer.echo(summary.render())
        typer.echo(f"logs: {log_dir}")
    if not finished or summary.accepted == 0:
        raise typer.Exit(EXIT_FAILED)


def register(app: typer.Typer) -> None:
    """Add these commands to ``app``."""
    app.command()(up)
    app.command()(demo)
