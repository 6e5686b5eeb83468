"""The application factory: ``create_app(settings)`` builds one self-contained service."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import TYPE_CHECKING

import pyarrow as pa
from fastapi import FastAPI, Response
from sqlalchemy import Engine, event
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from api.body_limit import BodyLimitMiddleware
from api.deps import MetricsDep
from api.errors import install_handlers
from api.metrics import CONTENT_TYPE_LATEST, Metrics
from api.reallocation.lake_views import LakeStats
from api.reallocation.loop import Reallocator
from api.routes import (
    alerts,
    allocations,
    dashboard,
    docs,
    experiments,
    landing,
    ops,
    serving,
    variants,
)
from api.serving.model_store import ModelStore
from api.serving.pool import ModelPool
from api.serving.request_ids import RequestIds
from api.serving.service import ServingService
from api.serving.sessions import DeviceUnavailableError, cuda_available
from api.serving.sync import sync_pool
from api.settings import Settings
from api.shutdown import Shutdown, close_writers
from api.store.engine import make_engine, make_session_factory
from api.store.secrets import shared_secret
from lake.dashboard import DashboardQueries
from lake.durable import DurableLog, open_slot
from lake.errors import LakeConfigError
from lake.inventory import lake_inventory
from lake.janitor import janitor, recover_dead_writers
from lake.ledger import WriterLedger
from lake.storage import open_storage
from lake.writer import LakeWriter

if TYPE_CHECKING:
    from api.streaming import StreamOptions

__all__ = ["create_app", "create_app_from_env", "tune_gc_for_serving"]

log = logging.getLogger(__name__)

# Multipart framing around the model file; the exact limit is enforced on the file itself.
_FORM_OVERHEAD = 64 * 1024


def _load_models(app: FastAPI) -> None:
    """Load every stored variant; a model that fails is marked failed, the others serve."""
    with app.state.session_factory() as session:
        sync_pool(session, app.state.pool, app.state.model_store, mark_failed=True)
        session.commit()


def _request_id_secret(settings: Settings, session_factory: sessionmaker[Session]) -> bytes:
    """The key that signs request ids: the environment's, else one shared through the store."""
    if settings.request_id_secret is not None:
        return settings.request_id_secret.get_secret_value().encode()
    return shared_secret(session_factory, "request_id")


# How often the lake's inventory (one grouped query on the manifest) is read for /metrics.
_INVENTORY_EVERY_S = 15.0


async def _refresh_loop(app: FastAPI, service: ServingService, settings: Settings) -> None:
    """Pick up allocation versions written by other processes (the reallocator, the CLI)."""
    interval = settings.allocation_refresh_ms / 1000.0
    inventory_due = 0.0
    while True:
        await asyncio.sleep(interval)
        try:
            await asyncio.to_thread(service.refresh, force=False)
            service.sync_metrics()
            service.metrics.sync_storage("lake", app.state.lake_storage.stats())
            service.metrics.sync_storage("models", app.state.model_store.storage.stats())
            if time.monotonic() >= inventory_due:
                inventory_due = time.monotonic() + _INVENTORY_EVERY_S
                inventory = await asyncio.to_thread(lake_inventory, app.state.engine)
                service.metrics.set_inventory(inventory)
        except Exception:
            log.exception("refreshing the experiment snapshot failed; serving the last one")


async def _reallocate_loop(reallocator: Reallocator) -> None:
    """Every second, the replica holding the lease reallocates the experiments that are due."""
    while True:
        await asyncio.sleep(1.0)
        try:
            await asyncio.to_thread(reallocator.run_due)
        except Exception:
            log.exception("the reallocation loop failed; retrying")


def tune_gc_for_serving() -> None:
    """Tune the garbage collector for a long-lived serving process (``banditlake serve``).

    Everything built at start lives as long as the process: moving it out of the
    collector's view turns full collections (measured at up to 160 ms on the serving
    path) into scans of the per-request garbage only. Requests make short-lived garbage by
    the thousand per second; collecting the young generation every 700 allocations (the
    default) cost ~4% of the CPU (``benchmarks/serving.py``). It changes the whole
    process, so only ``serve`` asks for it; an app built in a test or a notebook does not.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 20, 20)


def _open_durable_logs(
    settings: Settings, writers: dict[str, LakeWriter], engine: Engine
) -> list[DurableLog]:
    """Open this replica's durable logs and queue what a previous process left in them."""
    logs: list[DurableLog] = []
    try:
        for table in ("predictions", "feedback"):
            durable_log = open_slot(
                settings.lake_log_dir / table,
                writers[table],
                max_bytes=settings.lake_durable_max_bytes,
                wait_s=settings.lake_durable_wait_ms / 1000.0,
            )
            logs.append(durable_log)
            try:
                durable_log.replay(writers[table].storage, engine)
            except (OSError, pa.ArrowException, SQLAlchemyError) as exc:
                msg = (
                    f"The durable log {durable_log.directory} holds rows from before a "
                    "restart, and the lake cannot be read to tell which are already in it: "
                    f"{type(exc).__name__}: {exc}"
                )
                raise LakeConfigError(msg) from exc
    except BaseException:
        for opened in logs:
            opened.close()
        raise
    return logs


def create_app(
    settings: Settings, *, tune_gc: bool = False, stream: StreamOptions | None = None
) -> FastAPI:
    """Build the service. Heavy resources are created in the lifespan, not here.

    ``tune_gc`` applies :func:`tune_gc_for_serving` once the service is built (``serve``
    does; tests and embedded uses leave the process's collector alone). ``stream`` also
    serves an experiment's requests off NATS JetStream on the app's loop
    (:mod:`api.streaming`), drained before the writers close.
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if settings.device == "cuda" and not cuda_available():
            msg = "BANDITLAKE_DEVICE=cuda but ONNX Runtime finds no working CUDA provider here."
            raise DeviceUnavailableError(msg)
        engine = make_engine(settings.database_url)
        app.state.engine = engine
        session_factory = make_session_factory(engine)
        app.state.session_factory = session_factory
        app.state.pool = ModelPool(device=settings.device, threads=settings.intra_op_threads)
        app.state.model_store = ModelStore(settings.models_uri, settings.models_dir)
        await asyncio.to_thread(_load_models, app)
        # A crash mid-flush leaves at worst an unlisted temp file: clear old ones.
        lake_storage = open_storage(settings.lake_uri)
        app.state.lake_storage = lake_storage
        removed = await asyncio.to_thread(janitor, lake_storage)
        if removed:
            log.info("removed %d stale temp files from the lake", len(removed))
        # This replica's own dead processes are known exactly: settle their files now.
        ledger = WriterLedger.open(settings.home / "lake-writers")
        try:
            await asyncio.to_thread(recover_dead_writers, lake_storage, engine, ledger.directory)
        except Exception:
            log.exception("cleaning up after dead writers failed; the next start tries again")
        writers = {
            table: LakeWriter(
                lake_storage,
                engine,
                table=table,
                writer_id=ledger.new_writer_id(),
                flush_rows=settings.lake_flush_rows,
                flush_interval_s=settings.lake_flush_interval_ms / 1000.0,
                max_buffer_rows=settings.lake_buffer_rows,
            )
            for table in ("predictions", "feedback")
        }
        logs: list[DurableLog] = []
        if settings.lake_durable:
            logs = await asyncio.to_thread(_open_durable_logs, settings, writers, engine)
            for durable_log in logs:
                durable_log.start()
        service = ServingService(
            settings,
            app.state.pool,
            session_factory,
            writers["predictions"],
            writers["feedback"],
            app.state.metrics,
            RequestIds(await asyncio.to_thread(_request_id_secret, settings, session_factory)),
            model_store=app.state.model_store,
            logs=(logs[0], logs[1]) if logs else None,
        )
        app.state.serving = service
        await asyncio.to_thread(service.refresh)
        # A policy change made through this process is visible to its next request; other
        # processes pick it up on their next poll.
        event.listen(session_factory, "after_commit", lambda _: service.refresh())
        app.state.readiness = lambda: (
            {table: w.healthy for table, w in writers.items()}
            | {f"{durable_log.table} log": durable_log.healthy for durable_log in logs}
        )
        app.state.lake_stats = LakeStats(
            engine, lake_storage, lookback=timedelta(seconds=settings.feedback_lookback_s)
        )
        # The dashboard's DuckDB connection and cache: this app's, closed when it stops.
        app.state.dashboard_queries = DashboardQueries(storage=lake_storage)
        reallocator = Reallocator(settings, session_factory, app.state.lake_stats)
        # This process's writers: the rows_dropped alert rule watches their count.
        reallocator.alerts.watch_dropped(
            lambda: sum(w.stats().rows_dropped for w in writers.values())
        )
        app.state.reallocator = reallocator
        if tune_gc:
            tune_gc_for_serving()
        tasks = [asyncio.get_running_loop().create_task(_refresh_loop(app, service, settings))]
        if settings.reallocate:
            tasks.append(asyncio.get_running_loop().create_task(_reallocate_loop(reallocator)))
        streaming = None
        if stream is not None:
            from api.streaming import start_streaming

            streaming = await start_streaming(app, stream)
        try:
            yield
        finally:
            # Not ready from here on (serve starts this clock at SIGTERM already).
            app.state.shutdown.begin()
            if streaming is not None:
                # Stop fetching, answer and acknowledge what is in flight: before the
                # service and the writers close under it.
                await streaming.stop()
            for task in tasks:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            if settings.reallocate:
                await asyncio.to_thread(reallocator.release)
            await service.close()
            for durable_log in logs:
                # What is still pending gets its fsync; the writers then flush what they can.
                await asyncio.to_thread(durable_log.stop)
            await asyncio.to_thread(close_writers, writers, app.state.shutdown.flush_budget())
            ledger.close()
            for durable_log in logs:
                durable_log.close()
            service.sync_metrics()
            app.state.dashboard_queries.close()
            reallocator.alerts.close()
            engine.dispose()
            if tune_gc:
                # Let the collector see everything again, so objects held by extension
                # modules are released normally at exit.
                gc.unfreeze()

    app = FastAPI(
        title="banditlake",
        version="0.1.0",
        summary="Multi-armed-bandit experiments over ONNX model variants with an inference lake.",
        lifespan=lifespan,
        # /docs and /redoc are served by api.routes.docs from vendored assets (no CDN).
        docs_url=None,
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.metrics = Metrics()
    app.state.shutdown = Shutdown(settings.shutdown_timeout_s)
    install_handlers(app)

    @app.get("/metrics", tags=["operations"], include_in_schema=False)
    def metrics(_: MetricsDep) -> Response:
        app.state.serving.sync_metrics()
        return Response(app.state.metrics.render(), media_type=CONTENT_TYPE_LATEST)

    app.add_middleware(
        BodyLimitMiddleware,
        limit=settings.max_body_bytes,
        upload_limit=settings.max_upload_bytes + _FORM_OVERHEAD,
    )

    # The serving routes come first: the router matches paths in order on every request.
    for router in (
        serving.router,
        ops.router,
        experiments.router,
        variants.router,
        allocations.router,
        alerts.router,
        dashboard.router,
        landing.router,
        docs.router,
    ):
        app.include_router(router)
    docs.keep_example_nulls(app)
    return app


def create_app_from_env() -> FastAPI:
    """Entry point of each worker of ``banditlake serve --workers N`` (``uvicorn --factory``).

    A worker is a new process, so its settings come from the environment ``serve`` passed
    on (see :func:`api.cli.worker_environment`).
    """
    return create_app(Settings(), tune_gc=True)
