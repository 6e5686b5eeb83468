"""Start the stream consumers inside a running service, or as a process of their own.

Inside ``banditlake serve --stream-experiment ...`` the consumers run on the server's
event loop and use its serving service (:func:`start_streaming` from the app's
lifespan). ``banditlake stream`` builds the same app without an HTTP server and runs its
lifespan around the consumers (:func:`run_stream`), so both paths serve, log and flush
exactly as the HTTP path does.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from dataclasses import dataclass, field

from fastapi import FastAPI
from sqlalchemy.exc import SQLAlchemyError

from api.serving.service import ServingService
from api.settings import Settings
from api.streaming.answers import Answers, read_recent_answers
from api.streaming.consumer import Consumer
from api.streaming.errors import StreamError
from api.streaming.handlers import FeedbackHandler, PredictHandler
from api.streaming.identity import StreamIdentity
from api.streaming.jetstream import JetStreamConnection
from api.streaming.options import StreamOptions
from lake.errors import LakeError

__all__ = ["Streaming", "preflight", "run_stream", "start_streaming"]

log = logging.getLogger(__name__)


@dataclass
class Streaming:
    """The running consumers of one experiment; :meth:`stop` drains them."""

    connection: JetStreamConnection
    consumers: list[Consumer]
    answers: Answers
    stop_event: asyncio.Event = field(default_factory=asyncio.Event)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.tasks = [loop.create_task(c.run(self.stop_event)) for c in self.consumers]

    async def stop(self) -> None:
        """Stop fetching, finish and settle the messages in flight, close the connection."""
        self.stop_event.set()
        results = await asyncio.gather(*self.tasks, return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException) and not isinstance(result, asyncio.CancelledError):
                log.error("a stream consumer failed", exc_info=result)
        await self.connection.close()

    async def wait(self) -> None:
        """Until a consumer ends (it only does when stopped)."""
        await asyncio.gather(*self.tasks)


async def _read_answers(app: FastAPI, service: ServingService, options: StreamOptions) -> Answers:
    """The answers already given: the durable log's rows first go to the lake, then read."""
    answers = Answers(options.answers)
    try:
        await asyncio.to_thread(service.predictions.flush)
        recent = await asyncio.to_thread(
            read_recent_answers,
            app.state.engine,
            app.state.lake_storage,
            options.experiment,
            options.answers,
        )
    except (LakeError, OSError, SQLAlchemyError) as exc:
        msg = (
            "The lake cannot be read, so the messages already answered before this start "
            f"cannot be told from new ones: {type(exc).__name__}: {exc}"
        )
        raise StreamError(msg) from exc
    for request_id, answer in recent:
        answers.remember(request_id, answer)
    log.info("stream %s: %d earlier answers read from the lake", options.experiment, len(recent))
    return answers


async def start_streaming(app: FastAPI, options: StreamOptions) -> Streaming:
    """Connect, set up the stream and the consumers, read back the answers, start."""
    service: ServingService = app.state.serving
    exp = service.runtime.experiments.get(options.experiment)
    if exp is None:
        msg = f"No experiment named {options.experiment!r}; create it before streaming to it."
        raise StreamError(msg)
    if exp.status != "running":
        log.warning(
            "experiment %s is %s: its messages wait in the stream until it runs",
            exp.name,
            exp.status,
        )
    answers = await _read_answers(app, service, options)
    connection = await JetStreamConnection.connect(options.nats_url)
    try:
        await connection.ensure_stream(options.stream_name, options.subjects)
        transport = await connection.consumer(
            options.stream_name,
            options.subject,
            options.durable_name,
            max_ack_pending=options.max_in_flight,
            ack_wait_s=options.ack_wait_s,
            reply=options.reply_subject,
        )
        identity = StreamIdentity(service.request_ids)
        consumers = [
            Consumer(
                transport,
                PredictHandler(service, options.experiment, answers, identity),
                service.metrics,
                experiment=options.experiment,
                kind="predict",
                max_in_flight=options.max_in_flight,
            )
        ]
        if options.feedback_subject is not None:
            feedback = await connection.consumer(
                options.stream_name,
                options.feedback_subject,
                f"{options.durable_name}-feedback",
                max_ack_pending=options.max_in_flight,
                ack_wait_s=options.ack_wait_s,
                reply=None,
            )
            consumers.append(
                Consumer(
                    feedback,
                    FeedbackHandler(service),
                    service.metrics,
                    experiment=options.experiment,
                    kind="feedback",
                    max_in_flight=options.max_in_flight,
                )
            )
    except BaseException:
        await connection.close()
        raise
    streaming = Streaming(connection, consumers, answers)
    streaming.start()
    log.info(
        "streaming %s: requests on %s (stream %s, consumer %s)%s",
        options.experiment,
        options.subject,
        options.stream_name,
        options.durable_name,
        f", feedback on {options.feedback_subject}" if options.feedback_subject else "",
    )
    return streaming


def preflight(settings: Settings, options: StreamOptions) -> None:
    """Before a process starts: the experiment exists and the broker answers, or a sentence.

    Inside ``serve`` a failure at start would surface as uvicorn's traceback; checked
    here, it is one line from the command.
    """
    from sqlalchemy import select

    from api.store.engine import make_engine
    from api.store.models import Experiment

    engine = make_engine(settings.database_url)
    try:
        with engine.connect() as conn:
            found = conn.scalar(select(Experiment.id).where(Experiment.name == options.experiment))
    except SQLAlchemyError as exc:
        msg = f"The SQL store cannot be read: {type(exc).__name__}: {str(exc).splitlines()[0]}"
        raise StreamError(msg) from exc
    finally:
        engine.dispose()
    if found is None:
        msg = f"No experiment named {options.experiment!r}; create it before streaming to it."
        raise StreamError(msg)

    async def reach() -> None:
        connection = await JetStreamConnection.connect(options.nats_url)
        await connection.close()

    asyncio.run(reach())


async def _run(settings: Settings, options: StreamOptions, metrics_port: int | None) -> None:
    from api.app import create_app

    app = create_app(settings, tune_gc=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with app.router.lifespan_context(app):
        if metrics_port is not None:
            from prometheus_client import start_http_server

            try:
                start_http_server(
                    metrics_port, addr="127.0.0.1", registry=app.state.metrics.registry
                )
            except (OSError, OverflowError) as exc:
                msg = f"--metrics-port {metrics_port} cannot be listened on: {exc}."
                raise StreamError(msg) from exc
        streaming = await start_streaming(app, options)
        waiting = loop.create_task(streaming.wait())
        stopping = loop.create_task(stop.wait())
        await asyncio.wait((waiting, stopping), return_when=asyncio.FIRST_COMPLETED)
        log.info("stream %s: draining the messages in flight", options.experiment)
        app.state.shutdown.begin(signalled=True)
        await streaming.stop()
        stopping.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await stopping
    # The lifespan has flushed the lake writers (and the durable logs) by now.
    log.info("stream %s: stopped", options.experiment)


def run_stream(settings: Settings, options: StreamOptions, *, metrics_port: int | None) -> None:
    """``banditlake stream``: consume until SIGTERM or SIGINT, then drain and exit."""
    # This process serves no HTTP and runs no reallocation loop: ``serve`` or
    # ``banditlake reallocator`` does that.
    serving = settings.model_copy(update={"reallocate": False})
    asyncio.run(_run(serving, options, metrics_port))
