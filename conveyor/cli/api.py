"""``conveyor api`` (serve the producer API) and ``conveyor enqueue`` (submit one job)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from conveyor.cli import common
from infra.logs import configure_logging
from infra.settings import load_settings
from infra.topology import TopologyError, check_imports
from producers.client import ConveyorClient, EnqueueError


def api(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.", min=0, max=65535)] = 8000,
    max_body_bytes: Annotated[
        int | None,
        typer.Option(
            help="Largest request body accepted (413 above it; default: payloads.max_bytes"
            " of queues.yaml + 256 KiB).",
            envvar="CONVEYOR_API_MAX_BODY_BYTES",
            min=1,
        ),
    ] = None,
) -> None:
    """Serve the producer HTTP API (OpenAPI docs at /docs)."""
    topology = common.load()
    settings = load_settings()
    try:
        # The API validates payloads but never runs handlers: only the models must import.
        check_imports(topology, source=str(settings.queues_file), handlers=False)
    except TopologyError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(common.EXIT_USAGE) from None
    configure_logging(settings.log_format, settings.log_level)
    # Imported here: `conveyor enqueue` and `--help` need neither FastAPI nor uvicorn.
    from producers.serve import serve  # noqa: PLC0415

    serve(topology, host=host, port=port, max_body_bytes=max_body_bytes)


def _read_payload(text: str) -> dict[str, Any]:
    """The payload from its JSON text, ``@file`` or ``-`` (stdin); exit 2 if it is not an object."""
    if text == "-":
        text = sys.stdin.read()
    elif text.startswith("@"):
        try:
            text = Path(text[1:]).read_text(encoding="utf-8")
        except OSError as exc:
            common.fail(f"cannot read the payload file: {exc}", common.EXIT_USAGE)
    try:
        payload = json.loads(text)
    except ValueError as exc:
        common.fail(f"PAYLOAD_JSON is not valid JSON: {exc}", common.EXIT_USAGE)
    if not isinstance(payload, dict):
        common.fail("PAYLOAD_JSON must be a JSON object", common.EXIT_USAGE)
    return payload


def enqueue(
    job_type: Annotated[
        str, typer.Argument(metavar="JOB_TYPE", help="The job type, e.g. image.resize.")
    ],
    payload_json: Annotated[
        str,
        typer.Argument(
            metavar="PAYLOAD_JSON",
            help="The payload as a JSON object, @FILE to read it from a file, or - for stdin.",
        ),
    ],
    api_url: Annotated[
        str | None,
        typer.Option(help="The producer API (default: CONVEYOR_API_URL or http://127.0.0.1:8000)."),
    ] = None,
    idempotency_key: Annotated[
        str | None, typer.Option(help="Recorded on the job as its idempotency key.")
    ] = None,
    timeout_s: Annotated[float, typer.Option(help="Seconds to wait for the API.", min=0.1)] = 10.0,
) -> None:
    """Submit one job through the producer API and print its id."""
    payload = _read_payload(payload_json)
    url = api_url or load_settings().api_url
    try:
        with ConveyorClient(url, timeout_s=timeout_s) as client:
            result = client.enqueue(job_type, payload, idempotency_key=idempotency_key)
    except EnqueueError as exc:
        if exc.status_code is None:
            common.fail(f"enqueue failed: {exc.detail}", common.EXIT_FAILED)
        retry = f" (retry after {exc.retry_after_s:g}s)" if exc.retry_after_s is not None else ""
        usage = 400 <= exc.status_code < 500 and exc.status_code != 429
        code = common.EXIT_USAGE if usage else common.EXIT_FAILED
        common.fail(f"enqueue failed: {exc.status_code}: {exc.detail}{retry}", code)
    typer.echo(result.id)


def register(app: typer.Typer) -> None:
    """Add ``api`` and ``enqueue`` to the ``conveyor`` command."""
    app.command("api")(api)
    app.command("enqueue")(enqueue)
