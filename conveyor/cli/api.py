"""``conveyor api`` (serve the API; ``api keys``) and ``conveyor enqueue`` (a job, or a file)."""

from __future__ import annotations

import json
import sys
import warnings
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from conveyor.cli import common
from conveyor.cli.batch import describe, enqueue_file
from infra.discovery import is_loopback, resolve_api_url
from infra.durations import parse_duration_s
from infra.errors import exit_code
from infra.logs import configure_logging, get_logger
from infra.net import port_in_use
from infra.settings import ApiSettings, SettingsError, load_settings
from infra.topology import Topology, TopologyError, check_imports, payload_model
from producers.auth import ApiKey, KeysError, generate_key, hash_key, load_keys
from producers.client import NO_RETRY, Client, EnqueueError, Retry

api_app = typer.Typer(
    help="Serve the producer HTTP API (OpenAPI docs at /docs); `api keys` makes API keys.",
    invoke_without_command=True,
    no_args_is_help=False,
)
keys_app = typer.Typer(help="API keys: create one, or hash one you have.", no_args_is_help=True)
api_app.add_typer(keys_app, name="keys")

ApiUrl = Annotated[
    str | None,
    typer.Option(
        help="The producer API (default: CONVEYOR_API_URL, else the running `conveyor up`'s,"
        " else http://127.0.0.1:8000).",
        show_default=False,
    ),
]
ApiKeyOption = Annotated[
    str | None,
    typer.Option(
        "--api-key", help="The API key (default: CONVEYOR_CLIENT_API_KEY).", show_default=False
    ),
]
TimeoutS = Annotated[float, typer.Option(help="Seconds to wait for each answer.", min=0.1)]
RetryForS = Annotated[
    float,
    typer.Option(
        help="Seconds to keep retrying a 503 (not published) or 429 (rate limit), waiting"
        " what Retry-After says; 0: no retry.",
        min=0,
    ),
]


#: Warnings already printed by :func:`api_client` (as Python's "default" action, once each).
_WARNED: set[str] = set()


def api_client(
    api_url: str | None, api_key: str | None, timeout_s: float, retry_for_s: float = 30.0
) -> Client:
    """A client for the API named by the options, or by CONVEYOR_API_URL / CONVEYOR_CLIENT_API_KEY.

    The deprecated CONVEYOR_API_KEY still works in place of the latter, with a warning
    on stderr, once per process: Python hides a DeprecationWarning outside ``__main__``,
    and stdout is the answer scripts read (a job id), so the CLI prints its text itself.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", DeprecationWarning)
        settings = load_settings().client
    key = api_key or settings.client_api_key
    if not api_key:  # the environment's key is the one used: its warnings matter
        for message in {str(warning.message) for warning in caught} - _WARNED:
            _WARNED.add(message)
            typer.echo(f"conveyor: warning: {message}", err=True)
    retry = Retry(max_wait_s=retry_for_s) if retry_for_s > 0 else NO_RETRY
    url, source = resolve_api_url(api_url)
    _API_SOURCE[url.rstrip("/")] = source
    # A local API that refuses the connection is not there: say so at once, not after
    # the retry budget (503s and 429s are still retried as before).
    return Client(url, key, timeout_s=timeout_s, retry=retry, retry_refused=not is_loopback(url))


#: Where each API URL this process used came from (``--api-url``, the discovery file …).
_API_SOURCE: dict[str, str] = {}


def describe_failure(exc: EnqueueError, doing: str = "enqueue failed") -> str:
    """One line for a failed request; an API that did not answer names where its URL
    came from, so the user knows which setting to change."""
    message = describe(exc).replace("enqueue failed", doing, 1)
    if exc.status_code is None and "cannot reach" in exc.detail:
        for url, source in _API_SOURCE.items():
            if url in exc.detail:
                hint = " is `conveyor up` running?" if is_loopback(url) else ""
                message += f" (the URL is from {source};{hint} --api-url or"
                message += " CONVEYOR_API_URL name another)"
                break
    return message


def require_keys(settings: ApiSettings, topology: Topology) -> list[ApiKey] | None:
    """The API keys to require, None when CONVEYOR_API_AUTH=none; exit 2 when none are set."""
    if settings.auth == "none":
        return None
    try:
        keys = load_keys(
            path=settings.keys_file, inline=settings.keys, job_types=topology.job_types
        )
    except KeysError as exc:
        common.fail(str(exc), common.EXIT_USAGE)
    if not keys:
        common.fail(
            "the producer API needs API keys: set CONVEYOR_API_KEYS_FILE (or CONVEYOR_API_KEYS)"
            " to a keys document (`conveyor api keys create NAME` makes one), or set"
            " CONVEYOR_API_AUTH=none to serve without authentication",
            common.EXIT_USAGE,
        )
    return keys


def _check_group_fields(topology: Topology, source: str) -> None:
    """A declared ``message_group_field`` must be a field of the job type's payload model."""
    for name, jt in sorted(topology.job_types.items()):
        field_name = jt.message_group_field
        if field_name is not None and field_name not in payload_model(topology, name).model_fields:
            common.fail(
                f"{source}: job_types.{name}.message_group_field: '{field_name}' is not a field"
                f" of {jt.payload}",
                common.EXIT_USAGE,
            )


@api_app.callback()
def api(
    ctx: typer.Context,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.", min=0, max=65535)] = 8000,
    max_body_bytes: Annotated[
        int | None,
        typer.Option(
            help="Largest request body accepted (413 above it; default: payloads.max_bytes"
            " of queues.yaml + 256 KiB).",
            envvar=ApiSettings.env_name("max_body_bytes"),
            min=1,
            show_default=False,
        ),
    ] = None,
) -> None:
    """Serve the producer HTTP API (OpenAPI docs at /docs).

    API keys are required (CONVEYOR_API_KEYS_FILE or CONVEYOR_API_KEYS) unless
    CONVEYOR_API_AUTH=none; `conveyor up` on the embedded emulator runs without.
    """
    if ctx.invoked_subcommand is not None:
        return
    topology = common.load()
    settings = load_settings()
    source = str(settings.topology.queues_file)
    try:
        # The API validates payloads but never runs handlers: only the models must import.
        check_imports(topology, source=source, handlers=False)
    except TopologyError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(common.EXIT_USAGE) from None
    _check_group_fields(topology, source)
    try:
        api_settings = settings.api
    except SettingsError as exc:  # names every bad CONVEYOR_API_* variable
        common.fail(str(exc), common.EXIT_USAGE)
    keys = require_keys(api_settings, topology)
    if port and port_in_use(port, host):
        common.fail(
            f"port {port} is in use: stop what listens there, or pass --port with another",
            common.EXIT_FAILED,
        )
    configure_logging(settings.logging.format, settings.logging.level)
    log = get_logger("conveyor.api")
    if keys is None:
        log.warning(
            "authentication is off (CONVEYOR_API_AUTH=none): anyone who reaches this port"
            " can enqueue jobs"
        )
    else:
        log.info("authentication on", keys=sorted(k.name for k in keys))
    # Imported here: `conveyor enqueue` and `--help` need neither FastAPI nor uvicorn.
    from producers.serve import serve  # noqa: PLC0415

    serve(
        topology,
        host=host,
        port=port,
        max_body_bytes=max_body_bytes,
        keys=keys,
        settings=api_settings,
    )


@keys_app.command("create")
def keys_create(
    name: Annotated[str, typer.Argument(help="The key's name (logs, idempotency scope).")],
    job_type: Annotated[
        list[str] | None,
        typer.Option("--job-type", help="A job type the key may enqueue (repeat; default: all)."),
    ] = None,
    rate_per_s: Annotated[
        float | None, typer.Option(help="Jobs per second (default: CONVEYOR_API_RATE_PER_S).")
    ] = None,
) -> None:
    """Make a new API key: print it once (stderr) and its keys-file entry (stdout)."""
    key = generate_key()
    entry: dict[str, Any] = {"name": name, "sha256": hash_key(key)}
    if job_type:
        entry["job_types"] = sorted(set(job_type))
    if rate_per_s is not None:
        entry["rate_per_s"] = rate_per_s
    # Validated like the API will read it, so a bad name fails now, not at start.
    try:
        load_keys(path=None, inline=json.dumps({"keys": [entry]}))
    except KeysError as exc:
        common.fail(str(exc).removeprefix("CONVEYOR_API_KEYS: "), common.EXIT_USAGE)
    typer.echo(f"API key (shown once, give it to the client): {key}", err=True)
    typer.echo("# add to the keys file (CONVEYOR_API_KEYS_FILE), under `keys:`")
    typer.echo(f"- {json.dumps(entry)}")


@keys_app.command("hash")
def keys_hash(
    key: Annotated[str, typer.Argument(help="The API key; - reads it from stdin.")],
) -> None:
    """Print the sha256 of a key, as the keys file stores it."""
    if key == "-":
        key = sys.stdin.readline().strip()
    typer.echo(hash_key(key))


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
        common.fail(f"the payload is not valid JSON: {exc}", common.EXIT_USAGE)
    if not isinstance(payload, dict):
        common.fail("the payload must be a JSON object", common.EXIT_USAGE)
    return payload


def enqueue(
    job_type: Annotated[
        str | None,
        typer.Argument(
            metavar="JOB_TYPE", help="The job type, e.g. image.resize.", show_default=False
        ),
    ] = None,
    payload_json: Annotated[
        str | None,
        typer.Argument(
            metavar="PAYLOAD_JSON",
            help="The payload (same as --data).",
            show_default=False,
        ),
    ] = None,
    *,
    data: Annotated[
        str | None,
        typer.Option(
            "--data",
            "-d",
            help="The payload: a JSON object, @FILE to read it from a file, or - for stdin.",
            show_default=False,
        ),
    ] = None,
    batch: Annotated[
        Path | None,
        typer.Option(
            help='A JSON Lines file of jobs, one {"type", "data", "idempotency_key"?}'
            " per line (- for stdin); sent in batches of --batch-size.",
            show_default=False,
        ),
    ] = None,
    batch_size: Annotated[int, typer.Option(help="Jobs per request.", min=1, max=500)] = 500,
    api_url: ApiUrl = None,
    api_key: ApiKeyOption = None,
    idempotency_key: Annotated[
        str | None,
        typer.Option(help="The same key within the retention window is the same job."),
    ] = None,
    timeout_s: TimeoutS = 30.0,
    retry_for_s: RetryForS = 30.0,
    delay: Annotated[
        str | None,
        typer.Option(
            help="Publish the job(s) this long from now: seconds, or 30s, 10m, 2h, 3d"
            " (up to the API's CONVEYOR_SCHEDULING_MAX_DELAY_S).",
            show_default=False,
        ),
    ] = None,
    at: Annotated[
        str | None,
        typer.Option(
            help="Publish the job(s) at this time: RFC 3339 with a UTC offset, e.g."
            " 2026-12-24T18:00:00+01:00.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Submit one job (JOB_TYPE --data JSON) or a batch file (--batch FILE.jsonl).

    Prints the job id (a delayed job's due time goes to stderr); with --batch, a
    progress bar, then every refused line with its line number, and exits 1 if any
    job was not accepted.
    """
    when = _delay_option(delay, at)
    if batch is not None:
        if job_type is not None or data is not None or payload_json is not None:
            common.fail("--batch takes no JOB_TYPE or payload", common.EXIT_USAGE)
        with api_client(api_url, api_key, timeout_s, retry_for_s) as client:
            failed = enqueue_file(client, batch, batch_size=batch_size, delay=when)
        raise typer.Exit(common.EXIT_FAILED if failed else 0)
    if job_type is None:
        common.fail("give a JOB_TYPE and --data, or --batch FILE", common.EXIT_USAGE)
    if data is not None and payload_json is not None:
        common.fail("give the payload once: PAYLOAD_JSON or --data", common.EXIT_USAGE)
    payload = _read_payload(data if data is not None else payload_json or "{}")
    try:
        with api_client(api_url, api_key, timeout_s, retry_for_s) as client:
            result = client.enqueue(job_type, payload, idempotency_key=idempotency_key, **when)
    except EnqueueError as exc:
        common.fail(describe_failure(exc), exit_code(exc))
    typer.echo(result.id)
    if result.due_at is not None:
        typer.echo(f"scheduled for {result.due_at.isoformat()}", err=True)


def _delay_option(delay: str | None, at: str | None) -> dict[str, Any]:
    """``--delay``/``--at`` as the client's ``delay_s``/``not_before``; exit 2 if unreadable."""
    if delay is not None and at is not None:
        common.fail("give --delay or --at, not both", common.EXIT_USAGE)
    if delay is not None:
        try:
            return {"delay_s": parse_duration_s(delay)}
        except ValueError as exc:
            common.fail(f"--delay: {exc}", common.EXIT_USAGE)
    if at is not None:
        try:
            when = datetime.fromisoformat(at)
        except ValueError:
            common.fail(
                f"--at: {at!r} is not an RFC 3339 time (e.g. 2026-12-24T18:00:00+01:00)",
                common.EXIT_USAGE,
            )
        if when.tzinfo is None:
            common.fail("--at: the time needs a UTC offset (e.g. Z or +01:00)", common.EXIT_USAGE)
        return {"not_before": when}
    return {}


def register(app: typer.Typer) -> None:
    """Add ``api`` and ``enqueue`` to the ``conveyor`` command."""
    app.add_typer(api_app, name="api")
    app.command("enqueue")(enqueue)
