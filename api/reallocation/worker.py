"""The reallocation loop as its own process, so lake reads never stall the serving loop.

``banditlake serve`` starts one beside the web workers; ``banditlake reallocator`` runs it
alone (one per replica is fine: the lease lets one of them work at a time).
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from datetime import timedelta
from types import FrameType

from api.reallocation.lake_views import LakeStats
from api.reallocation.loop import Reallocator
from api.settings import Settings
from api.store.engine import make_engine, make_session_factory

__all__ = ["run_child", "run_forever", "run_process"]

log = logging.getLogger(__name__)

TICK_S = 1.0


def run_forever(settings: Settings, stop: threading.Event, *, parent: int | None = None) -> None:
    engine = make_engine(settings.database_url)
    stats = LakeStats(
        engine, settings.lake_uri, lookback=timedelta(seconds=settings.feedback_lookback_s)
    )
    reallocator = Reallocator(settings, make_session_factory(engine), stats)
    log.info("reallocation loop started as %s", reallocator.holder)
    try:
        while not stop.is_set():
            if parent is not None and os.getppid() != parent:
                # The server that started us is gone (killed, or exited by a signal
                # before it could stop us): a loop without a server must not linger.
                log.info("parent process %d is gone; stopping", parent)
                break
            try:
                reallocator.run_due()
            except Exception:
                log.exception("the reallocation loop failed; retrying")
            stop.wait(TICK_S)
    finally:
        reallocator.release()
        reallocator.alerts.close()
        engine.dispose()


def run_child(settings: Settings) -> None:
    """Entry point of the process ``banditlake serve`` starts: it ends with its parent.

    It runs at a lower CPU priority: when cores are scarce, answering requests comes
    before recomputing statistics that are only due once a minute.
    """
    os.nice(5)
    run_process(settings, watch_parent=True)


def run_process(settings: Settings, *, watch_parent: bool = False) -> None:
    """Run the loop with ``settings`` until SIGTERM or SIGINT."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    stop = threading.Event()

    def _stop(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    run_forever(settings, stop, parent=os.getppid() if watch_parent else None)
