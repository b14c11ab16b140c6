"""The one place that builds boto3 clients.

Everything else asks here, so endpoint, region, credentials and retry policy
are decided once. boto3 itself reads the standard settings — ``AWS_ENDPOINT_URL``
(and ``AWS_ENDPOINT_URL_<SERVICE>``), ``AWS_REGION``/``AWS_DEFAULT_REGION``,
``AWS_PROFILE``, the credential chain, ``AWS_MAX_ATTEMPTS``, ``AWS_RETRY_MODE`` —
so the same code talks to real AWS or to the embedded emulator.
"""

from __future__ import annotations

import os
import threading
from collections import Counter
from typing import TYPE_CHECKING, Any, Literal, overload

import boto3
from botocore.config import Config

from infra import settings

if TYPE_CHECKING:
    from mypy_boto3_cloudwatch import CloudWatchClient
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_ecs import ECSClient
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sns import SNSClient
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_sts import STSClient

Service = Literal["sqs", "sns", "sts", "dynamodb", "ecs", "s3", "cloudwatch"]

#: Used when no region is configured anywhere: the emulator accepts any region,
#: and failing with botocore's NoRegionError would be a poor first experience.
DEFAULT_REGION = "us-east-1"

_lock = threading.Lock()
_clients: dict[tuple[int, str, str | None, float | None, float | None], Any] = {}
#: Serialises client creation: a boto3 session is not safe to build clients from
#: in several threads at once.
_build_lock = threading.Lock()
#: The boto3 session every client is built from, inherited by forked processes: its
#: loader keeps the parsed service models (megabytes each), so a worker node's pool
#: children share the node's copy instead of each parsing its own.
_session: list[boto3.session.Session] = []
#: Bumped by reset_clients(), so a client built across a reset is not cached.
_generation = [0]
_requests: Counter[str] = Counter()


def _count_request(event_name: str, **_kwargs: Any) -> None:
    # "before-sign.sqs.DeleteMessageBatch" -> "sqs.DeleteMessageBatch". Signing happens
    # once per HTTP attempt, including the calls kombu sends through its own async
    # HTTP client with this client's signer, so retries are counted too.
    _, service, operation = event_name.split(".", 2)
    with _lock:
        _requests[f"{service}.{operation}"] += 1


def request_counts() -> dict[str, int]:
    """AWS requests this process signed, by ``service.Operation`` (``sqs.ReceiveMessage`` …)."""
    with _lock:
        return dict(_requests)


def _build(
    service: Service,
    region: str | None,
    connect_timeout_s: float | None = None,
    read_timeout_s: float | None = None,
) -> Any:
    with _build_lock:
        if not _session:
            _session.append(boto3.session.Session())
        session = _session[0]
        built = session.client(
            service,
            region_name=region or session.region_name or DEFAULT_REGION,
            config=_config(connect_timeout_s, read_timeout_s),
        )
    built.meta.events.register("before-sign", _count_request)
    return built


def _config(connect_timeout_s: float | None = None, read_timeout_s: float | None = None) -> Config:
    # "standard" retries (3 attempts) unless AWS_MAX_ATTEMPTS / AWS_RETRY_MODE say
    # otherwise; botocore reads those variables itself when we leave them unset here.
    # The default read timeout must outlast a 20 s long poll; request/response callers
    # (the producer API) ask for shorter ones so an unreachable AWS fails fast.
    retries: dict[str, Any] = {}
    if not settings.aws_retry_mode_is_set():
        retries["mode"] = "standard"
    return Config(
        connect_timeout=5 if connect_timeout_s is None else connect_timeout_s,
        read_timeout=30 if read_timeout_s is None else read_timeout_s,
        retries=retries,  # type: ignore[arg-type]
        max_pool_connections=32,
    )


def region_name() -> str:
    """The configured region, or :data:`DEFAULT_REGION`."""
    return boto3.session.Session().region_name or DEFAULT_REGION


@overload
def client(
    service: Literal["sqs"],
    *,
    region: str | None = None,
    connect_timeout_s: float | None = None,
    read_timeout_s: float | None = None,
) -> SQSClient: ...
@overload
def client(
    service: Literal["sns"],
    *,
    region: str | None = None,
    connect_timeout_s: float | None = None,
    read_timeout_s: float | None = None,
) -> SNSClient: ...
@overload
def client(
    service: Literal["sts"],
    *,
    region: str | None = None,
    connect_timeout_s: float | None = None,
    read_timeout_s: float | None = None,
) -> STSClient: ...
@overload
def client(
    service: Literal["dynamodb"],
    *,
    region: str | None = None,
    connect_timeout_s: float | None = None,
    read_timeout_s: float | None = None,
) -> DynamoDBClient: ...
@overload
def client(
    service: Literal["ecs"],
    *,
    region: str | None = None,
    connect_timeout_s: float | None = None,
    read_timeout_s: float | None = None,
) -> ECSClient: ...
@overload
def client(
    service: Literal["cloudwatch"],
    *,
    region: str | None = None,
    connect_timeout_s: float | None = None,
    read_timeout_s: float | None = None,
) -> CloudWatchClient: ...
@overload
def client(
    service: Literal["s3"],
    *,
    region: str | None = None,
    connect_timeout_s: float | None = None,
    read_timeout_s: float | None = None,
) -> S3Client: ...


def client(
    service: Service,
    *,
    region: str | None = None,
    connect_timeout_s: float | None = None,
    read_timeout_s: float | None = None,
) -> Any:
    """A shared, thread-safe boto3 client for ``service``.

    Clients are cached per process: a client inherited through ``fork()`` (Celery's
    prefork pool) would share its connection pool with the parent, so a child
    builds its own. ``connect_timeout_s``/``read_timeout_s`` replace the defaults
    (5 s, 30 s) for callers that must fail fast; each combination is its own client.
    """
    key = (os.getpid(), service, region, connect_timeout_s, read_timeout_s)
    with _lock:
        found = _clients.get(key)
        generation = _generation[0]
    if found is None:
        found = _build(service, region, connect_timeout_s, read_timeout_s)
        with _lock:
            # A reset_clients() while this one was being built means it may carry the old
            # credentials: use it once, never cache it. Otherwise another thread may have
            # built one meanwhile: keep the first.
            if _generation[0] == generation:
                found = _clients.setdefault(key, found)
    return found


def new_client(service: Service, *, region: str | None = None) -> Any:
    """A fresh, uncached client (kombu keeps one per queue)."""
    return _build(service, region)


def reset_clients() -> None:
    """Forget cached clients (after the environment changed, e.g. in tests)."""
    with _lock:
        _clients.clear()
        _accounts.clear()
        _generation[0] += 1
    with _build_lock:
        _session.clear()  # credentials and settings are read again


_accounts: dict[tuple[str | None, str | None], str] = {}


def account_id() -> str:
    """The AWS account the credentials belong to (the emulator answers 123456789012).

    Asked of STS once per endpoint and credentials, then cached: ARNs are computed
    from it on hot paths. ``CONVEYOR_AWS_ACCOUNT_ID`` skips the call.
    """
    explicit = settings.load_settings().aws.aws_account_id
    if explicit:
        return explicit
    key = (settings.aws_endpoint_url(), settings.aws_access_key_id())
    with _lock:
        cached = _accounts.get(key)
    if cached is None:
        cached = client("sts").get_caller_identity()["Account"]
        with _lock:
            _accounts[key] = cached
    return cached
