"""The Python client of the producer API.

    with Client(api_key="cvy_…") as api:  # or Client("https://jobs.example.com", …)
        job = api.enqueue("image.resize", {"image_url": "https://…", "width_px": 640},
                          idempotency_key="resize-42")
        results = api.enqueue_many([{"type": "email.send", "data": {...}}, ...])
        status = api.wait(job.id, timeout_s=30)
        api.cancel(job.id)   # if it has not started: it never runs

A 503 (not published, or SNS did not confirm the publish), a 429 (rate limit) and a
409 "in progress" (another request with the same idempotency key is still being
processed) are retried, waiting what ``Retry-After`` says (or an exponential
backoff), within :class:`Retry`'s bounds; then :class:`EnqueueError` is raised. So
are requests that got no answer at all (a timeout, a reset connection).

Retrying is made safe by idempotency keys: a job without an ``idempotency_key`` is
given a random one (``auto_idempotency_keys``, on by default, as Stripe's clients
do), so a retry after an answer that left the outcome open (SNS timed out after
receiving the job; the API's answer was lost) resolves to the same job id instead of
a second job. Pass your own key to make retries safe across processes too, or
``auto_idempotency_keys=False`` to skip the key store's two DynamoDB writes per job
(then a retry after an uncertain failure may enqueue the job twice).
Other refusals raise at once: 401/403 :class:`AuthError`, 404 :class:`NotFoundError`,
anything else :class:`EnqueueError` with the status and the API's reason.

Without a URL, the client finds the API as the CLI does (:func:`infra.discovery.resolve_api_url`):
``CONVEYOR_API_URL``, else the running ``conveyor up`` of the project (``.conveyor/up.json``
beside queues.yaml), else ``http://127.0.0.1:8000``. A local API (loopback) gets a short
connect timeout: nothing to wait for on this machine.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from types import TracebackType
from typing import Any
from urllib.parse import quote

import httpx

from infra.backoff import exponential_delay_s
from infra.discovery import is_loopback, resolve_api_url
from infra.errors import ConveyorError

#: The most jobs the API takes in one request.
BATCH_LIMIT = 500
#: States after which a job's record no longer changes.
FINAL_STATES = frozenset({"succeeded", "dead-lettered", "cancelled"})
#: Statuses worth retrying: not published (503), rate limited (429). A 409 is retried
#: only when it carries Retry-After: "in progress", not "a different job under this key".
RETRYABLE = frozenset({429, 503})
#: Connect timeout for an API on this machine: a loopback connection is accepted or
#: refused at once, so a longer wait only delays the answer "nothing listens there".
LOCAL_CONNECT_TIMEOUT_S = 1.0


@dataclass(frozen=True)
class Retry:
    """How 503s and 429s are retried: at most ``max_attempts`` tries within ``max_wait_s``.

    Between tries the client waits ``Retry-After`` when the API sends it (capped at
    ``cap_s``), else ``base_s * 2**n`` with jitter.
    """

    max_attempts: int = 5
    max_wait_s: float = 60.0
    base_s: float = 0.5
    cap_s: float = 30.0

    def delay_s(self, attempt: int, retry_after_s: float | None) -> float:
        """The wait before try ``attempt + 1`` (``attempt`` counts from 1)."""
        if retry_after_s is not None:
            return min(self.cap_s, retry_after_s)
        return float(
            exponential_delay_s(attempt, base_s=self.base_s, cap_s=self.cap_s, jitter="equal")
        )


#: Never retry (tests, or callers with their own policy).
NO_RETRY = Retry(max_attempts=1)


@dataclass(frozen=True)
class EnqueueResult:
    """A job the API accepted (SNS has it). ``duplicate``: accepted earlier under its key."""

    id: str
    type: str
    status_url: str
    queues: list[str]
    duplicate: bool = False
    #: A delayed job: stored, to be published at this time (None: published now).
    due_at: datetime | None = None


def _due_at(raw: Any) -> datetime | None:
    """The answer's ``due_at`` (RFC 3339), or None when absent or unreadable."""
    if not isinstance(raw, str):
        return None
    try:
        return datetime.fromisoformat(raw)
    except ValueError:
        return None


def _delay_fields(delay_s: float | None, not_before: datetime | None) -> dict[str, Any]:
    """The delay as the API reads it (it checks it: both at once, or too long, is a 422)."""
    fields: dict[str, Any] = {}
    if delay_s is not None:
        fields["delay_s"] = delay_s
    if not_before is not None:
        fields["not_before"] = not_before.isoformat()
    return fields


@dataclass(frozen=True)
class BatchItemResult:
    """One job of :meth:`Client.enqueue_many`, by its ``index`` in the input."""

    index: int
    status: int
    type: str | None = None
    id: str | None = None
    status_url: str | None = None
    queues: list[str] = field(default_factory=list)
    error: str | None = None
    duplicate: bool = False
    retry_after_s: float | None = None
    #: A delayed job: stored, to be published at this time.
    due_at: datetime | None = None

    @property
    def accepted(self) -> bool:
        """SNS has the job."""
        return self.status == 202


@dataclass(frozen=True)
class JobStatus:
    """A job's record in the job ledger (``GET /v1/jobs/{id}``)."""

    id: str
    type: str | None
    #: Overall: scheduled (delayed, not published yet), queued, running, retrying,
    #: succeeded, dead-lettered.
    state: str
    #: Per queue: its state, attempt, timestamps, next attempt, dead-letter reason.
    queues: dict[str, dict[str, Any]]
    #: The whole answer, as the API sent it.
    raw: dict[str, Any]

    @property
    def done(self) -> bool:
        """The job succeeded, was dead-lettered or was cancelled everywhere it went."""
        return self.state in FINAL_STATES


@dataclass(frozen=True)
class Cancellation:
    """A job cancelled (``DELETE /v1/jobs/{id}`` answered 200), now or by an earlier call."""

    id: str
    type: str | None
    #: Overall: ``cancelled``; or, when it had started on some queue, that queue's state.
    state: str
    #: Per queue: ``cancelled``, or the state it was already in (``running`` …).
    queues: dict[str, str]
    detail: str
    #: The whole answer, as the API sent it.
    raw: dict[str, Any]


class ApiError(ConveyorError):
    """The API refused the request, failed, or could not be reached.

    ``status_code`` is None when no answer arrived (connection refused, timeout);
    after a timeout the job may or may not have been published.
    """

    def __init__(
        self,
        status_code: int | None,
        detail: str,
        *,
        retry_after_s: float | None = None,
        body: Any = None,
    ) -> None:
        self.status_code = status_code
        self.detail = detail
        #: From the ``Retry-After`` header of a 503 or 429.
        self.retry_after_s = retry_after_s
        #: The decoded JSON answer, e.g. FastAPI's list of field errors for a 422.
        self.body = body
        # A request that cannot succeed as sent (4xx but 429) is the caller's mistake.
        self.usage = status_code is not None and 400 <= status_code < 500 and status_code != 429
        super().__init__(f"{status_code}: {detail}" if status_code is not None else detail)


class EnqueueError(ApiError):
    """A job (or a batch) was not accepted."""


class _NoAnswerError(EnqueueError):
    """No answer arrived; ``sent`` is False when the request never left (connect failed)."""

    def __init__(self, detail: str, *, sent: bool) -> None:
        super().__init__(None, detail)
        self.sent = sent


class AuthError(EnqueueError):
    """401 (no key, or a wrong one) or 403 (the key may not enqueue this job type)."""


class NotFoundError(EnqueueError):
    """404: an unknown job type, or no status recorded for the job id."""


class NotCancelledError(EnqueueError):
    """409 to a cancel: the job started or finished (``state``), or cannot be found
    because its type does not record status (``state`` None)."""

    @property
    def state(self) -> str | None:
        """The job's overall state when the API refused (running, succeeded …)."""
        state = self.body.get("state") if isinstance(self.body, dict) else None
        return str(state) if state is not None else None


class WaitTimeoutError(ConveyorError, TimeoutError):
    """:meth:`Client.wait` gave up; ``last`` is the last status seen (None: none yet)."""

    def __init__(self, job_id: str, timeout_s: float, last: JobStatus | None) -> None:
        self.last = last
        state = last.state if last is not None else "no status yet"
        super().__init__(f"job {job_id} not done after {timeout_s:g}s ({state})")


def _render_detail(body: Any, fallback: str) -> str:
    detail = body.get("detail") if isinstance(body, dict) else None
    if isinstance(detail, str):
        return detail
    if isinstance(detail, list):  # FastAPI's validation errors
        parts = []
        for err in detail:
            if not isinstance(err, dict):
                parts.append(str(err))
                continue
            loc = [str(p) for p in err.get("loc", []) if p != "body"]
            where = ".".join(loc) or "body"
            parts.append(f"{where}: {err.get('msg', 'invalid')}")
        return "; ".join(parts) or fallback
    return fallback


def _retry_after_s(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # an HTTP date: not something this API sends


def _retryable(status: int, retry_after_s: float | None) -> bool:
    """503 and 429 always; 409 only as "in progress", which says when to come back."""
    return status in RETRYABLE or (status == 409 and retry_after_s is not None)


def _auto_key() -> str:
    return f"auto-{uuid.uuid4().hex}"


def _error_for(response: httpx.Response, body: Any) -> EnqueueError:
    fallback = response.reason_phrase or f"HTTP {response.status_code}"
    kind = {401: AuthError, 403: AuthError, 404: NotFoundError}.get(
        response.status_code, EnqueueError
    )
    return kind(
        response.status_code,
        _render_detail(body, fallback),
        retry_after_s=_retry_after_s(response),
        body=body,
    )


def _batch_item(raw: Any, index: int) -> BatchItemResult:
    if not isinstance(raw, dict):
        return BatchItemResult(index, 0, error="unreadable result")
    return BatchItemResult(
        index=index,
        status=int(raw.get("status", 0)),
        type=raw.get("type"),
        id=raw.get("id"),
        status_url=raw.get("status_url"),
        queues=[str(q) for q in raw.get("queues") or []],
        error=raw.get("error"),
        duplicate=bool(raw.get("duplicate", False)),
        retry_after_s=raw.get("retry_after_s"),
        due_at=_due_at(raw.get("due_at")),
    )


class Client:
    """The producer API at ``base_url``, with ``api_key`` (``Authorization: Bearer``) if given."""

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        timeout_s: float = 30,
        retry: Retry = Retry(),  # frozen: one default shared safely
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        auto_idempotency_keys: bool = True,
        retry_refused: bool = True,
    ) -> None:
        """``base_url`` None: found as the module's docstring says. ``transport`` replaces
        httpx's network transport (proxies, mTLS, tests).

        ``auto_idempotency_keys``: give every job without a key a random one, so that
        this client's own retries never enqueue a job twice (see the module's docstring).
        ``retry_refused`` False: a connection that could not be made is not retried
        (the CLI's choice for a local API, where nothing listening stays so).
        """
        if base_url is None:
            base_url, _ = resolve_api_url()
        self.base_url = base_url.rstrip("/")
        self.retry = retry
        self.auto_idempotency_keys = auto_idempotency_keys
        self.retry_refused = retry_refused
        self._sleep = sleep
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        connect_s = min(timeout_s, LOCAL_CONNECT_TIMEOUT_S) if is_loopback(self.base_url) else None
        self._http = httpx.Client(
            base_url=self.base_url,
            timeout=httpx.Timeout(timeout_s, connect=connect_s or timeout_s),
            transport=transport,
            headers=headers,
        )

    # -- HTTP ---------------------------------------------------------------------------

    def _send(self, method: str, path: str, **kwargs: Any) -> tuple[httpx.Response, Any]:
        try:
            response = self._http.request(method, path, **kwargs)
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            raise _NoAnswerError(f"cannot reach {self.base_url}: {exc}", sent=False) from exc
        except httpx.TimeoutException as exc:
            raise _NoAnswerError(
                f"no answer from {self.base_url} ({type(exc).__name__}): the job may or may"
                " not have been enqueued",
                sent=True,
            ) from exc
        except httpx.HTTPError as exc:
            raise _NoAnswerError(f"request to {self.base_url} failed: {exc}", sent=True) from exc
        try:
            body: Any = response.json()
        except ValueError:
            body = None
        return response, body

    def _wait_after_no_answer(
        self, exc: _NoAnswerError, attempt: int, started: float, *, resend_safe: bool
    ) -> None:
        """Wait for another try after ``exc``, or raise it when one is not safe or allowed.

        Never sent (connect failed): always safe. Sent without an answer: safe only when
        an idempotency key (or a read-only request) makes a second copy harmless.
        """
        if not exc.sent and not self.retry_refused:
            raise exc
        if not (resend_safe or not exc.sent) or not self._may_retry(attempt, started, None):
            raise exc

    def _with_retries(
        self, send: Callable[[], tuple[httpx.Response, Any]], *, resend_safe: bool
    ) -> tuple[httpx.Response, Any]:
        """``send`` until the answer is not worth retrying, or the retry budget is spent."""
        started = time.monotonic()
        attempt = 1
        while True:
            try:
                response, body = send()
            except _NoAnswerError as exc:
                self._wait_after_no_answer(exc, attempt, started, resend_safe=resend_safe)
                attempt += 1
                continue
            hint = _retry_after_s(response)
            if not _retryable(response.status_code, hint) or not self._may_retry(
                attempt, started, hint
            ):
                return response, body
            attempt += 1

    # -- enqueue ------------------------------------------------------------------------

    def enqueue(
        self,
        job_type: str,
        payload: Mapping[str, Any],
        *,
        idempotency_key: str | None = None,
        traceparent: str | None = None,
        message_group_id: str | None = None,
        delay_s: float | None = None,
        not_before: datetime | None = None,
    ) -> EnqueueResult:
        """Submit one job; return once the API answered 202, else raise :class:`EnqueueError`.

        ``delay_s`` (seconds from now) or ``not_before`` (a timezone-aware time) delays
        it: the API stores it and publishes it when due (``EnqueueResult.due_at``).
        """
        headers = {}
        if idempotency_key is None and self.auto_idempotency_keys:
            idempotency_key = _auto_key()
        if idempotency_key is not None:
            headers["Idempotency-Key"] = idempotency_key
        if traceparent is not None:
            headers["traceparent"] = traceparent
        if message_group_id is not None:
            headers["X-Message-Group-Id"] = message_group_id
        path = f"/v1/jobs/{quote(job_type, safe='')}"
        response, body = self._with_retries(
            lambda: self._send(
                "POST",
                path,
                json=dict(payload),
                headers=headers,
                params=_delay_fields(delay_s, not_before),
            ),
            resend_safe=idempotency_key is not None,
        )
        if response.status_code != 202:
            raise _error_for(response, body)
        if not isinstance(body, dict) or not {"id", "type", "status_url"} <= body.keys():
            raise EnqueueError(202, "the API accepted the job but its answer is unreadable")
        return EnqueueResult(
            id=str(body["id"]),
            type=str(body["type"]),
            status_url=str(body["status_url"]),
            queues=[str(q) for q in body.get("queues", [])],
            duplicate=bool(body.get("duplicate", False)),
            due_at=_due_at(body.get("due_at")),
        )

    def enqueue_many(
        self,
        jobs: Iterable[Mapping[str, Any]],
        *,
        idempotency_key: str | None = None,
        traceparent: str | None = None,
        delay_s: float | None = None,
        not_before: datetime | None = None,
    ) -> list[BatchItemResult]:
        """Submit jobs (``{"type", "data", "idempotency_key"?}``) in requests of up to 500.

        One result per job, in order; check ``accepted`` (this never raises for a job
        the API refused, only when a whole request was refused: 401, 422 for a
        malformed batch, …). Jobs answered 503 are sent again within the retry budget.
        ``idempotency_key`` names the whole call: job *i* gets ``<key>-<i>`` unless it
        has its own. ``delay_s`` or ``not_before`` delays every job that sets neither
        itself (a job may carry its own ``delay_s`` or ``not_before``).
        """
        items = [dict(job) for job in jobs]
        delay = _delay_fields(delay_s, not_before)
        for item in items:
            if delay and "delay_s" not in item and "not_before" not in item:
                item.update(delay)
            if isinstance(item.get("not_before"), datetime):
                item["not_before"] = item["not_before"].isoformat()
        for i, item in enumerate(items):
            if idempotency_key is not None:
                item.setdefault("idempotency_key", f"{idempotency_key}-{i}")
            elif self.auto_idempotency_keys:
                item.setdefault("idempotency_key", _auto_key())
        results: list[BatchItemResult] = []
        for start in range(0, len(items), BATCH_LIMIT):
            chunk = items[start : start + BATCH_LIMIT]
            results += self._enqueue_chunk(chunk, start, traceparent)
        return results

    def _enqueue_chunk(
        self, items: Sequence[dict[str, Any]], offset: int, traceparent: str | None
    ) -> list[BatchItemResult]:
        headers = {"traceparent": traceparent} if traceparent is not None else {}
        final: dict[int, BatchItemResult] = {}
        pending = list(range(len(items)))
        started = time.monotonic()
        attempt = 1
        resend_safe = all(item.get("idempotency_key") for item in items)
        while pending:
            try:
                response, body = self._send(
                    "POST", "/v1/jobs", json={"jobs": [items[i] for i in pending]}, headers=headers
                )
            except _NoAnswerError as exc:
                self._wait_after_no_answer(exc, attempt, started, resend_safe=resend_safe)
                attempt += 1
                continue
            results = body.get("results") if isinstance(body, dict) else None
            if not isinstance(results, list) or len(results) != len(pending):
                hint = _retry_after_s(response)
                if _retryable(response.status_code, hint) and self._may_retry(
                    attempt, started, hint
                ):
                    attempt += 1
                    continue
                raise _error_for(response, body)
            retry: list[int] = []
            hint = _retry_after_s(response)
            for position, raw in zip(pending, results, strict=True):
                item = _batch_item(raw, offset + position)
                final[position] = item
                if _retryable(item.status, item.retry_after_s):
                    retry.append(position)
            if not retry or not self._may_retry(attempt, started, hint):
                break
            pending = retry
            attempt += 1
        return [final[i] for i in range(len(items))]

    def _may_retry(self, attempt: int, started: float, retry_after_s: float | None) -> bool:
        """Wait for the next try if the budget allows it; False when it does not."""
        if attempt >= self.retry.max_attempts:
            return False
        delay = self.retry.delay_s(attempt, retry_after_s)
        if time.monotonic() - started + delay > self.retry.max_wait_s:
            return False
        self._sleep(delay)
        return True

    # -- status -------------------------------------------------------------------------

    def status(self, job_id: str) -> JobStatus:
        """The job's status; :class:`NotFoundError` if none is recorded."""
        path = f"/v1/jobs/{quote(job_id, safe='')}"
        response, body = self._with_retries(lambda: self._send("GET", path), resend_safe=True)
        if response.status_code != 200:
            raise _error_for(response, body)
        if not isinstance(body, dict):
            raise EnqueueError(200, "the job's status is unreadable")
        queues = body.get("queues") or {}
        if isinstance(queues, list):  # a list of per-queue records, each naming its queue
            queues = {str(q.get("queue")): q for q in queues if isinstance(q, dict)}
        return JobStatus(
            id=str(body.get("job_id") or body.get("id") or job_id),
            type=body.get("job_type") or body.get("type"),
            state=str(body.get("state", "unknown")),
            queues=dict(queues),
            raw=body,
        )

    def wait(self, job_id: str, timeout_s: float, *, poll_s: float = 0.5) -> JobStatus:
        """Poll the job's status until it is done (succeeded or dead-lettered everywhere).

        A job not recorded yet (404) is polled again. Raises :class:`WaitTimeoutError`.
        """
        deadline = time.monotonic() + timeout_s
        last: JobStatus | None = None
        while True:
            try:
                last = self.status(job_id)
            except NotFoundError:
                last = None
            if last is not None and last.done:
                return last
            if time.monotonic() + poll_s > deadline:
                raise WaitTimeoutError(job_id, timeout_s, last)
            self._sleep(poll_s)

    # -- cancel -------------------------------------------------------------------------

    def cancel(self, job_id: str) -> Cancellation:
        """Cancel a job that has not started (``DELETE /v1/jobs/{id}``).

        A delayed job not yet due is never published; a queued job is deleted unrun by
        the worker that receives it. Cancelling twice answers the same. Raises
        :class:`NotCancelledError` (409: running or finished, ``.state`` says which),
        :class:`NotFoundError` (404: unknown, another key's, or a queued job whose type
        does not record status), :class:`AuthError`, or :class:`EnqueueError`.
        """
        path = f"/v1/jobs/{quote(job_id, safe='')}"
        # A cancel is idempotent: safe to resend after a lost answer.
        response, body = self._with_retries(lambda: self._send("DELETE", path), resend_safe=True)
        if response.status_code == 409:
            raise NotCancelledError(
                409, _render_detail(body, "not cancelled"), retry_after_s=None, body=body
            )
        if response.status_code != 200:
            raise _error_for(response, body)
        if not isinstance(body, dict):
            raise EnqueueError(200, "the cancel's answer is unreadable")
        return Cancellation(
            id=str(body.get("id") or job_id),
            type=body.get("type"),
            state=str(body.get("state", "unknown")),
            queues={str(q): str(s) for q, s in (body.get("queues") or {}).items()},
            detail=str(body.get("detail", "")),
            raw=body,
        )

    # -- lifecycle ----------------------------------------------------------------------

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


#: The client's earlier name.
ConveyorClient = Client
