"""Running the producer API under uvicorn, with limits a slow or greedy client cannot exhaust.

- ``max_concurrency`` (uvicorn's ``limit_concurrency``): connections or requests in
  progress per process; above it, new requests get 503 at once.
- ``header_timeout_s``: a connection whose request line and headers are not complete
  within this time (from its opening, or from the end of its previous response) is
  closed — uvicorn has no such deadline of its own, so a client sending headers a byte
  at a time would hold its connection (and a slot of ``max_concurrency``) forever.
- ``max_header_bytes``: h11's limit on the request line and headers (400 above it).
- ``keep_alive_timeout_s``: idle keep-alive connections are closed after this.
- The body's size and read time are the app's (:mod:`producers.limits`).
- The event loop is uvloop when it is installed (a dependency on Linux and macOS):
  :func:`new_event_loop` makes it and logs ``api.event_loop`` with its class.
  HTTP parsing stays on h11: the head deadline and size limit above are h11's.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from infra.logs import get_logger
from infra.settings import ApiSettings
from infra.topology import Topology
from producers.app import create_app
from producers.auth import ApiKey

log = get_logger("conveyor.api")


class HeaderDeadlineProtocol(H11Protocol):
    """uvicorn's h11 protocol, closing a connection whose request head is too slow.

    ``header_timeout_s`` is set on the subclass :func:`header_deadline_protocol` makes.
    """

    header_timeout_s: float = 10.0
    _head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head_timer()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE:  # a whole request head arrived
            self._disarm_head_timer()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing() and self.conn.their_state is h11.IDLE:
            self._arm_head_timer()  # the next request's head has the same deadline

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_head_timer()
        super().connection_lost(exc)

    def _arm_head_timer(self) -> None:
        self._disarm_head_timer()
        self._head_timer = self.loop.call_later(self.header_timeout_s, self._head_timed_out)

    def _disarm_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self.transport.close()


def header_deadline_protocol(header_timeout_s: float) -> type[H11Protocol]:
    """The protocol class for uvicorn's ``http=`` with this request-head deadline."""
    return type(
        "HeaderDeadlineProtocol",
        (HeaderDeadlineProtocol,),
        {"header_timeout_s": header_timeout_s},
    )


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvicorn's loop factory: uvloop when installed (as uvicorn's ``auto`` picks), else asyncio.

    It logs which loop the server runs on (``api.event_loop``), so a deployment can see
    it got the fast one.
    """
    try:
        import uvloop  # noqa: PLC0415 - optional: not built for every platform
    except ImportError:
        loop = asyncio.new_event_loop()
    else:
        loop = uvloop.new_event_loop()
    log.info("api.event_loop", loop=f"{type(loop).__module__}.{type(loop).__qualname__}")
    return loop


#: uvicorn's ``loop=``: an import string of a loop factory.
LOOP = f"{__name__}:{new_event_loop.__name__}"


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
    settings = settings or ApiSettings()
    app = create_app(topology, max_body_bytes=max_body_bytes, keys=keys, settings=settings)
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_config=None,
        access_log=True,
        loop=LOOP,
        http=header_deadline_protocol(settings.header_timeout_s),
        limit_concurrency=settings.max_concurrency,
        timeout_keep_alive=settings.keep_alive_timeout_s,
        h11_max_incomplete_event_size=settings.max_header_bytes,
    )
