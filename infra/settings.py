"""Every ``CONVEYOR_*`` environment variable, in one settings object, by section.

``load_settings()`` returns a :class:`Settings`; each section (``settings.api``,
``settings.worker`` …) is a pydantic-settings class read from the environment
when first used, so a bad value in one section does not break a command that
never reads it. A field's variable is its section's prefix plus the field name,
upper-cased (``ApiSettings.rate_per_s`` is ``CONVEYOR_API_RATE_PER_S``); the
field's docstring is its documentation (``docs/settings.md`` is generated from
them by ``docs/generate_settings.py``). An invalid value raises
:class:`SettingsError`, which names the variable.

This is also the one module that touches ``os.environ``: variables other tools
own (``AWS_*`` for boto3, ``KUBECONFIG``, ``PROMETHEUS_MULTIPROC_DIR`` …) are
read through the small functions at the end, and child processes get their
environment from :func:`child_environment`. AWS settings are deliberately *not*
duplicated as fields: boto3 already honours ``AWS_ENDPOINT_URL``, the region,
profile, credentials and ``AWS_MAX_ATTEMPTS``/``AWS_RETRY_MODE``.

Cheap to import (pydantic-settings and the error root only): the API and the
workers load it.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from functools import cached_property
from pathlib import Path
from typing import Any, ClassVar, Literal, Self

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from infra.errors import ConfigError

# -- defaults shared with the code that uses them ----------------------------------------
# Here rather than beside their users in producers/, so that infra never imports producers.

#: How long an idempotency key (and the job id it names) is remembered by default: 24 hours.
DEFAULT_RETENTION_S = 24 * 3600.0
#: How long a claim protects a key whose request has not settled it (it is
#: publishing, or crashed): longer than a publish can take with the API's timeouts.
DEFAULT_LEASE_S = 30.0
#: Fail fast when SNS is unreachable or frozen: a caller waits for an answer, and an
#: unpublished job must become a 503 quickly, not a hung request. Retries stay what
#: AWS_MAX_ATTEMPTS / AWS_RETRY_MODE say (botocore's standard mode otherwise).
SNS_CONNECT_TIMEOUT_S = 2.0
SNS_READ_TIMEOUT_S = 10.0
#: PublishBatch calls in flight at once for one request.
DEFAULT_PUBLISH_THREADS = 8
#: The CloudWatch namespace of the EMF job metrics (``CONVEYOR_METRICS_NAMESPACE``).
DEFAULT_METRICS_NAMESPACE = "Conveyor"
#: Where job metrics can go (``CONVEYOR_METRICS``).
METRIC_SINKS = ("prometheus", "emf")


class SettingsError(ConfigError, ValueError):
    """A variable holds a value its setting cannot take; ``str()`` names every such variable.

    A ValueError too, as pydantic's ValidationError (which it replaces) was.
    """


class Section(BaseSettings):
    """One group of settings: every field is ``<env_prefix><FIELD>`` in the environment."""

    # extra="ignore": other CONVEYOR_* variables belong to other sections.
    # use_attribute_docstrings: a field's docstring is its description (and its docs).
    model_config = SettingsConfigDict(
        env_prefix="CONVEYOR_", extra="ignore", use_attribute_docstrings=True
    )

    def __init__(self, **values: Any) -> None:
        try:
            super().__init__(**values)
        except ValidationError as exc:
            raise SettingsError(_describe(type(self), exc)) from None

    @classmethod
    def env_name(cls, field: str) -> str:
        """The environment variable of ``field`` (KeyError if there is no such field)."""
        if field not in cls.model_fields:
            raise KeyError(f"{cls.__name__} has no field {field!r}")
        return f"{cls.model_config.get('env_prefix', '')}{field}".upper()


def _describe(section: type[Section], exc: ValidationError) -> str:
    # The input is left out on purpose: some of these variables hold secrets (API keys).
    problems = []
    for error in exc.errors():
        loc = error["loc"]
        field = str(loc[0]) if loc else ""
        name = section.env_name(field) if field in section.model_fields else section.__name__
        problems.append(f"{name}: {error['msg']}")
    return "; ".join(problems)


class TopologySettings(Section):
    """Which topology every command, the API and the workers load."""

    queues_file: Path = Path("queues.yaml")
    """The topology file, the single source of truth for topics, queues and job types."""
    environment: str | None = None
    """Overrides ``environment`` in queues.yaml (e.g. one namespace per test run): every
    resource is named ``<project>-<environment>-<name>``."""
    import_project_dir: bool = True
    """Put the directory of queues.yaml on the import path (appended, so an installed
    package of the same name wins), so that handler and payload modules beside it
    (``mypkg/handlers.py``) import in every role without ``PYTHONPATH``; false: only
    what ``PYTHONPATH`` and the installed packages provide."""


class LoggingSettings(Section):
    """How every process logs (structlog, to stderr)."""

    model_config = SettingsConfigDict(env_prefix="CONVEYOR_LOG_")

    format: Literal["auto", "console", "json"] = "auto"
    """``console`` for people, ``json`` for machines; ``auto`` picks by whether stderr is
    a TTY."""
    level: str = "INFO"
    """The least severe level logged (a logging level name)."""


class WorkerSettings(Section):
    """A worker node (``conveyor worker``, ``conveyor workers up``)."""

    ack_flush_interval_s: float = 1.0
    """Workers send buffered deletes/visibility changes after at most this long (a batch
    of 10 goes at once, and everything goes at shutdown)."""
    worker_shutdown_grace_s: float = 30.0
    """A stopping worker lets running jobs finish this long, then cancels them."""
    worker_liveness_timeout_s: float = 120.0
    """A worker whose receive loop has not completed a turn this long exits non-zero."""
    worker_health_port: int | None = None
    """Port of a worker's /healthz and /metrics (unset: not served); ``--health-port``
    overrides it."""
    worker_health_host: str = "127.0.0.1"
    """Address the /healthz and /metrics endpoint binds: loopback by default; a container
    whose orchestrator probes it from outside sets ``0.0.0.0``."""
    metrics: str | None = None
    """Where workers (and the Lambda adapter) send their job metrics: ``prometheus`` (the
    /metrics endpoint), ``emf`` (CloudWatch Embedded Metric Format lines on stdout) or
    both, comma-separated (``prometheus,emf``). Unset: ``emf`` on AWS Lambda (no scrape
    target there), ``prometheus`` elsewhere."""
    metrics_namespace: str = Field(default=DEFAULT_METRICS_NAMESPACE, min_length=1, max_length=255)
    """The CloudWatch namespace of the EMF metrics (the exported alarms and dashboard
    assume the default)."""

    @field_validator("metrics")
    @classmethod
    def _known_sinks(cls, value: str | None) -> str | None:
        if value is None:
            return None
        sinks = {part.strip() for part in value.split(",") if part.strip()}
        unknown = sorted(sinks - set(METRIC_SINKS))
        if not sinks or unknown:
            raise ValueError(f"expected a comma-separated list of {', '.join(METRIC_SINKS)}")
        return ",".join(sorted(sinks))

    def metric_sinks(self) -> frozenset[str]:
        """The metric sinks in use: :attr:`metrics`, else the default of where this runs."""
        if self.metrics is not None:
            return frozenset(self.metrics.split(","))
        return frozenset({"emf"} if running_in_aws_lambda() else {"prometheus"})


class ApiSettings(Section):
    """The producer HTTP API (``conveyor api``)."""

    model_config = SettingsConfigDict(env_prefix="CONVEYOR_API_")

    auth: Literal["keys", "none"] = "keys"
    """``keys``: every request needs a configured key; ``none``: no authentication
    (logged as a warning at start)."""
    keys_file: Path | None = None
    """The YAML/JSON document of hashed keys the server accepts (see producers.auth)."""
    keys: str | None = Field(default=None, repr=False)
    """The same document inline (e.g. from a secret in the environment)."""
    rate_per_s: float = Field(default=200.0, gt=0)
    """Default per-key rate limit, in jobs per second."""
    burst: float = Field(default=1000.0, ge=1)
    """Default per-key bucket size, in jobs."""
    idempotency_retention_s: float = Field(default=DEFAULT_RETENTION_S, gt=0)
    """How long an idempotency key names its job."""
    idempotency_lease_s: float = Field(default=DEFAULT_LEASE_S, gt=0)
    """How long a claimed key protects an unsettled request (see producers.idempotency)."""
    publish_threads: int = Field(default=DEFAULT_PUBLISH_THREADS, ge=1, le=64)
    """PublishBatch calls in flight at once per request."""
    aws_connect_timeout_s: float = Field(default=SNS_CONNECT_TIMEOUT_S, gt=0, le=60)
    """Connect timeout of the API's SNS and DynamoDB calls: short, so that an unreachable
    AWS becomes a 503 quickly instead of a hung request. Attempts stay what
    AWS_MAX_ATTEMPTS says (botocore's standard retry mode: 3)."""
    aws_read_timeout_s: float = Field(default=SNS_READ_TIMEOUT_S, gt=0, le=120)
    """Read timeout of the API's SNS and DynamoDB calls (see the connect timeout)."""
    max_body_bytes: int | None = Field(default=None, ge=1)
    """Largest request body accepted (413 above it; unset: ``payloads.max_bytes`` of
    queues.yaml + 256 KiB). Read by ``conveyor api --max-body-bytes``."""
    body_timeout_s: float = Field(default=30.0, gt=0)
    """How long a client may take to send a request's body, from the first read of it:
    a slower body is cut off with 408 (a client trickling bytes cannot hold a request)."""
    header_timeout_s: float = Field(default=10.0, gt=0)
    """How long a client may take to send a request's headers (from the connection, or
    the end of the previous response): a slower one is disconnected."""
    max_header_bytes: int = Field(default=16 * 1024, ge=1024)
    """Largest request line and headers accepted (uvicorn's h11 limit; 400 above it)."""
    max_concurrency: int = Field(default=256, ge=1)
    """Connections (or requests in progress) a process takes at once; above it, new
    requests are answered 503 (uvicorn's ``limit_concurrency``)."""
    keep_alive_timeout_s: int = Field(default=5, ge=1)
    """How long an idle keep-alive connection is kept open between requests."""
    ready_cache_s: float = Field(default=5.0, ge=0)
    """How long ``/readyz`` reuses a successful check: a ready process calls SNS at most
    once per topic per this many seconds, however often it is probed (a failed check is
    shared by the calls waiting for it, then probed again); 0: no cache."""


class ClientSettings(Section):
    """The CLI's client of the producer API (``conveyor enqueue``, ``conveyor jobs``)."""

    api_url: str = "http://127.0.0.1:8000"
    """Where the CLI and the Python client find the producer API; ``--api-url`` overrides
    it. Unset: the API of the running ``conveyor up`` (``.conveyor/up.json``), else
    this default."""
    client_api_key: str | None = Field(default=None, repr=False)
    """The API key the CLI sends (``Authorization: Bearer``); ``--api-key`` overrides it.
    Not to be confused with ``CONVEYOR_API_KEYS``, the server's document of hashed keys."""
    api_key: str | None = Field(default=None, repr=False)
    """Deprecated name of ``CONVEYOR_CLIENT_API_KEY`` (one letter from the server's
    ``CONVEYOR_API_KEYS``): still used, with a DeprecationWarning, when the new name is
    not set."""

    #: The warning, also printed by the CLI on stderr.
    DEPRECATED_KEY_WARNING: ClassVar[str] = (
        "CONVEYOR_API_KEY is deprecated: set CONVEYOR_CLIENT_API_KEY instead"
        " (CONVEYOR_API_KEYS, with an S, is the server's keys document)"
    )

    @model_validator(mode="after")
    def _resolve_key(self) -> Self:
        # An empty value counts as unset, as it did when the CLI read CONVEYOR_API_KEY itself.
        if not self.client_api_key:
            self.client_api_key = None
            if self.api_key:
                warnings.warn(self.DEPRECATED_KEY_WARNING, DeprecationWarning, stacklevel=2)
                self.client_api_key = self.api_key
        return self


class AwsSettings(Section):
    """AWS beyond what boto3 reads itself (region, endpoint, credentials: ``AWS_*``)."""

    # An empty value counts as unset (these were read with `os.environ.get(...) or ...`).
    model_config = SettingsConfigDict(env_ignore_empty=True)

    aws_account_id: str | None = None
    """The AWS account ARNs are built with; unset: asked of STS once per endpoint and
    credentials."""


class EmulatorSettings(Section):
    """The embedded AWS emulator (``conveyor emulator``, ``conveyor up``)."""

    model_config = SettingsConfigDict(env_ignore_empty=True)

    emulator_fixes: str = "all"
    """The fixes applied to moto: ``all``, ``none`` or a comma-separated list of names
    (checked by infra.emulator.fixes); ``--fixes`` overrides it."""


class ScalingSettings(Section):
    """Worker scaling: where replicas live and how to reach them (``conveyor workers``)."""

    model_config = SettingsConfigDict(env_ignore_empty=True)

    scaling_backend: str = "local"
    """Where pool replicas live: ``local`` (this machine's supervisor), ``ecs`` or
    ``kubernetes``. Read by the ``--backend`` option of ``workers`` and ``status``."""
    state_dir: Path | None = None
    """Base directory of the local supervisor's state (unset: ``.conveyor/state``, or
    ``<log dir>/state`` under ``conveyor up``)."""
    ecs_cluster: str | None = None
    """The ECS cluster of the worker services (unset: ``<project>-<environment>-workers``,
    as the CloudFormation export names it)."""
    k8s_namespace: str | None = None
    """The Kubernetes namespace of the worker Deployments (unset: the kubeconfig
    context's, else ``default``)."""
    k8s_context: str | None = None
    """The kubeconfig context (unset: the current one)."""


class SchedulingSettings(Section):
    """Delayed jobs, cron schedules and the scheduler role (``conveyor scheduler``)."""

    model_config = SettingsConfigDict(env_prefix="CONVEYOR_SCHEDULING_")

    max_delay_s: float = Field(30 * 86400.0, gt=0, le=366 * 86400.0)
    """The longest delay a job may ask for (``delay_s`` or ``not_before``); longer is a
    422 that names the limit. Default 30 days, at most one year."""
    timer_retention_s: float = Field(7 * 86400.0, ge=3600.0)
    """How long after its due time a delayed job that was never published is kept in
    the timer table before DynamoDB's time to live deletes it (a safety net for a
    scheduler that is down that long; a running one publishes jobs when due)."""
    poll_interval_s: float = Field(0.5, gt=0, le=60.0)
    """How often a scheduler asks the timer table for due jobs (and runs the cron
    schedules' tick): a due job is published on average half of this late."""
    lease_s: float = Field(30.0, ge=1.0, le=3600.0)
    """How long a scheduler's claim on a due job lasts: a scheduler killed between claim
    and publish leaves the job to another replica this long after the claim. Longer
    than a publish takes (the SNS read timeout)."""
    claim_threads: int = Field(8, ge=1, le=64)
    """Conditional writes (claims) and publishes a scheduler runs at once."""
    max_jobs_per_turn: int = Field(500, ge=1, le=10_000)
    """The most due jobs one scheduler claims in one turn (the next turn takes the rest)."""
    health_port: int | None = None
    """Port of the scheduler's /healthz and /metrics (unset: not served);
    ``conveyor scheduler --health-port`` overrides it."""
    health_host: str = "127.0.0.1"
    """Address the scheduler's /healthz and /metrics bind (``0.0.0.0`` in a container
    probed from outside)."""


class ConsoleSettings(Section):
    """The web console (``conveyor console``); who may log in is the API's keys document
    (``CONVEYOR_API_KEYS_FILE`` / ``CONVEYOR_API_KEYS``, scopes ``viewer`` and ``operator``)."""

    model_config = SettingsConfigDict(env_prefix="CONVEYOR_CONSOLE_", env_ignore_empty=True)

    session_secret: str | None = Field(default=None, repr=False)
    """The key that signs session cookies and CSRF tokens (at least 32 characters). Unset:
    a random one per process, so restarting the console logs everyone out; set it to
    keep sessions across restarts or to run several console replicas."""
    session_max_age_s: float = Field(default=12 * 3600.0, gt=0)
    """How long a login lasts."""
    aws_timeout_s: float = Field(default=5.0, gt=0, le=60)
    """The longest a page waits for AWS: a slower answer shows the page with an error
    banner instead."""
    sample_interval_s: float = Field(default=10.0, ge=1.0)
    """How often the console samples queue depths and worker nodes' job counts for the
    overview's charts and last-hour counts (kept in memory, one hour)."""


class LocalSettings(Section):
    """The system on this machine: ``conveyor up`` and how other shells find it."""

    use_aws: bool = False
    """``conveyor up``/``demo`` use the AWS (or ``AWS_ENDPOINT_URL``) the environment
    configures instead of starting the embedded emulator, as ``--aws`` does. Without it,
    an exported ``AWS_ENDPOINT_URL`` makes ``conveyor up`` stop with one line."""
    discovery: bool = True
    """Commands and the Python client find a running ``conveyor up`` through
    ``.conveyor/up.json`` beside queues.yaml when no AWS endpoint, credentials or API URL
    are set; false: never (explicit settings always win either way)."""


class Settings:
    """Every section; each is read from the environment on first use, then kept."""

    @cached_property
    def topology(self) -> TopologySettings:
        return TopologySettings()

    @cached_property
    def logging(self) -> LoggingSettings:
        return LoggingSettings()

    @cached_property
    def worker(self) -> WorkerSettings:
        return WorkerSettings()

    @cached_property
    def api(self) -> ApiSettings:
        return ApiSettings()

    @cached_property
    def client(self) -> ClientSettings:
        return ClientSettings()

    @cached_property
    def aws(self) -> AwsSettings:
        return AwsSettings()

    @cached_property
    def emulator(self) -> EmulatorSettings:
        return EmulatorSettings()

    @cached_property
    def scaling(self) -> ScalingSettings:
        return ScalingSettings()

    @cached_property
    def scheduling(self) -> SchedulingSettings:
        return SchedulingSettings()

    @cached_property
    def local(self) -> LocalSettings:
        return LocalSettings()

    @cached_property
    def console(self) -> ConsoleSettings:
        return ConsoleSettings()


#: Every section by its attribute on :class:`Settings`, in the order the docs list them.
SECTIONS: Mapping[str, type[Section]] = {
    "topology": TopologySettings,
    "logging": LoggingSettings,
    "worker": WorkerSettings,
    "api": ApiSettings,
    "client": ClientSettings,
    "aws": AwsSettings,
    "emulator": EmulatorSettings,
    "scaling": ScalingSettings,
    "scheduling": SchedulingSettings,
    "local": LocalSettings,
    "console": ConsoleSettings,
}


def load_settings() -> Settings:
    """The settings as the environment says now (not cached: tests change it)."""
    return Settings()


# -- the process environment beyond CONVEYOR_* --------------------------------------------

#: Variables other tools own that Conveyor reads or sets, for docs/settings.md.
OTHER_VARIABLES: Mapping[str, str] = {
    "AWS_ENDPOINT_URL": "read by boto3; Conveyor also keys its cache of account ids by it;"
    " when set, commands do not use the running `conveyor up`'s emulator (discovery), and"
    " `conveyor up` stops unless `--aws` says to use it",
    "AWS_PROFILE": "read by boto3; when set (as when AWS_ACCESS_KEY_ID is), commands do not"
    " use the running `conveyor up`'s emulator (discovery)",
    "AWS_ACCESS_KEY_ID": "read by boto3; Conveyor also keys its cache of account ids by it",
    "AWS_RETRY_MODE": "read by botocore; when unset, Conveyor's clients use the `standard` mode",
    "AWS_LAMBDA_FUNCTION_NAME": "set by AWS Lambda; when present, the Lambda adapter"
    " configures logging and writes ledger records inline; job metrics default to EMF"
    " (`CONVEYOR_METRICS`)",
    "KUBECONFIG": "the kubeconfig file of the `kubernetes` scaling backend"
    " (default `~/.kube/config`)",
    "KUBERNETES_SERVICE_HOST": "set inside a Kubernetes pod; the `kubernetes` backend then"
    " falls back to the pod's service account",
    "PROMETHEUS_MULTIPROC_DIR": "prometheus_client's multiprocess directory; a worker node"
    " sets it (a fresh temporary directory) unless the supervisor gave it one",
    "CONVEYOR_NODE_ID": "set by the supervisor for each worker node it starts"
    " (`<pool>-<n>`); Conveyor does not read it",
    "CONVEYOR_HEALTHCHECK_URL": "read by the container image's HEALTHCHECK, not by Python",
}


def child_environment(**overrides: str) -> dict[str, str]:
    """This process's environment plus ``overrides``, for a child process (workers, API …)."""
    return {**os.environ, **overrides}


def set_environment(values: Mapping[str, str]) -> None:
    """Set variables in this process's environment (boto3 and prometheus_client read them)."""
    os.environ.update(values)


def aws_endpoint_url() -> str | None:
    """``AWS_ENDPOINT_URL`` (the emulator, when set), None when unset or empty."""
    return os.environ.get("AWS_ENDPOINT_URL") or None


#: The variables that, when set, say which AWS to use: local discovery then leaves AWS alone.
AWS_TARGET_VARIABLES = ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_PROFILE")


def aws_target_variables() -> list[str]:
    """Which of :data:`AWS_TARGET_VARIABLES` are set (non-empty) in this environment."""
    return [name for name in AWS_TARGET_VARIABLES if os.environ.get(name)]


def aws_access_key_id() -> str | None:
    """``AWS_ACCESS_KEY_ID`` as the environment has it (None when unset)."""
    return os.environ.get("AWS_ACCESS_KEY_ID")


def aws_retry_mode_is_set() -> bool:
    """Whether ``AWS_RETRY_MODE`` is set (then botocore's choice stands, not ours)."""
    return "AWS_RETRY_MODE" in os.environ


def running_in_aws_lambda() -> bool:
    """Whether this process runs in AWS Lambda (which sets ``AWS_LAMBDA_FUNCTION_NAME``)."""
    return bool(os.environ.get("AWS_LAMBDA_FUNCTION_NAME"))


def kubeconfig_path() -> str:
    """The kubeconfig file, as kubectl finds it: ``KUBECONFIG``, else ``~/.kube/config``."""
    return os.path.expanduser(os.environ.get("KUBECONFIG") or "~/.kube/config")


def in_kubernetes_cluster() -> bool:
    """Whether this process runs in a Kubernetes pod (``KUBERNETES_SERVICE_HOST`` is set)."""
    return bool(os.environ.get("KUBERNETES_SERVICE_HOST"))


def prometheus_multiproc_dir() -> str | None:
    """``PROMETHEUS_MULTIPROC_DIR``, None when unset or empty."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


#: The standard OpenTelemetry variables that turn tracing on (infra/tracing.py).
OTEL_ENABLING_VARIABLES = (
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_TRACES_EXPORTER",
)


def otel_variables() -> dict[str, str]:
    """The ``OTEL_*`` variables set (non-empty) in this environment (the OTel SDK reads them)."""
    return {name: value for name, value in os.environ.items() if name.startswith("OTEL_") and value}
