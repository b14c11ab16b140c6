"""The consumer boundary: a received message becomes a job, or the reason it cannot.

Every consumer calls :func:`read_job` and nothing else to decode a message: the
transport (in the Celery consumer, to route it to its task), the runner (in the
pool, and in AWS Lambda through :mod:`workers.lambda_adapter`). It never raises:
a message is data, and whatever goes wrong while reading it — invalid JSON, a body
nested a thousand levels deep (``RecursionError``), a number Python refuses, a lone
surrogate, a bug in a validator — is a :class:`Refusal` with a reason from
:data:`infra.failure.REASONS`, and the message is dead-lettered on its first
receive. The node and the rest of its batch carry on.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from infra.envelope import Envelope, EnvelopeError, decode

__all__ = ["Refusal", "read_job"]


@dataclass(frozen=True)
class Refusal:
    """Why a message is not a job: ``reason`` (a REASONS code) and the error that said so."""

    reason: str
    error: BaseException


def read_job(message: Mapping[str, Any]) -> Envelope | Refusal:
    """The job in an SQS API-shaped ``message`` (its ``Body``), or why there is none."""
    try:
        body = message.get("Body")
        if body is None:
            body = ""
        if not isinstance(body, str | bytes):
            return Refusal("undecodable", TypeError(f"a {type(body).__name__} message body"))
        return decode(body)
    except EnvelopeError as exc:
        return Refusal(exc.reason, exc)
    except RecursionError as exc:  # infra.envelope bounds depth; this is the backstop
        return Refusal("too_deep", exc)
    except MemoryError as exc:
        return Refusal("too_large", exc)
    except Exception as exc:  # noqa: BLE001 - a message must never crash its consumer
        return Refusal("undecodable", exc)
