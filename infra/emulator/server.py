"""The embedded emulator: moto's server on a loopback port, with Conveyor's fixes applied.

:class:`Emulator` runs moto's ``ThreadedMotoServer`` in a thread of the calling
process; :func:`serve` runs it in the foreground until SIGTERM/SIGINT (what
``python -m infra.emulator`` and ``conveyor emulator`` do). moto is imported when
an emulator starts, not when this module is imported (it is an optional extra
and takes about half a second to import).
"""

from __future__ import annotations

import logging
import signal
import sys
from collections.abc import Iterable
from types import TracebackType
from typing import TYPE_CHECKING, Final

from infra.emulator.fixes import apply_fixes, resolve_fix_selection
from infra.emulator.patching import FixDoesNotApplyError

if TYPE_CHECKING:
    from moto.server import ThreadedMotoServer

DEFAULT_HOST: Final = "127.0.0.1"
ENDPOINT_LINE_PREFIX: Final = "CONVEYOR_EMULATOR_ENDPOINT="
"""First line :func:`serve` prints on stdout, followed by the endpoint URL."""


class Emulator:
    """moto in server mode, in a thread of this process, with the selected fixes applied.

    ``port=0`` picks a free port; :attr:`endpoint_url` reports the real one.
    ``fixes``: None selects them from ``CONVEYOR_EMULATOR_FIXES`` (default all), a
    string uses that variable's syntax, otherwise fix names. The fixes patch moto
    for this whole process, for good: start an emulator only in a process meant
    to be one (see :func:`serve`).
    """

    def __init__(
        self,
        host: str = DEFAULT_HOST,
        port: int = 0,
        fixes: str | Iterable[str] | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self._fixes = resolve_fix_selection(fixes)  # unknown names fail here, not at start
        self._applied: list[str] = []
        self._server: ThreadedMotoServer | None = None
        self._endpoint_url: str | None = None

    @property
    def endpoint_url(self) -> str:
        """``http://HOST:PORT`` of the running emulator."""
        if self._endpoint_url is None:
            raise RuntimeError("the emulator is not running: call start() first")
        return self._endpoint_url

    @property
    def applied_fixes(self) -> list[str]:
        """The fixes applied when this emulator started."""
        return list(self._applied)

    def start(self) -> str:
        """Apply the fixes, start serving and return the endpoint URL.

        Raises OSError if the address cannot be bound (e.g. the port is taken).
        """
        if self._server is not None:
            raise RuntimeError(f"the emulator is already running at {self._endpoint_url}")
        # Fixes first: no request may reach moto's backend unfixed.
        self._applied = apply_fixes(self._fixes)
        server = _loopback_moto_server(self.host, self.port)
        host, port = server.get_host_and_port()
        self._server, self.port = server, port
        self._endpoint_url = f"http://{_url_host(host)}:{port}"
        return self._endpoint_url

    def stop(self) -> None:
        """Stop serving and release the port (a no-op if not running)."""
        server, self._server, self._endpoint_url = self._server, None, None
        if server is not None:
            server.stop()

    def __enter__(self) -> Emulator:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def disable_global_cors() -> None:
    """Stop moto's server from answering every origin's cross-origin requests.

    moto wraps each service's Flask app in ``flask_cors.CORS(app)`` (any origin, any
    method) unless ``moto.settings.DISABLE_GLOBAL_CORS``: a web page open in the
    developer's browser could then drive the emulator (create, read and purge queues)
    through fetch(). The flag is read from the environment when moto is imported and
    copied into ``moto.moto_server.werkzeug_app``, which reads it each time it builds a
    service's app (on that service's first request): set there, before serving.
    """
    from moto.moto_server import werkzeug_app  # noqa: PLC0415 - moto is an optional extra

    if not hasattr(werkzeug_app, "DISABLE_GLOBAL_CORS"):
        raise FixDoesNotApplyError(
            "moto.moto_server.werkzeug_app.DISABLE_GLOBAL_CORS is gone: find how this moto"
            " release enables CORS and turn it off in infra.emulator.server"
        )
    werkzeug_app.DISABLE_GLOBAL_CORS = True


def _loopback_moto_server(host: str, port: int) -> ThreadedMotoServer:
    """A started ``ThreadedMotoServer`` bound to ``host``, with three of its quirks mended."""
    from moto.server import ThreadedMotoServer  # noqa: PLC0415 - moto is an optional extra

    # Not one of the selectable fixes: the emulator never serves other origins.
    disable_global_cors()

    class _MotoServer(ThreadedMotoServer):
        startup_error: BaseException | None = None

        def _server_entry(self) -> None:
            # moto binds inside the thread, and start() waits for an event set only
            # after a successful bind: a taken port would make start() hang forever.
            try:
                super()._server_entry()
            except BaseException as exc:
                if self._server_ready_event.is_set():
                    raise  # failed while serving: threading reports it
                # werkzeug answers a bind failure by printing it and sys.exit(1):
                # hand over the OSError behind that exit.
                context = exc.__context__
                is_bind_failure = isinstance(exc, SystemExit) and isinstance(context, OSError)
                self.startup_error = context if is_bind_failure else exc
                self._server_ready_event.set()

        def stop(self) -> None:
            super().stop()
            # moto's stop() shuts the serving loop down but leaves the socket
            # listening: without this, restarting on the same port fails.
            if self._server is not None:
                self._server.server_close()

    # ip_address: ThreadedMotoServer binds 0.0.0.0 unless told otherwise.
    # verbose=False: it would print a banner on stdout, whose first line is ours.
    server = _MotoServer(ip_address=host, port=port, verbose=False)
    server.start()
    if server.startup_error is not None:
        raise server.startup_error
    return server


def _url_host(host: str) -> str:
    if host in ("0.0.0.0", ""):  # noqa: S104 - listening everywhere: clients on this machine use loopback
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host


def serve(host: str = DEFAULT_HOST, port: int = 0, fixes: str | Iterable[str] | None = None) -> int:
    """Run the emulator in the foreground until SIGTERM or SIGINT; return the exit status.

    Prints ``CONVEYOR_EMULATOR_ENDPOINT=<url>`` as the first line on stdout (flushed)
    once it is serving, then a line for humans on stderr naming the applied fixes.
    Stops cleanly on SIGTERM/SIGINT and returns 0; returns 1 if the address cannot
    be bound. Must run in the main thread. ``fixes`` as for :class:`Emulator`.
    """
    emulator = Emulator(host, port, fixes)
    # werkzeug logs every request at INFO on stderr: at thousands of requests a
    # second that is most of a log and real CPU. Errors (500s) are still logged.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    stop_signals = {signal.SIGTERM, signal.SIGINT}
    # Blocked before the server threads exist, so they inherit the mask and the
    # signals stay pending for sigwait() below: no handler runs in the middle of
    # anything, and nothing races between "serving" and "waiting for a signal".
    previous_mask = signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)
    try:
        try:
            endpoint = emulator.start()
        except OSError as exc:
            print(f"conveyor emulator: cannot listen on {host}:{port}: {exc}", file=sys.stderr)
            return 1
        print(f"{ENDPOINT_LINE_PREFIX}{endpoint}", flush=True)
        print(_describe(emulator), file=sys.stderr, flush=True)
        received = signal.sigwait(stop_signals)
        print(
            f"conveyor emulator: {signal.Signals(received).name} received, stopping",
            file=sys.stderr,
            flush=True,
        )
        emulator.stop()
        return 0
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous_mask)


def _describe(emulator: Emulator) -> str:
    import moto  # noqa: PLC0415 - already imported by the running emulator

    version = moto.__version__
    fixes = ", ".join(emulator.applied_fixes) or "none (moto's SQS as shipped)"
    return (
        f"conveyor emulator: moto {version} serving on {emulator.endpoint_url} "
        f"(Ctrl-C to stop); SQS fixes applied: {fixes}"
    )
