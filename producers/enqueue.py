"""The enqueue pipeline shared by the single-job and the batch routes.

For validated jobs: claim the idempotency key (if any), build the envelope, move a
large payload to S3 (claim check), publish, then settle the key and record the
job in the ledger. Every job ends in exactly one :class:`Outcome`; an outcome is
202 only once SNS accepted the job (or, for a repeated idempotency key, accepted
it earlier).

A delayed job (``Job.due_at`` set) takes the same path up to the publish: its
envelope — id, payload, offloaded payload, FIFO ids — is built now, exactly as an
immediate job's, and stored in the timer table (:mod:`infra.timers`) instead of
published; its 202 comes once DynamoDB has it, and the ledger records it as
``scheduled``. ``conveyor scheduler`` publishes it, unchanged, when it is due.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from typing import Any, Protocol

from infra.claim_check import ClaimCheckError
from infra.envelope import Envelope, encode, make_envelope, new_job_id
from infra.ledger import QueuedJob
from infra.limits import SNS_MAX_MESSAGE_BYTES
from infra.logs import get_logger
from infra.timers import Timer, TimerStore
from infra.topology import Topology
from producers.idempotency import Claim, IdempotencyStore, IdempotencyUnavailableError
from producers.publisher import (
    RETRY_AFTER_UNAVAILABLE_S,
    Outgoing,
    Published,
    Publisher,
    PublishError,
)

#: The CloudEvents ``source`` of jobs enqueued through this API.
SOURCE = "/conveyor/api"

log = get_logger("conveyor.api")

#: What SNS accepts as a MessageGroupId: 1..128 alphanumeric or punctuation characters.
_GROUP_ID = re.compile(r"^[\w!-/:-@\[-`{-~]{1,128}$", re.ASCII)


class Offloader(Protocol):
    """Moves a too-large payload out of the envelope (:class:`infra.claim_check.ClaimCheck`)."""

    def needs_offload(self, envelope: Envelope, *, size_bytes: int | None = None) -> bool: ...

    def offload(self, envelope: Envelope) -> Envelope: ...


class QueuedRecorder(Protocol):
    """Records accepted jobs as queued (:class:`infra.ledger.Ledger`); never raises."""

    def record_queued(self, jobs: Sequence[QueuedJob]) -> None: ...


@dataclass(frozen=True)
class Job:
    """A job whose payload has been validated (``data`` is its JSON form)."""

    index: int
    job_type: str
    data: dict[str, Any]
    idempotency_key: str | None = None
    message_group_id: str | None = None
    #: A delayed job: when to publish it (timezone-aware; None: now).
    due_at: datetime | None = None
    #: A job id decided by the caller (a schedule's tick); None: a fresh one. An
    #: idempotency key's claimed id still wins.
    job_id: str | None = None
    #: The envelope's CloudEvents ``source``; None: this API's (:data:`SOURCE`).
    source: str | None = None


@dataclass
class Outcome:
    """What happened to one job: ``status`` is its HTTP status (202 = accepted)."""

    index: int
    status: int
    job_type: str | None
    #: A stable code for metrics and logs: accepted, duplicate, invalid, unknown_type,
    #: forbidden, too_large, conflict, in_progress, unavailable.
    reason: str
    job_id: str | None = None
    queues: list[str] = field(default_factory=list)
    error: str | None = None
    retry_after_s: int | None = None
    #: Accepted earlier under the same idempotency key: nothing was published now.
    duplicate: bool = False
    #: A delayed job: when it will be published (stored, not published yet).
    due_at: datetime | None = None

    @property
    def accepted(self) -> bool:
        """SNS has the job (now or earlier)."""
        return self.status == 202


def fingerprint(job_type: str, data: dict[str, Any]) -> str:
    """The sha256 of the job's type and validated payload (canonical JSON)."""
    canonical = json.dumps(
        {"type": job_type, "data": data}, sort_keys=True, separators=(",", ":"), default=str
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def message_group_id(
    topology: Topology, job_type: str, data: dict[str, Any], explicit: str | None
) -> str | None:
    """The FIFO group of a job: ``explicit``, else its type's ``message_group_field``.

    None (one group per job) when neither is set, or the field's value cannot be a
    group id (missing, an object or list, too long, a character SNS refuses).
    """
    if explicit is not None:
        return explicit
    field_name = topology.job_types[job_type].message_group_field
    value = data.get(field_name) if field_name else None
    if value is None or isinstance(value, dict | list):
        return None
    text = str(value)
    return text if _GROUP_ID.match(text) else None


def payload_size_bytes(data: dict[str, Any]) -> int:
    """The size of the payload as compact JSON (what ``max_bytes`` limits)."""
    return len(json.dumps(data, separators=(",", ":"), default=str).encode("utf-8"))


def _failed(job: Job, status: int, reason: str, error: str, retry: int | None = None) -> Outcome:
    return Outcome(job.index, status, job.job_type, reason, error=error, retry_after_s=retry)


@dataclass
class _InFlight:
    job: Job
    envelope: Envelope
    claim: Claim | None

    @cached_property
    def body(self) -> str:
        """The envelope's JSON: encoded once, for the size checks and the publish."""
        return encode(self.envelope)

    @cached_property
    def size_bytes(self) -> int:
        """The encoded envelope's size."""
        return len(self.body.encode("utf-8"))


class Enqueuer:
    """Runs validated jobs through claim → envelope → offload → publish → settle → record."""

    def __init__(
        self,
        topology: Topology,
        publisher: Publisher,
        *,
        idempotency: IdempotencyStore | None = None,
        offloader: Offloader | None = None,
        recorder: QueuedRecorder | None = None,
        max_payload_bytes: int | None = None,
        observe: Callable[[Outcome], None] | None = None,
        timers: TimerStore | None = None,
    ) -> None:
        self.topology = topology
        self.publisher = publisher
        #: Where delayed jobs wait (None: delayed jobs are refused with 503).
        self.timers = timers
        self.idempotency = idempotency
        self.offloader = offloader
        self.recorder = recorder
        self.max_payload_bytes = max_payload_bytes
        self.observe = observe
        self._pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="offload")

    def close(self) -> None:
        """Stop the offloading threads."""
        self._pool.shutdown(wait=True)

    def run(
        self,
        jobs: Sequence[Job],
        *,
        traceparent: str | None,
        scope: str,
        key_name: str | None = None,
    ) -> list[Outcome]:
        """One outcome per job, in order. ``scope`` namespaces idempotency keys (the API key);
        ``key_name``, the API key's name, is recorded in the ledger (who may read the status)."""
        outcomes: dict[int, Outcome] = {}
        for job in jobs:
            too_large = self._check_size(job)
            if too_large is not None:
                outcomes[job.index] = too_large
        claims = self._claim([j for j in jobs if j.index not in outcomes], scope, outcomes)
        flying = [
            _InFlight(
                job, self._envelope(job, claims.get(job.index), traceparent), claims.get(job.index)
            )
            for job in jobs
            if job.index not in outcomes
        ]
        flying = self._offload(flying, outcomes)
        self._schedule([f for f in flying if f.job.due_at is not None], outcomes, key_name)
        self._publish([f for f in flying if f.job.due_at is None], outcomes, key_name)
        ordered = [outcomes[job.index] for job in jobs]
        if self.observe is not None:
            for outcome in ordered:
                self.observe(outcome)
        return ordered

    # -- steps ------------------------------------------------------------------------

    def _claim(
        self, jobs: Sequence[Job], scope: str, outcomes: dict[int, Outcome]
    ) -> dict[int, Claim]:
        keyed = [j for j in jobs if j.idempotency_key is not None]
        if not keyed:
            return {}
        if self.idempotency is None:
            for job in keyed:
                outcomes[job.index] = _failed(
                    job,
                    503,
                    "unavailable",
                    "idempotency keys are not available on this API",
                    RETRY_AFTER_UNAVAILABLE_S,
                )
            return {}
        seen: dict[str, int] = {}
        requests = []
        for job in keyed:
            assert job.idempotency_key is not None
            if job.idempotency_key in seen:
                outcomes[job.index] = _failed(
                    job,
                    409,
                    "conflict",
                    f"idempotency key '{job.idempotency_key}' is used twice in this request"
                    f" (first at index {seen[job.idempotency_key]})",
                )
                continue
            seen[job.idempotency_key] = job.index
            requests.append((job, fingerprint(job.job_type, job.data)))
        claims: dict[int, Claim] = {}
        results = self.idempotency.claim_many(
            [(scope, j.idempotency_key or "", fp, j.job_type, new_job_id()) for j, fp in requests]
        )
        for (job, _), result in zip(requests, results, strict=True):
            if isinstance(result, IdempotencyUnavailableError):
                outcomes[job.index] = _failed(
                    job, 503, "unavailable", f"job not published: {result}", result.retry_after_s
                )
            elif result.kind == "new":
                claims[job.index] = result
            elif result.kind == "replay":
                outcomes[job.index] = Outcome(
                    job.index,
                    202,
                    job.job_type,
                    "duplicate",
                    job_id=result.job_id,
                    queues=self.topology.queues_receiving(job.job_type),
                    duplicate=True,
                )
            elif result.kind == "conflict":
                outcomes[job.index] = _failed(
                    job,
                    409,
                    "conflict",
                    f"idempotency key '{job.idempotency_key}' was already used for a different"
                    f" job (job {result.job_id}, type {result.job_type})",
                )
            else:  # in progress: the first request has not finished publishing
                outcomes[job.index] = _failed(
                    job,
                    409,
                    "in_progress",
                    f"a request with idempotency key '{job.idempotency_key}' is being processed"
                    " (retry later)",
                    result.retry_after_s,
                )
        return claims

    def _check_size(self, job: Job) -> Outcome | None:
        if self.max_payload_bytes is None:
            return None
        size = payload_size_bytes(job.data)
        if size <= self.max_payload_bytes:
            return None
        return _failed(
            job,
            413,
            "too_large",
            f"the payload is {size} bytes, above the limit of {self.max_payload_bytes} bytes",
        )

    @staticmethod
    def _envelope(job: Job, claim: Claim | None, traceparent: str | None) -> Envelope:
        return make_envelope(
            job.job_type,
            job.data,
            # A key taken over keeps its first job id: a copy of a job is the same job.
            job_id=claim.job_id if claim is not None else job.job_id,
            source=job.source or SOURCE,
            traceparent=traceparent,
            idempotency_key=job.idempotency_key,
        )

    def _offload(self, flying: list[_InFlight], outcomes: dict[int, Outcome]) -> list[_InFlight]:
        """Move large payloads to S3 (in parallel); a job whose payload S3 refused is a 503."""
        offloader = self.offloader
        if offloader is None or not flying:
            return flying

        def offload(f: _InFlight) -> _InFlight | ClaimCheckError:
            try:
                return _InFlight(f.job, offloader.offload(f.envelope), f.claim)
            except ClaimCheckError as exc:
                return exc

        # Only uploads need the threads: a small job (nearly all of them) stays as it is.
        large = [f for f in flying if offloader.needs_offload(f.envelope, size_bytes=f.size_bytes)]
        if not large:
            return flying
        uploaded = iter(
            list(self._pool.map(offload, large)) if len(large) > 1 else [offload(large[0])]
        )
        big = {id(f) for f in large}
        results = [next(uploaded) if id(f) in big else f for f in flying]
        kept: list[_InFlight] = []
        released: list[Claim] = []
        for f, result in zip(flying, results, strict=True):
            if isinstance(result, _InFlight):
                kept.append(result)
                continue
            log.warning(
                "job not published",
                job_id=f.envelope.id,
                job_type=f.job.job_type,
                trace_id=f.envelope.trace_id,
                reason="claim check failed",
                error=str(result),
            )
            # The error (logged above) may name the bucket or the account: not in the answer.
            outcomes[f.job.index] = _failed(
                f.job,
                503,
                "unavailable",
                "job not published: the payload could not be stored (S3 failed; retry later)",
                RETRY_AFTER_UNAVAILABLE_S,
            )
            if f.claim is not None:
                released.append(f.claim)
        if released:
            self._release(released)
        return kept

    def _publish(
        self, flying: list[_InFlight], outcomes: dict[int, Outcome], key_name: str | None
    ) -> None:
        if not flying:
            return
        results = self.publisher.publish_many(
            [
                Outgoing(
                    f.envelope,
                    message_group_id=f.job.message_group_id,
                    deduplication_id=self._deduplication_id(f),
                    body=f.body,
                )
                for f in flying
            ]
        )
        accepted: list[tuple[_InFlight, Published]] = []
        failed_claims: list[Claim] = []
        for f, result in zip(flying, results, strict=True):
            jlog = log.bind(
                job_id=f.envelope.id,
                job_type=f.job.job_type,
                topic=self.topology.job_types[f.job.job_type].topic,
                trace_id=f.envelope.trace_id,
            )
            if isinstance(result, PublishError):
                if result.unexpected:
                    jlog.error("job not published", reason=result.detail, exc_info=result.__cause__)
                else:
                    jlog.warning(
                        "job not published",
                        reason=result.detail,
                        error=repr(result.__cause__ or result),
                    )
                reason = "too_large" if result.status_code == 413 else "unavailable"
                detail = f"job not published: {result.detail}"
                if result.uncertain:
                    # Say so: a retry without the same idempotency key may make a second job.
                    detail = (
                        f"job not confirmed: {result.detail}; retry with the same"
                        " Idempotency-Key to keep it one job"
                    )
                outcomes[f.job.index] = _failed(
                    f.job, result.status_code, reason, detail, result.retry_after_s
                )
                if f.claim is not None:
                    failed_claims.append(f.claim)
                continue
            queues = self.topology.queues_receiving(f.job.job_type)
            jlog.info(
                "job accepted",
                queues=queues,
                message_id=result.message_id,
                size_bytes=result.size_bytes,
                **({"idempotency_key": f.job.idempotency_key} if f.job.idempotency_key else {}),
            )
            outcomes[f.job.index] = Outcome(
                f.job.index, 202, f.job.job_type, "accepted", job_id=f.envelope.id, queues=queues
            )
            accepted.append((f, result))
        self._settle([f for f, _ in accepted], failed_claims, outcomes, key_name, scheduled=False)

    def _schedule(
        self, flying: list[_InFlight], outcomes: dict[int, Outcome], key_name: str | None
    ) -> None:
        """Store delayed jobs' envelopes in the timer table; 202 once DynamoDB has them."""
        if not flying:
            return
        storable: list[tuple[_InFlight, Timer]] = []
        failed_claims: list[Claim] = []
        for f in flying:
            problem = self._unschedulable(f)
            if problem is not None:
                outcomes[f.job.index] = problem
                if f.claim is not None:
                    failed_claims.append(f.claim)
                continue
            assert f.job.due_at is not None
            timer = Timer(
                job_id=f.envelope.id,
                job_type=f.job.job_type,
                due_at=f.job.due_at,
                envelope_json=f.body,
                key_name=key_name,
                message_group_id=f.job.message_group_id,
                deduplication_id=self._deduplication_id(f),
            )
            storable.append((f, timer))
        assert self.timers is not None or not storable
        results = self.timers.put_many([t for _, t in storable]) if self.timers else []
        stored: list[_InFlight] = []
        for (f, timer), result in zip(storable, results, strict=True):
            jlog = log.bind(
                job_id=f.envelope.id, job_type=f.job.job_type, trace_id=f.envelope.trace_id
            )
            if result is not None:
                jlog.warning("job not scheduled", reason=str(result))
                outcomes[f.job.index] = _failed(
                    f.job,
                    503,
                    "unavailable",
                    "job not scheduled: the delayed job could not be stored (retry later)",
                    RETRY_AFTER_UNAVAILABLE_S,
                )
                if f.claim is not None:
                    failed_claims.append(f.claim)
                continue
            queues = self.topology.queues_receiving(f.job.job_type)
            jlog.info("job scheduled", due_at=timer.due_at.isoformat(), queues=queues)
            outcomes[f.job.index] = Outcome(
                f.job.index,
                202,
                f.job.job_type,
                "accepted",
                job_id=f.envelope.id,
                queues=queues,
                due_at=timer.due_at,
            )
            stored.append(f)
        self._settle(stored, failed_claims, outcomes, key_name, scheduled=True)

    def _settle(
        self,
        done: list[_InFlight],
        failed_claims: list[Claim],
        outcomes: dict[int, Outcome],
        key_name: str | None,
        *,
        scheduled: bool,
    ) -> None:
        """After publishing (or storing the timers of) ``done``: release the idempotency
        claims of what failed, settle the others', record the jobs in the ledger."""
        if failed_claims:
            self._release(failed_claims)
        settled = [f.claim for f in done if f.claim is not None]
        if settled and self.idempotency is not None:
            self.idempotency.mark_published(settled)
        if done and self.recorder is not None:
            self.recorder.record_queued(
                [
                    QueuedJob(
                        f.envelope.id,
                        f.job.job_type,
                        outcomes[f.job.index].queues,
                        f.envelope.trace_id,
                        key_name,
                        # A published job was queued when the API accepted it; a stored
                        # one is scheduled, due when it asked to be.
                        queued_at=None if scheduled else f.envelope.time,
                        due_at=f.job.due_at if scheduled else None,
                        scheduled=scheduled,
                    )
                    for f in done
                ]
            )

    def _unschedulable(self, f: _InFlight) -> Outcome | None:
        """Why a delayed job cannot be stored (None: it can): no timer table, or an
        envelope SNS would refuse when it is due (refused now, not at its due time)."""
        if self.timers is None:
            return _failed(
                f.job,
                503,
                "unavailable",
                "delayed jobs are not available on this API",
                RETRY_AFTER_UNAVAILABLE_S,
            )
        size = f.size_bytes
        if size > SNS_MAX_MESSAGE_BYTES:
            return _failed(
                f.job,
                413,
                "too_large",
                f"the job's envelope is {size} bytes, above SNS's limit of"
                f" {SNS_MAX_MESSAGE_BYTES} bytes (send a smaller payload, or a reference to it)",
            )
        return None

    def _deduplication_id(self, f: _InFlight) -> str | None:
        """FIFO: the idempotency key's id, else the payload's hash when the topic asks for
        content-based deduplication, else None (the publisher uses the job id)."""
        if f.claim is not None:
            return f.claim.deduplication_id
        topic = self.topology.topics[self.topology.job_types[f.job.job_type].topic]
        if topic.fifo and topic.content_based_deduplication:
            # The envelope differs per request (id, time): hash the job, not the message.
            return fingerprint(f.job.job_type, f.job.data)
        return None

    def _release(self, claims: list[Claim]) -> None:
        if self.idempotency is not None:
            self.idempotency.release(claims)
