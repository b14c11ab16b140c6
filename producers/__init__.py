"""The producer side: the HTTP API that validates and publishes jobs, and its client.

Modules: :mod:`producers.app` (the FastAPI app and the single-job routes),
:mod:`producers.batch` (``POST /v1/jobs``), :mod:`producers.enqueue` (the pipeline:
idempotency claim, claim check, publish, ledger), :mod:`producers.publisher` (SNS
Publish/PublishBatch and error mapping), :mod:`producers.idempotency` (keys in
DynamoDB), :mod:`producers.auth` / :mod:`producers.guard` / :mod:`producers.ratelimit`
(API keys, 401/403/429), :mod:`producers.metrics` (``/metrics``),
:mod:`producers.limits` (request body limit), :mod:`producers.config` (settings),
:mod:`producers.status` (``GET /v1/jobs/{id}``), :mod:`producers.serve` (uvicorn),
:mod:`producers.client` (the Python client).

Names are imported lazily, so that ``from producers.client import Client``
does not pull in FastAPI and boto3.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from producers.app import create_app
    from producers.client import (
        AuthError,
        BatchItemResult,
        Client,
        ConveyorClient,
        EnqueueError,
        EnqueueResult,
        JobStatus,
        NotFoundError,
        Retry,
        WaitTimeoutError,
    )
    from producers.publisher import Publisher, PublishError
    from producers.serve import serve

_EXPORTS = {
    "create_app": "producers.app",
    "AuthError": "producers.client",
    "BatchItemResult": "producers.client",
    "Client": "producers.client",
    "ConveyorClient": "producers.client",
    "EnqueueError": "producers.client",
    "EnqueueResult": "producers.client",
    "JobStatus": "producers.client",
    "NotFoundError": "producers.client",
    "Retry": "producers.client",
    "WaitTimeoutError": "producers.client",
    "Publisher": "producers.publisher",
    "PublishError": "producers.publisher",
    "serve": "producers.serve",
}

__all__ = [
    "AuthError",
    "BatchItemResult",
    "Client",
    "ConveyorClient",
    "EnqueueError",
    "EnqueueResult",
    "JobStatus",
    "NotFoundError",
    "PublishError",
    "Publisher",
    "Retry",
    "WaitTimeoutError",
    "create_app",
    "serve",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'producers' has no attribute '{name}'")
    return getattr(importlib.import_module(module), name)
