"""Running the producer API under uvicorn."""

from __future__ import annotations

from collections.abc import Sequence

import uvicorn

from infra.settings import ApiSettings
from infra.topology import Topology
from producers.app import create_app
from producers.auth import ApiKey


def serve(
    topology: Topology,
    host: str = "127.0.0.1",
    port: int = 8000,
    *,
    max_body_bytes: int | None = None,
    keys: Sequence[ApiKey] | None = None,
    settings: ApiSettings | None = None,
) -> None:
    """Serve the API for ``topology`` until SIGINT/SIGTERM (``keys=None``: no authentication).

    Logging is left to :func:`infra.logs.configure_logging` (call it first):
    ``log_config=None`` stops uvicorn from installing its own handlers, so its
    access and error records propagate to the root logger, which renders them
    through structlog like every other event.
    """
    app = create_app(topology, max_body_bytes=max_body_bytes, keys=keys, settings=settings)
    uvicorn.run(app, host=host, port=port, log_config=None, access_log=True)
