"""A loopback TCP proxy that can cut the connection to the emulator and restore it.

``cut()`` resets every open connection and closes the listening socket, so new
connections are refused at once (what a dead endpoint or a closed security group
rule looks like to a client, as opposed to a frozen one). ``restore()`` listens on
the same port again.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading

_CHUNK_BYTES = 65536


class CuttableProxy:
    """Forwards ``127.0.0.1:<port>`` to ``target_port`` on loopback, in threads."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self._lock = threading.Lock()
        self._conns: set[socket.socket] = set()
        self._listener: socket.socket | None = None
        self.port = self._listen(0)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _listen(self, port: int) -> int:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", port))
        listener.listen(128)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()
        return int(listener.getsockname()[1])

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # cut: the listener was closed
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port))
            except OSError:
                client.close()
                continue
            with self._lock:
                self._conns |= {client, upstream}
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(src, dst), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(_CHUNK_BYTES):
                dst.sendall(data)
        except OSError:
            pass  # reset by cut() or by the other side
        finally:
            for sock in (src, dst):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
            with self._lock:
                self._conns -= {src, dst}

    def cut(self) -> None:
        """Refuse new connections and reset the open ones."""
        # shutdown() before close(): a close() alone neither wakes the threads blocked in
        # accept()/recv() on these sockets nor tells the peers (Linux keeps them open).
        if self._listener is not None:
            with contextlib.suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)
            self._listener.close()
            self._listener = None
        with self._lock:
            conns = list(self._conns)
        for sock in conns:
            with contextlib.suppress(OSError):
                # SO_LINGER 0: the pipe thread's close() then sends a reset.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                sock.shutdown(socket.SHUT_RDWR)

    def restore(self) -> None:
        """Accept connections on the same port again."""
        if self._listener is None:
            self._listen(self.port)

    def close(self) -> None:
        self.cut()
