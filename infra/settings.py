"""Process settings read from the environment (``CONVEYOR_*``).

AWS settings are deliberately *not* duplicated here: boto3 already honours
``AWS_ENDPOINT_URL`` (and the per-service ``AWS_ENDPOINT_URL_SQS`` …),
``AWS_REGION``/``AWS_DEFAULT_REGION``, ``AWS_PROFILE``, credentials and
``AWS_MAX_ATTEMPTS``/``AWS_RETRY_MODE``; :mod:`infra.aws` lets it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Conveyor's own settings; every field maps to ``CONVEYOR_<FIELD>``."""

    model_config = SettingsConfigDict(env_prefix="CONVEYOR_", extra="ignore")

    #: The topology file, the single source of truth for topics, queues and job types.
    queues_file: Path = Path("queues.yaml")
    #: Overrides ``environment`` in queues.yaml (e.g. one namespace per test run).
    environment: str | None = None
    #: ``console`` for people, ``json`` for machines; ``auto`` picks by whether stderr is a TTY.
    log_format: Literal["auto", "console", "json"] = "auto"
    log_level: str = "INFO"
    #: Workers send buffered deletes/visibility changes after at most this long
    #: (a batch of 10 goes at once, and everything goes at shutdown).
    ack_flush_interval_s: float = 1.0
    #: A stopping worker lets running jobs finish this long, then cancels them.
    worker_shutdown_grace_s: float = 30.0
    #: A worker whose receive loop has not completed a turn this long exits non-zero.
    worker_liveness_timeout_s: float = 120.0
    #: Port of a worker's /healthz and /metrics (unset: not served).
    worker_health_port: int | None = None
    #: Where the CLI and the demo find the producer API.
    api_url: str = "http://127.0.0.1:8000"


def load_settings() -> Settings:
    """Read the settings from the environment now (not cached: tests change it)."""
    return Settings()
