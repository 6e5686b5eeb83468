"""The uvicorn server of ``banditlake serve``: readiness first, then a bounded shutdown.

uvicorn alone closes its listener as soon as SIGTERM arrives, while a load balancer may
still be sending to it, and then re-raises the signal, so the process dies by it after a
graceful shutdown. :class:`GracefulServer` keeps uvicorn's shutdown and changes its
start: on SIGTERM it starts the app's :class:`api.shutdown.Shutdown` clock (``/readyz``
turns 503 at once), keeps serving for the drain delay, then lets uvicorn close the
listener and wait for the requests in flight, for at most half of what is left of the
bound. A second SIGTERM skips the rest of the drain delay; SIGINT (Ctrl-C) skips it
altogether. A watchdog ends the process if the whole shutdown overruns the bound.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Callable, Sequence
from types import FrameType
from typing import Final

import uvicorn

from api.shutdown import Shutdown

__all__ = ["GracefulServer"]

log = logging.getLogger("banditlake")

# Past the bound, the watchdog waits this long for a shutdown that is about to finish.
_WATCHDOG_GRACE_S: Final = 2.0


class GracefulServer(uvicorn.Server):
    """A uvicorn server that shuts down as :mod:`api.shutdown` describes.

    Parameters
    ----------
    config
        uvicorn's configuration; its graceful-shutdown timeout is set from ``shutdown``.
    shutdown
        The app's shutdown clock (``app.state.shutdown``).
    drain_delay_s
        Seconds to keep serving after SIGTERM with ``/readyz`` at 503, so the load
        balancer sees it before the listener closes; less than the bound.
    on_shutdown
        Called once, on the event loop, when the shutdown begins (stopping the
        reallocation process, so its lease is released at once).
    """

    def __init__(
        self,
        config: uvicorn.Config,
        shutdown: Shutdown,
        *,
        drain_delay_s: float = 0.0,
        on_shutdown: Sequence[Callable[[], None]] = (),
    ) -> None:
        super().__init__(config)
        self._shutdown = shutdown
        self._drain_delay_s = drain_delay_s
        self._on_shutdown = tuple(on_shutdown)
        self._started = False

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        # Runs in a signal handler: set flags only, the next tick does the rest.
        if sig == signal.SIGTERM:
            if not self._shutdown.begin(signalled=True):
                self.should_exit = True
            # Not re-raised after the shutdown (uvicorn's default): serve exits 0.
            return
        self._shutdown.begin(signalled=True)
        super().handle_exit(sig, frame)

    async def on_tick(self, counter: int) -> bool:
        if self._shutdown.begun:
            if not self._started:
                self._started = True
                self._start_shutdown()
            if self._shutdown.elapsed() >= self._drain_delay_s:
                self.should_exit = True
        return await super().on_tick(counter)

    def _start_shutdown(self) -> None:
        timeout = self._shutdown.timeout_s
        requests_s = max((timeout - self._drain_delay_s) / 2, 0.0)
        # uvicorn waits this long for requests in flight once the listener is closed.
        self.config.timeout_graceful_shutdown = max(int(requests_s), 1)
        log.info(
            "shutting down: /readyz answers 503; serving %.1f s more, then closing the "
            "listener; requests in flight get %d s; exiting within %.1f s",
            self._drain_delay_s,
            self.config.timeout_graceful_shutdown,
            timeout,
        )
        watchdog = threading.Timer(
            self._shutdown.remaining() + _WATCHDOG_GRACE_S, self._overran, args=(timeout,)
        )
        watchdog.daemon = True
        watchdog.start()
        for callback in self._on_shutdown:
            try:
                callback()
            except Exception:
                log.exception("a shutdown step failed; shutting down anyway")

    @staticmethod
    def _overran(timeout: float) -> None:
        log.error(
            "the shutdown overran BANDITLAKE_SHUTDOWN_TIMEOUT_S=%g s; exiting now without "
            "finishing it",
            timeout,
        )
        logging.shutdown()
        os._exit(1)
