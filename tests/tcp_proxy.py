"""A TCP proxy for fault tests: a dependency that turns slow, or fails over, for real.

The service under test connects to the proxy's loopback port instead of the dependency's.
``delay`` holds every chunk sent to the dependency for that many seconds, and ``stall()``
holds them all until ``release()`` (a slow store: each request waits, none fails). ``cut()`` resets every open
connection and stops listening, so new connections are refused, as they are while a
primary fails and its replacement is promoted; ``restore()`` listens again on the same
port. Nothing in the client is mocked: it sees resets, refusals and latency on a socket.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time


class TcpProxy:
    def __init__(self, upstream: tuple[str, int], *, delay: float = 0.0) -> None:
        self.upstream = upstream
        self.delay = delay
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._listener: socket.socket | None = None
        self._flowing = threading.Event()
        self._flowing.set()
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        self.port = int(probe.getsockname()[1])
        probe.close()
        self.restore()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def restore(self) -> None:
        """Listen (again) on the proxy's port."""
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def stall(self) -> None:
        """Hold everything sent to the dependency until ``release``."""
        self._flowing.clear()

    def release(self) -> None:
        self._flowing.set()

    def cut(self) -> None:
        """Reset every open connection and refuse new ones until ``restore``."""
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        with self._lock:
            sockets, self._open = self._open, set()
        for sock in sockets:
            with contextlib.suppress(OSError):
                # Linger 0: close sends a reset, as a dead host's replacement would.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                sock.close()

    def close(self) -> None:
        self.release()
        self.cut()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # cut
            try:
                server = socket.create_connection(self.upstream, timeout=10)
            except OSError:
                client.close()
                continue
            server.settimeout(None)
            with self._lock:
                if self._listener is not listener:
                    client.close()
                    server.close()
                    return
                self._open |= {client, server}
            pair = (client, server)
            for source, sink in (pair, pair[::-1]):
                threading.Thread(
                    target=self._pipe, args=(source, sink, source is client, pair), daemon=True
                ).start()

    def _pipe(
        self,
        source: socket.socket,
        sink: socket.socket,
        upstream: bool,
        pair: tuple[socket.socket, socket.socket],
    ) -> None:
        try:
            while chunk := source.recv(65536):
                if upstream:
                    self._flowing.wait()
                    if self.delay:
                        time.sleep(self.delay)
                sink.sendall(chunk)
        except OSError:
            pass
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)
        if upstream:
            return
        # The dependency's side ends last (it answers what the client sent): close both.
        with self._lock:
            self._open -= set(pair)
        for sock in pair:
            sock.close()
