"""Reading botocore's errors: the AWS error code, what kind of failure it is, one line for a person.

Every module that talks to AWS classifies failures through here, so "throttled",
"not found" and "access denied" mean the same everywhere and AWS's many spellings
of each are listed once.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
)

from infra.discovery import endpoint_hint
from infra.errors import AwsError

#: "Slow down", as AWS spells it across services and SDK generations.
THROTTLING_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottled",
        "RequestThrottledException",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "ProvisionedThroughputExceededException",
        "SlowDown",
    }
)
#: SQS answers a missing queue with the query-compatible code, or the JSON one.
QUEUE_MISSING_CODES = frozenset({"AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"})
#: SNS answers a missing topic or subscription with NotFound.
SNS_MISSING_CODES = frozenset({"NotFound", "NotFoundException", "ResourceNotFound"})
#: DynamoDB answers a missing table with ResourceNotFoundException; moto (5.2.5) answers
#: DescribeTimeToLive with "ResourceNotFound" instead.
TABLE_MISSING_CODES = frozenset({"ResourceNotFoundException", "ResourceNotFound"})
#: S3 answers these when the object (or the whole bucket) is not there. Without
#: s3:ListBucket on the bucket, real S3 answers 403 AccessDenied instead of 404 for a
#: missing key: the exported worker roles get ListBucket so that "missing" stays visible.
S3_MISSING_CODES = frozenset({"NoSuchKey", "404", "NotFound", "NoSuchBucket"})
#: Any "no such resource", whatever the service.
NOT_FOUND_CODES = QUEUE_MISSING_CODES | SNS_MISSING_CODES | TABLE_MISSING_CODES | S3_MISSING_CODES
#: ECS answers a missing cluster or service (or one being deleted) with these.
ECS_MISSING_CODES = frozenset(
    {"ClusterNotFoundException", "ServiceNotFoundException", "ServiceNotActiveException"}
)
#: The credentials are not allowed to do this.
ACCESS_DENIED_CODES = frozenset(
    {
        "AccessDenied",
        "AccessDeniedException",
        "AuthorizationError",
        "UnauthorizedOperation",
        "AuthorizationErrorException",
    }
)
#: A DynamoDB condition expression did not hold (an expected outcome, not a failure).
CONDITION_FAILED = "ConditionalCheckFailedException"
#: How endpoints without an API answer a call of it (moto 5.2.5: a bare HTTP 500,
#: code "500"; AWS's own 500s carry a code, InternalError).
UNSUPPORTED_OPERATION_CODES = frozenset(
    {
        "InvalidAction",
        "UnsupportedOperation",
        "UnknownOperationException",
        "NotImplemented",
        "500",
        "501",
    }
)


def error_code(exc: BaseException) -> str:
    """The AWS error code of ``exc`` (``""`` when it is not a ClientError or has none)."""
    if not isinstance(exc, ClientError):
        return ""
    return str(exc.response.get("Error", {}).get("Code", ""))


def http_status(exc: BaseException) -> int:
    """The HTTP status AWS answered with (0 when there was no answer)."""
    if not isinstance(exc, ClientError):
        return 0
    return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)


def is_throttled(exc: BaseException) -> bool:
    """AWS asked us to slow down."""
    return error_code(exc) in THROTTLING_CODES or http_status(exc) == 429


def is_not_found(exc: BaseException) -> bool:
    """The resource the request named does not exist."""
    return error_code(exc) in NOT_FOUND_CODES


def is_table_missing(exc: BaseException) -> bool:
    """The DynamoDB table the request named does not exist."""
    return error_code(exc) in TABLE_MISSING_CODES


def is_condition_failed(exc: BaseException) -> bool:
    """A DynamoDB condition expression did not hold."""
    return error_code(exc) == CONDITION_FAILED


def is_unsupported_operation(exc: BaseException) -> bool:
    """The endpoint does not implement the API that was called (an emulator, mostly)."""
    return error_code(exc) in UNSUPPORTED_OPERATION_CODES


def is_access_denied(exc: BaseException) -> bool:
    """The credentials may not do this (retrying will not help)."""
    return error_code(exc) in ACCESS_DENIED_CODES


def is_retryable(exc: BaseException) -> bool:
    """Worth retrying later: throttling, a server error, or no answer at all."""
    if isinstance(exc, BotoCoreError):
        return True  # connection refused, timeouts, closed connections
    return is_throttled(exc) or http_status(exc) >= 500


def describe_aws_error(exc: BotoCoreError | ClientError) -> str:
    """``AccessDenied: User … is not authorized`` or botocore's own message."""
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = error.get("Code") or "error"
        message = error.get("Message") or str(exc)
        return f"{code}: {message}"
    if isinstance(exc, NoCredentialsError):
        return (
            f"{exc}: set AWS credentials (AWS_PROFILE, AWS_ACCESS_KEY_ID …), or run"
            " `conveyor up` for this project to use its emulator"
        )
    if isinstance(exc, EndpointConnectionError | ConnectTimeoutError):
        # Nothing answers at the endpoint: say which setting named it, and how to drop it.
        hint = endpoint_hint()
        return f"{exc}; {hint}" if hint else str(exc)
    return str(exc)


@contextmanager
def aws_errors(doing: str) -> Iterator[None]:
    """Turn botocore's errors raised inside into ``AwsError("<doing>: <error>")``."""
    try:
        yield
    except (ClientError, BotoCoreError) as exc:
        raise AwsError(f"{doing}: {describe_aws_error(exc)}") from exc
