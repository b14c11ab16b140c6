"""The FastAPI dependencies of authentication (401), authorization (403) and rate limits (429).

The key itself is checked earlier, from the headers, by :class:`producers.gate.ApiKeyGate`
(before the body is read); :meth:`Guard.authenticate` hands the key it found to the
routes (and checks the headers again should a route ever be reached without the gate).
No ``from __future__ import annotations``: FastAPI reads these signatures at runtime.
"""

from collections.abc import Callable, Sequence
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request
from fastapi.security import APIKeyHeader, HTTPBearer

from infra.settings import ApiSettings
from producers.auth import ApiKey, KeyRing, presented_key
from producers.enqueue import Outcome
from producers.gate import INVALID_KEY, MISSING_KEY, request_key
from producers.http import error
from producers.metrics import ApiMetrics
from producers.ratelimit import RateLimiter

# Declared as security schemes, so OpenAPI shows both ways to send a key.
_BEARER = HTTPBearer(auto_error=False, description="Authorization: Bearer <API key>")
_API_KEY_HEADER = APIKeyHeader(name="X-API-Key", auto_error=False)


class Guard:
    """Who is calling, what they may enqueue, and how fast; ``keys=None``: no auth."""

    def __init__(
        self, keys: Sequence[ApiKey] | None, settings: ApiSettings, metrics: ApiMetrics
    ) -> None:
        self.ring = KeyRing(keys) if keys is not None else None
        self.settings = settings
        self.metrics = metrics
        self.limiter = RateLimiter()
        self.authenticate = self._authenticate_dependency()

    def _authenticate_dependency(self) -> Callable[..., ApiKey | None]:
        ring, metrics = self.ring, self.metrics

        def authenticate(
            request: Request,
            _bearer: Annotated[Any, Depends(_BEARER)] = None,
            x_api_key: Annotated[str | None, Depends(_API_KEY_HEADER)] = None,
        ) -> ApiKey | None:
            if ring is None:
                return None
            key = request_key(request.scope)
            if key is not None:  # the gate checked it
                return key
            authorization = request.headers.get("Authorization")
            key = ring.find(presented_key(authorization, x_api_key))
            if key is None:
                metrics.request_rejected("unauthorized")
                detail = INVALID_KEY if authorization or x_api_key else MISSING_KEY
                raise HTTPException(401, detail, headers={"WWW-Authenticate": "Bearer"})
            return key

        return authenticate

    def authorizer(self, job_type: str) -> Callable[..., ApiKey | None]:
        """A dependency: the request's key, which must be allowed ``job_type`` (else 403)."""
        metrics = self.metrics

        def authorize(
            key: Annotated[ApiKey | None, Depends(self.authenticate)],
        ) -> ApiKey | None:
            if key is not None and not key.may_enqueue(job_type):
                metrics.outcome(Outcome(0, 403, job_type, "forbidden"))
                raise HTTPException(403, f"API key '{key.name}' may not enqueue {job_type} jobs")
            return key

        return authorize

    def rate_limit(self, key: ApiKey | None, cost: int) -> None:
        """Spend ``cost`` jobs of ``key``'s rate; 429 with Retry-After when it is used up."""
        if key is None:
            return
        wait_s = self.limiter.take(
            key.name,
            cost,
            rate_per_s=key.rate_per_s or self.settings.rate_per_s,
            burst=key.burst or self.settings.burst,
        )
        if wait_s is not None:
            self.metrics.request_rejected("rate_limited")
            raise error(429, f"rate limit of API key '{key.name}' exceeded", wait_s)

    @staticmethod
    def key_name(key: ApiKey | None) -> str | None:
        """The name the ledger records as the job's owner (None: no authentication)."""
        return key.name if key is not None else None

    @staticmethod
    def scope(key: ApiKey | None) -> str:
        """The namespace of the caller's idempotency keys: the API key's name."""
        return key.name if key is not None else "-"

    def may_read(self, key: ApiKey | None, owner: str | None) -> bool:
        """Whether ``key`` sees the status of a job enqueued by the key named ``owner``.

        Without authentication everyone sees every job; with it, the enqueuing key and
        ``admin`` keys do (a job recorded without a key name: admin keys only).
        """
        return self.ring is None or (key is not None and key.may_read(owner))
