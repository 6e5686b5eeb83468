"""The real service on a free loopback port, in a background thread of this process.

The demo's traffic goes through HTTP like any client's. The port is one the kernel hands
out, held by the socket from the start, so nothing can take it between choosing and
binding, and port 8000 stays free for ``banditlake serve`` right after.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from types import TracebackType

import uvicorn
from starlette.types import ASGIApp

from api.demo.errors import DemoError

__all__ = ["BackgroundServer"]

log = logging.getLogger(__name__)

_HOST = "127.0.0.1"


def _loopback_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind((_HOST, 0))
    except OSError as exc:
        sock.close()
        msg = f"The demo could not open a free port on {_HOST} for its service ({exc})."
        raise DemoError(msg) from exc
    return sock


class BackgroundServer:
    """``with BackgroundServer(app) as base_url:`` serves ``app`` until the block ends.

    Leaving the block shuts the service down gracefully, so its lifespan flushes the lake
    writers before the thread ends.
    """

    def __init__(
        self, app: ASGIApp, *, start_timeout_s: float = 120.0, stop_timeout_s: float = 60.0
    ) -> None:
        self._app = app
        self._start_timeout_s = start_timeout_s
        self._stop_timeout_s = stop_timeout_s
        self._socket: socket.socket | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> str:
        sock = _loopback_socket()
        port = int(sock.getsockname()[1])
        config = uvicorn.Config(
            self._app,
            host=_HOST,
            port=port,
            log_level="warning",
            access_log=False,
            lifespan="on",
        )
        server = uvicorn.Server(config)
        thread = threading.Thread(
            target=server.run,
            kwargs={"sockets": [sock]},
            name="banditlake-demo-server",
            # A server stuck in shutdown must not keep the command from exiting.
            daemon=True,
        )
        self._socket, self._server, self._thread = sock, server, thread
        thread.start()
        try:
            self._wait_started(server, thread)
        except BaseException:
            self._stop()
            raise
        return f"http://{_HOST}:{port}"

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        stopped = self._stop()
        if not stopped and exc is None:
            msg = (
                f"The demo's service did not shut down within {self._stop_timeout_s:g} s, "
                "so the lake may miss its last rows."
            )
            raise DemoError(msg)

    def _wait_started(self, server: uvicorn.Server, thread: threading.Thread) -> None:
        deadline = time.monotonic() + self._start_timeout_s
        while not server.started:
            if not thread.is_alive():
                msg = "The demo's service failed while starting; the log above says why."
                raise DemoError(msg)
            if time.monotonic() > deadline:
                msg = f"The demo's service did not start within {self._start_timeout_s:g} s."
                raise DemoError(msg)
            time.sleep(0.02)

    def _stop(self) -> bool:
        """Ask the server to exit and wait for it; ``False`` if it is still running."""
        stopped = True
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout=self._stop_timeout_s)
            stopped = not self._thread.is_alive()
            if not stopped:
                log.warning("the demo's service is still shutting down; leaving it behind")
        if self._socket is not None:
            self._socket.close()
        self._server = self._thread = self._socket = None
        return stopped
