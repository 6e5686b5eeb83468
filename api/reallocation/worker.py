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
from pathlib import Path
from types import FrameType

from api.alerts.signals import dropped_in_metrics_dir
from api.reallocation.lake_views import LakeStats
from api.reallocation.loop import Reallocator
from api.settings import Settings
from api.store.engine import make_engine, make_session_factory

__all__ = ["run_child", "run_forever", "run_process", "workers_metrics_dir"]

log = logging.getLogger(__name__)

TICK_S = 1.0


def workers_metrics_dir(settings: Settings, parent: int | None) -> Path | None:
    """Where the web workers write their Prometheus samples, if they do.

    ``PROMETHEUS_MULTIPROC_DIR`` when set; under ``serve --workers N`` (which starts this
    process before it sets the variable for its workers) the directory it names after its
    own pid (:func:`api.cli.worker_environment`). With one worker that directory is never
    made (the counts stay in the worker's memory), and reading it gives ``None``.
    """
    named = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if named:
        return Path(named)
    if parent is not None:
        return settings.home / "metrics" / f"serve-{parent}"
    return None


def run_forever(settings: Settings, stop: threading.Event, *, parent: int | None = None) -> None:
    engine = make_engine(settings.database_url)
    stats = LakeStats(
        engine, settings.lake_uri, lookback=timedelta(seconds=settings.feedback_lookback_s)
    )
    reallocator = Reallocator(settings, make_session_factory(engine), stats)
    metrics_dir = workers_metrics_dir(settings, parent)
    if metrics_dir is not None:
        # The web workers' dropped-rows counts, for the rows_dropped alert rule.
        reallocator.alerts.watch_dropped(lambda: dropped_in_metrics_dir(metrics_dir))
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
