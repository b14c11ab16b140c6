"""Conveyor's workers: the handler API, the Celery consumer, the Lambda adapter.

``workers.lambda_handler`` is the AWS Lambda entry point (see
:mod:`workers.lambda_adapter`). It is resolved on first access, so ``import workers``
stays cheap for everything that never runs in Lambda.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from workers.lambda_adapter import lambda_handler

__all__ = ["lambda_handler"]


def __getattr__(name: str) -> Any:
    if name == "lambda_handler":
        from workers.lambda_adapter import lambda_handler  # noqa: PLC0415 - lazy on purpose

        return lambda_handler
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
