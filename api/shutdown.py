"""A replica's shutdown: when it began, and what is left of its time bound.

On SIGTERM ``banditlake serve`` (:mod:`api.server`) shuts a replica down in this order,
all within ``BANDITLAKE_SHUTDOWN_TIMEOUT_S`` (*T*) from the signal:

1. ``/readyz`` answers 503 at once, so a load balancer stops sending; requests are
   still served while it notices (the drain delay *D*, ``serve --drain-delay``);
2. the listener closes; requests in flight get up to (*T* - *D*) / 2 to finish;
3. the reallocation lease is released (it lapses at once, no TTL to wait for) and the
   lake writers flush, sharing what is left of *T*: rows still unwritten then are
   counted as dropped and logged;
4. the process exits, 0 after a signal.

One :class:`Shutdown` per app carries the clock; the server starts it on the signal, the
lifespan reads it. An app whose server does not start it (a test client, the workers of
``serve --workers N``, which uvicorn's supervisor signals itself) starts it when its
lifespan ends, and then its writers get half of *T*: the other half went to the
requests in flight.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from typing import Final

from lake.writer import LakeWriter

__all__ = ["Shutdown", "close_writers"]

log = logging.getLogger(__name__)

# Of the writers' budget, kept for the attempt under way when they stop retrying.
_LAST_ATTEMPT_S: Final = 0.5


class Shutdown:
    """The shutdown clock of one app; see the module docstring.

    Parameters
    ----------
    timeout_s
        The whole bound *T*, from the signal to the exit.
    """

    def __init__(self, timeout_s: float) -> None:
        self._timeout_s = timeout_s
        self._began: float | None = None
        self._from_signal = False

    @property
    def timeout_s(self) -> float:
        return self._timeout_s

    @property
    def begun(self) -> bool:
        """Whether the replica is shutting down (``/readyz`` then answers 503)."""
        return self._began is not None

    def begin(self, *, signalled: bool = False) -> bool:
        """Start the clock (only the first call counts); True for the first call.

        Safe in a signal handler: it sets two attributes and nothing else.
        """
        if self._began is not None:
            return False
        self._began = time.monotonic()
        self._from_signal = signalled
        return True

    def elapsed(self) -> float:
        """Seconds since :meth:`begin` (0 before)."""
        return 0.0 if self._began is None else time.monotonic() - self._began

    def remaining(self) -> float:
        """Seconds left of the bound (all of it before :meth:`begin`, never negative)."""
        return max(self._timeout_s - self.elapsed(), 0.0)

    def flush_budget(self) -> float:
        """Seconds the lake writers may take to flush: what is left of the bound.

        When the clock did not start with the signal, the requests in flight already had
        up to half of it, so the writers get the other half.
        """
        if self._from_signal:
            return self.remaining()
        return min(self.remaining(), self._timeout_s / 2)


def close_writers(writers: Mapping[str, LakeWriter], budget_s: float) -> None:
    """Close the lake writers together within ``budget_s`` seconds, and log their drops.

    Each writer retries its pending rows until the budget is nearly spent, then counts
    what is left as dropped (and says so). A writer stuck in one attempt past the budget
    is left to its daemon thread, which dies with the process: the bound wins.
    """
    started = time.monotonic()
    retry_s = max(budget_s - _LAST_ATTEMPT_S, 0.0)
    threads = [
        threading.Thread(target=w.close, args=(retry_s,), name=f"close-{t}", daemon=True)
        for t, w in writers.items()
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(max(started + budget_s - time.monotonic(), 0.0))
    stats = {table: writer.stats() for table, writer in writers.items()}
    stuck = [t for t, thread in zip(writers, threads, strict=True) if thread.is_alive()]
    dropped = sum(s.rows_dropped for s in stats.values())
    # In durable mode what is left pending is in the log, for the next start to write.
    kept = {t: s.rows_pending for t, s in stats.items() if s.rows_pending and writers[t].durable}
    log.log(
        logging.WARNING if dropped or stuck or kept else logging.INFO,
        "lake writers closed in %.1f s of %.1f s: %s rows dropped in this process's lifetime%s%s",
        time.monotonic() - started,
        budget_s,
        ", ".join(f"{s.rows_dropped} {t}" for t, s in stats.items()),
        "; left for the next start: " + ", ".join(f"{n} {t}" for t, n in kept.items())
        if kept
        else "",
        f"; still writing, abandoned: {', '.join(stuck)}" if stuck else "",
    )
