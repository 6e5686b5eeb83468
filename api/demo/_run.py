"""``run_demo``: three digit classifiers as a bandit experiment on real data, end to end."""

from __future__ import annotations

import gc
import logging
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TextIO

import numpy as np
from sqlalchemy.exc import SQLAlchemyError

from api.app import create_app
from api.demo._client import ServiceClient
from api.demo._digits import FEATURES, OUTPUT, Candidate, Holdout, train_candidates
from api.demo._progress import ProgressBar
from api.demo._replay import ReplayPlan, replay
from api.demo._server import BackgroundServer
from api.demo._summary import render_summary
from api.demo.errors import DemoError
from api.next_steps import next_steps
from api.readout.report import Report
from api.schemas import AllocationOut, ExperimentCreate, ExperimentOut, PolicySpec, RewardSpec
from api.serving.sessions import Device, provider_reason
from api.settings import Settings

__all__ = ["EXPERIMENT", "run_demo"]

EXPERIMENT = "digits"

_DESCRIPTION = (
    "banditlake demo: three classifiers of scikit-learn's handwritten digits (logistic "
    "regression, Gaussian naive Bayes, a depth-4 decision tree) compete for traffic; the "
    "reward is accuracy against labels that arrive late."
)
# The demo waits for the lake writers to drain before each reallocation (the policy reads
# the lake); a short flush interval keeps that wait short.
_FLUSH_INTERVAL_MS = 200


@contextmanager
def _quiet(*names: str) -> Iterator[None]:
    """Raise these loggers to WARNING for the block.

    The HTTP client logs a line per request and Alembic a line per plugin at INFO, which
    ``banditlake``'s logging shows: thousands of lines would bury the progress bar. The
    model pool's line per loaded variant is said by the demo's own "registered" line.
    """
    loggers = [logging.getLogger(name) for name in names]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(max(logger.getEffectiveLevel(), logging.WARNING))
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def _say(stream: TextIO, text: str) -> None:
    stream.write(f"banditlake demo: {text}\n")
    stream.flush()


def _check_arguments(rows: int, port: int) -> None:
    if rows < 1:
        msg = f"rows must be at least 1 request to replay; got {rows}."
        raise DemoError(msg)
    if not 1 <= port <= 65_535:
        msg = f"port must be a TCP port between 1 and 65535; got {port}."
        raise DemoError(msg)


def _migrate(settings: Settings) -> None:
    # Imported here, inside ``_quiet``: Alembic logs its plugins at INFO on import.
    from alembic.util.exc import CommandError

    from api.store.migrate import upgrade

    where = settings.database_url.split("@")[-1]
    try:
        upgrade(settings.database_url)
    except (SQLAlchemyError, CommandError, OSError) as exc:
        msg = f"The SQL store at {where} cannot be reached or migrated: {_cause(exc)}."
        raise DemoError(msg) from exc


def _cause(exc: BaseException) -> str:
    """The first line of the driver's own message, without SQLAlchemy's wrapping."""
    original = getattr(exc, "orig", None) or exc
    lines = str(original).strip().splitlines()
    return lines[0].rstrip(".") if lines else type(original).__name__


def _experiment_spec() -> ExperimentCreate:
    return ExperimentCreate(
        name=EXPERIMENT,
        description=_DESCRIPTION,
        reward=RewardSpec(kind="label", metric="accuracy"),
        policy=PolicySpec(kind="thompson"),
        # A floor keeps a trickle of traffic on every arm, so a model that improves is seen.
        min_weight=0.02,
        # The demo reallocates by itself; the hourly loop is for `banditlake serve` after it.
        reallocate_every_s=3600,
    )


def _ensure_experiment(
    client: ServiceClient, candidates: Sequence[Candidate], err: TextIO, *, device: Device
) -> ExperimentOut:
    """Create what is missing, touch nothing that exists: a second run adds no duplicates."""
    experiment = client.experiment(EXPERIMENT)
    if experiment is None:
        experiment = client.create_experiment(_experiment_spec())
        _say(err, f"created the experiment {EXPERIMENT!r} (Thompson sampling on accuracy)")
    elif experiment.reward.kind != "label":
        msg = (
            f"An experiment named {EXPERIMENT!r} already exists with a {experiment.reward.kind} "
            "reward, so it is not the demo's; the demo leaves it alone."
        )
        raise DemoError(msg)
    else:
        _say(err, f"the experiment {EXPERIMENT!r} exists ({experiment.status}); reusing it")
    if experiment.status != "draft":
        return experiment
    # Only a draft gets arms here: a draft left by an interrupted first run is finished.
    present = {variant.name for variant in client.variants(EXPERIMENT)}
    for candidate in candidates:
        if candidate.name in present:
            continue
        variant = client.upload_variant(
            EXPERIMENT, candidate.name, candidate.onnx, features=FEATURES, output=OUTPUT
        )
        why = f" ({provider_reason(device, variant.provider)})" if variant.provider else ""
        _say(
            err,
            f"registered {candidate.name} ({candidate.description}) on {variant.provider}{why}",
        )
    return client.set_status(EXPERIMENT, "running")


def _send_traffic(
    client: ServiceClient, holdout: Holdout, rows: int, seed: int, err: TextIO
) -> None:
    _say(err, f"replaying {rows} held-out digits as traffic to {client.base_url}")
    started = time.monotonic()
    tally = replay(
        client,
        holdout,
        ReplayPlan(experiment=EXPERIMENT, rows=rows),
        rng=np.random.default_rng(seed),
        progress=ProgressBar(rows, err),
    )
    elapsed = time.monotonic() - started
    _say(
        err,
        f"{rows} requests and {tally.reallocations} reallocations in {elapsed:.1f} s "
        f"({rows / max(elapsed, 1e-9):.0f} requests/s); served "
        + ", ".join(f"{name} {count}" for name, count in tally.served.most_common()),
    )


def run_demo(
    settings: Settings,
    *,
    rows: int = 3000,
    port: int = 8000,
    seed: int = 0,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> None:
    """Run the digits experiment through the real service and print what the bandit did.

    Steps: migrate the store; train logistic regression, Gaussian naive Bayes and a
    depth-4 tree on half of scikit-learn's digits and export them to ONNX; start the
    service on a free loopback port; create the experiment ``digits`` and register the
    models through the REST API (skipped when it exists); replay ``rows`` held-out digits
    as requests, sending their true labels late and reallocating every 250 requests;
    print the allocation history, each variant's accuracy and the verdict to ``out``.

    A second run reuses the experiment: if it is running it gets ``rows`` more requests,
    if it is paused or stopped the demo only prints its summary. ``port`` is the port of
    the ``banditlake serve`` the dashboard link points at; the demo itself never uses it.
    ``seed`` draws the order in which the held-out rows are replayed. The summary goes to
    ``out`` and the progress to ``err`` (by default ``sys.stdout`` and ``sys.stderr`` as
    they are when the demo runs).

    Raises
    ------
    DemoError
        With one sentence, when the demo cannot run (bad arguments, the store unreachable,
        a missing dependency, the service refusing a call).
    """
    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err
    _check_arguments(rows, port)
    with _quiet("httpx", "httpcore", "alembic", "api.serving.pool"):
        _migrate(settings)
        _say(err, "training three classifiers on scikit-learn's handwritten digits")
        candidates, holdout = train_candidates()
        _say(
            err,
            "held-out accuracy: "
            + ", ".join(f"{c.name} {c.accuracy:.3f}" for c in candidates)
            + f" on {len(holdout)} digits",
        )
        history, report = _run_experiment(
            settings, candidates, holdout, rows=rows, seed=seed, err=err
        )
    offline = {c.name: c.accuracy for c in candidates}
    steps = next_steps(settings, host="127.0.0.1", port=port)
    out.write(render_summary(history, report, offline, steps))
    out.flush()


def _run_experiment(
    settings: Settings,
    candidates: Sequence[Candidate],
    holdout: Holdout,
    *,
    rows: int,
    seed: int,
    err: TextIO,
) -> tuple[list[AllocationOut], Report]:
    """Serve, register, replay; return the allocation history and the final report."""
    app_settings = settings.model_copy(
        update={"lake_flush_interval_ms": _FLUSH_INTERVAL_MS, "reallocate": False}
    )
    try:
        with (
            BackgroundServer(create_app(app_settings)) as base_url,
            ServiceClient(base_url, settings) as client,
        ):
            client.check_health()
            experiment = _ensure_experiment(client, candidates, err, device=settings.device)
            if experiment.status == "running":
                _send_traffic(client, holdout, rows, seed, err)
            else:
                _say(err, f"the experiment is {experiment.status}, so no traffic is sent")
            client.wait_for_lake()
            return client.allocations(EXPERIMENT), client.report(EXPERIMENT)
    finally:
        # The service's lifespan froze everything alive into the permanent generation (a
        # serving optimisation); in this process the service is over, so let it be freed.
        gc.unfreeze()
        gc.collect()
