"""The claim check: payloads too large for SNS travel through S3, the envelope carries ``dataref``.

The producer calls :meth:`ClaimCheck.offload` before publishing: an envelope whose
encoded size is above ``payloads.claim_check_threshold_bytes`` has its payload PUT
to the topology's bucket and is published with ``dataref="s3://bucket/key"`` and no
``data``. Workers call :meth:`ClaimCheck.resolve` and hand the handler the original
payload. Objects are never deleted by Conveyor: the bucket's lifecycle rule expires
them (``payloads.expiry_s``), so a redriven job, which keeps its ``dataref``, still
finds its payload.

The object key is ``<job type>/<job id>.json``: a job id is stable, so a retried
publish of the same job overwrites the same object with the same bytes.
"""

from __future__ import annotations

import json
from typing import Any

import structlog
from botocore.exceptions import BotoCoreError, ClientError

from infra import aws
from infra.aws.errors import S3_MISSING_CODES, describe_aws_error, error_code
from infra.aws.names import payload_bucket_name, payload_bucket_prefix
from infra.envelope import Envelope, EnvelopeError, encode, load_json
from infra.errors import AwsError
from infra.topology import Topology

log = structlog.stdlib.get_logger("conveyor.claim_check")

SCHEME = "s3://"


class ClaimCheckError(AwsError):
    """S3 failed (unreachable, throttling, refused): the producer answers 503, a worker retries."""


class PayloadUnavailableError(ClaimCheckError):
    """The payload cannot be fetched, ever: the job is dead-lettered with ``reason``.

    Reasons: ``payload_missing`` (no such object: expired or deleted),
    ``invalid_dataref`` (not an ``s3://`` URI of this environment's bucket, or not
    the key the producer writes for this job's type and id),
    ``payload_too_large`` (the object is larger than ``payloads.max_bytes``),
    ``invalid_payload_object`` (the object is not JSON).
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def parse_dataref(dataref: str) -> tuple[str, str]:
    """``s3://bucket/key`` → ``(bucket, key)``; a malformed reference raises ``invalid_dataref``."""
    if not dataref.startswith(SCHEME):
        raise PayloadUnavailableError("invalid_dataref", f"dataref {dataref!r} is not an s3:// URI")
    bucket, _, key = dataref.removeprefix(SCHEME).partition("/")
    if not bucket or not key:
        raise PayloadUnavailableError(
            "invalid_dataref", f"dataref {dataref!r} does not name a bucket and a key"
        )
    return bucket, key


def _payload_bytes(data: Any) -> bytes:
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


class ClaimCheck:
    """Offloads large payloads to, and fetches them from, the topology's S3 bucket.

    The bucket name needs the account id (one cached STS call); it is looked up on
    the first offload, not at construction, so a worker that never meets a large
    payload never asks.
    """

    def __init__(self, topology: Topology, *, bucket: str | None = None) -> None:
        self.topology = topology
        self.threshold_bytes = topology.payloads.claim_check_threshold_bytes
        #: The hard maximum payload (the producer API answers 413 above it).
        self.max_bytes = topology.payloads.max_bytes
        self._bucket = bucket
        self._prefix = payload_bucket_prefix(topology)

    @property
    def bucket(self) -> str:
        """The bucket's name (raises :class:`ClaimCheckError` if the account lookup fails)."""
        if self._bucket is None:
            try:
                account = aws.account_id()
            except (BotoCoreError, ClientError) as exc:
                raise ClaimCheckError(
                    f"cannot name the payload bucket: the AWS account lookup failed"
                    f" ({describe_aws_error(exc)})"
                ) from exc
            self._bucket = payload_bucket_name(self.topology, account, aws.region_name())
        return self._bucket

    def needs_offload(self, envelope: Envelope, *, size_bytes: int | None = None) -> bool:
        """Whether ``envelope``, encoded, is above the threshold (and carries data inline).

        ``size_bytes``: the encoded envelope's size, when the caller has it (the API
        encodes each envelope once, for this check and the publish).
        """
        if envelope.dataref is not None or envelope.data is None:
            return False
        if size_bytes is None:
            size_bytes = len(encode(envelope).encode("utf-8"))
        return size_bytes > self.threshold_bytes

    def key_for(self, envelope: Envelope) -> str:
        """The object key of ``envelope``'s payload."""
        return f"{envelope.type}/{envelope.id}.json"

    def offload(self, envelope: Envelope) -> Envelope:
        """``envelope`` if small enough; else a copy whose payload is in S3 (``dataref``, no data).

        Raises :class:`ClaimCheckError` when S3 does not take the payload.
        """
        if not self.needs_offload(envelope):
            return envelope
        body = _payload_bytes(envelope.data)
        bucket, key = self.bucket, self.key_for(envelope)
        try:
            aws.client("s3").put_object(
                Bucket=bucket,
                Key=key,
                Body=body,
                ContentType="application/json",
                Metadata={"job-id": envelope.id, "job-type": envelope.type},
            )
        except (BotoCoreError, ClientError) as exc:
            log.warning(
                "claim_check.offload_failed",
                job_id=envelope.id,
                bucket=bucket,
                error=describe_aws_error(exc),
            )
            code = error_code(exc) if isinstance(exc, ClientError) else type(exc).__name__
            raise ClaimCheckError(f"S3 did not store the payload ({code})") from exc
        log.info("claim_check.offloaded", job_id=envelope.id, size_bytes=len(body), bucket=bucket)
        return envelope.model_copy(update={"data": None, "dataref": f"{SCHEME}{bucket}/{key}"})

    def checked_dataref(self, envelope: Envelope) -> tuple[str, str]:
        """``(bucket, key)`` of ``envelope``'s dataref, if it is exactly what the producer writes.

        A message must not make a worker read (and hand to a handler) whatever else its
        credentials can read: the bucket must be this environment's own (the full name,
        account and region included: S3 names are global, anyone can create
        ``<prefix>-999999999999-eu-west-1``), and the key the one :meth:`key_for` gives
        this job's type and id (not another job type's payload). Anything else raises
        ``invalid_dataref``; naming our bucket may raise :class:`ClaimCheckError`
        (the account lookup failed: retry).
        """
        dataref = envelope.dataref or ""
        bucket, key = parse_dataref(dataref)
        # The prefix first: a foreign bucket is refused without an account lookup.
        if not bucket.startswith(self._prefix) or bucket != self.bucket:
            raise PayloadUnavailableError(
                "invalid_dataref",
                f"dataref {dataref!r} is not in this environment's payload bucket"
                f" ({self._prefix}<account>-<region>)",
            )
        if key != self.key_for(envelope):
            raise PayloadUnavailableError(
                "invalid_dataref",
                f"dataref {dataref!r} is not this job's payload (expected the key"
                f" {self.key_for(envelope)!r})",
            )
        return bucket, key

    def _read_capped(self, found: Any, dataref: str | None) -> bytes:
        """The body of a GetObject answer, refused unread if above ``payloads.max_bytes``."""
        body = found["Body"]
        size = found.get("ContentLength")
        if isinstance(size, int) and size > self.max_bytes:
            body.close()
            raise PayloadUnavailableError(
                "payload_too_large",
                f"the payload at {dataref} is {size} bytes, above payloads.max_bytes"
                f" ({self.max_bytes})",
            )
        # Never more than the maximum (and one byte to tell), whatever the length said.
        raw: bytes = body.read(self.max_bytes + 1)
        body.close()
        if len(raw) > self.max_bytes:
            raise PayloadUnavailableError(
                "payload_too_large",
                f"the payload at {dataref} is above payloads.max_bytes ({self.max_bytes})",
            )
        return raw

    def resolve(self, envelope: Envelope) -> Any:
        """The job's payload: ``data``, or the object ``dataref`` points at.

        Raises :class:`PayloadUnavailableError` when the payload is gone or the
        reference is not one of ours (dead-letter), :class:`ClaimCheckError` when S3
        failed (retry).
        """
        if envelope.dataref is None:
            return envelope.data
        bucket, key = self.checked_dataref(envelope)
        try:
            found = aws.client("s3").get_object(Bucket=bucket, Key=key)
            raw = self._read_capped(found, envelope.dataref)
        except ClientError as exc:
            # S3_MISSING_CODES: real S3 says 403 for a missing key without s3:ListBucket.
            if error_code(exc) in S3_MISSING_CODES:
                raise PayloadUnavailableError(
                    "payload_missing",
                    f"the payload at {envelope.dataref} does not exist (expired after"
                    f" payloads.expiry_s, or deleted)",
                ) from exc
            raise ClaimCheckError(
                f"S3 did not return the payload at {envelope.dataref} ({describe_aws_error(exc)})"
            ) from exc
        except BotoCoreError as exc:
            raise ClaimCheckError(
                f"S3 did not return the payload at {envelope.dataref} ({exc})"
            ) from exc
        # Bounded like a message body (size, nesting); whatever else goes wrong while
        # reading it, the object is not a payload: dead-letter, never crash the worker.
        try:
            return load_json(
                raw, what=f"the payload at {envelope.dataref}", max_bytes=self.max_bytes
            )
        except EnvelopeError as exc:
            reason = "invalid_payload_object" if exc.reason == "invalid_json" else exc.reason
            raise PayloadUnavailableError(reason, str(exc)) from None
        except Exception as exc:  # noqa: BLE001 - RecursionError, MemoryError-ish, …
            raise PayloadUnavailableError(
                "invalid_payload_object",
                f"the payload at {envelope.dataref} cannot be read: {type(exc).__name__}",
            ) from None


def claim_check_for(topology: Topology) -> ClaimCheck:
    """The claim check of ``topology`` (its bucket, threshold and maximum)."""
    return ClaimCheck(topology)
