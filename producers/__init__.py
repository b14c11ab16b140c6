"""The producer side: the HTTP API that validates and publishes jobs, and its client.

Modules: :mod:`producers.app` (the FastAPI app), :mod:`producers.publisher` (SNS
publish and error mapping), :mod:`producers.limits` (request body limit),
:mod:`producers.serve` (uvicorn), :mod:`producers.client` (the Python client).

Names are imported lazily, so that ``from producers.client import ConveyorClient``
does not pull in FastAPI and boto3.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from producers.app import create_app
    from producers.client import ConveyorClient, EnqueueError, EnqueueResult
    from producers.publisher import Publisher, PublishError
    from producers.serve import serve

_EXPORTS = {
    "create_app": "producers.app",
    "ConveyorClient": "producers.client",
    "EnqueueError": "producers.client",
    "EnqueueResult": "producers.client",
    "Publisher": "producers.publisher",
    "PublishError": "producers.publisher",
    "serve": "producers.serve",
}

__all__ = [
    "ConveyorClient",
    "EnqueueError",
    "EnqueueResult",
    "PublishError",
    "Publisher",
    "create_app",
    "serve",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'producers' has no attribute '{name}'")
    return getattr(importlib.import_module(module), name)
