"""A thin Python client for the producer API.

    with ConveyorClient("http://127.0.0.1:8000") as api:
        job = api.enqueue("image.resize", {"image_url": "https://…", "width_px": 640})
        print(job.id, job.queues)

Anything but a 202 raises :class:`EnqueueError`. Nothing is retried here: a 503
says when to retry (``retry_after_s``), and the caller knows whether retrying is
safe (pass an ``idempotency_key``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any
from urllib.parse import quote

import httpx


@dataclass(frozen=True)
class EnqueueResult:
    """A job the API accepted (SNS has it)."""

    id: str
    type: str
    status_url: str
    queues: list[str]


class EnqueueError(Exception):
    """The API refused the job, failed, or could not be reached.

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
        super().__init__(f"{status_code}: {detail}" if status_code is not None else detail)


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


class ConveyorClient:
    """Enqueue jobs through the producer API at ``base_url``."""

    def __init__(
        self,
        base_url: str,
        *,
        timeout_s: float = 10,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        """``transport`` replaces httpx's network transport (proxies, mTLS, tests)."""
        self.base_url = base_url.rstrip("/")
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout_s, transport=transport)

    def enqueue(
        self,
        job_type: str,
        payload: Mapping[str, Any],
        *,
        idempotency_key: str | None = None,
        traceparent: str | None = None,
    ) -> EnqueueResult:
        """Submit one job; return once the API answered 202, else raise :class:`EnqueueError`."""
        headers = {}
        if idempotency_key is not None:
            headers["Idempotency-Key"] = idempotency_key
        if traceparent is not None:
            headers["traceparent"] = traceparent
        try:
            response = self._http.post(
                f"/v1/jobs/{quote(job_type, safe='')}", json=dict(payload), headers=headers
            )
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            raise EnqueueError(None, f"cannot reach {self.base_url}: {exc}") from exc
        except httpx.TimeoutException as exc:
            raise EnqueueError(
                None,
                f"no answer from {self.base_url} ({type(exc).__name__}): the job may or may"
                " not have been enqueued",
            ) from exc
        except httpx.HTTPError as exc:
            raise EnqueueError(None, f"request to {self.base_url} failed: {exc}") from exc
        try:
            body: Any = response.json()
        except ValueError:
            body = None
        if response.status_code != 202:
            fallback = response.reason_phrase or f"HTTP {response.status_code}"
            raise EnqueueError(
                response.status_code,
                _render_detail(body, fallback),
                retry_after_s=_retry_after_s(response),
                body=body,
            )
        if not isinstance(body, dict) or not {"id", "type", "status_url"} <= body.keys():
            raise EnqueueError(202, "the API accepted the job but its answer is unreadable")
        return EnqueueResult(
            id=str(body["id"]),
            type=str(body["type"]),
            status_url=str(body["status_url"]),
            queues=[str(q) for q in body.get("queues", [])],
        )

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def __enter__(self) -> ConveyorClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
