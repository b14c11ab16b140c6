"""The producer API's settings, read from ``CONVEYOR_API_*`` environment variables."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from producers.idempotency import DEFAULT_LEASE_S, DEFAULT_RETENTION_S
from producers.publisher import DEFAULT_PUBLISH_THREADS, SNS_CONNECT_TIMEOUT_S, SNS_READ_TIMEOUT_S


class ApiSettings(BaseSettings):
    """Every field maps to ``CONVEYOR_API_<FIELD>``."""

    model_config = SettingsConfigDict(env_prefix="CONVEYOR_API_", extra="ignore")

    #: ``keys`` (the default): every request needs a configured key;
    #: ``none``: no authentication (logged as a warning at start).
    auth: Literal["keys", "none"] = "keys"
    #: The YAML/JSON document of hashed keys (see :mod:`producers.auth`).
    keys_file: Path | None = None
    #: The same document inline (e.g. from a secret in the environment).
    keys: str | None = None
    #: Default per-key rate limit, in jobs per second, and its bucket size.
    rate_per_s: float = Field(default=200.0, gt=0)
    burst: float = Field(default=1000.0, ge=1)
    #: How long an idempotency key names its job.
    idempotency_retention_s: float = Field(default=DEFAULT_RETENTION_S, gt=0)
    #: How long a claimed key protects an unsettled request (see :mod:`producers.idempotency`).
    idempotency_lease_s: float = Field(default=DEFAULT_LEASE_S, gt=0)
    #: PublishBatch calls in flight at once per request.
    publish_threads: int = Field(default=DEFAULT_PUBLISH_THREADS, ge=1, le=64)
    #: Timeouts of the API's SNS and DynamoDB calls: short, so that an unreachable or
    #: frozen AWS becomes a 503 quickly instead of a hung request. Attempts stay what
    #: AWS_MAX_ATTEMPTS says (botocore's standard retry mode: 3).
    aws_connect_timeout_s: float = Field(default=SNS_CONNECT_TIMEOUT_S, gt=0, le=60)
    aws_read_timeout_s: float = Field(default=SNS_READ_TIMEOUT_S, gt=0, le=120)


def load_api_settings() -> ApiSettings:
    """Read the settings from the environment now."""
    return ApiSettings()
