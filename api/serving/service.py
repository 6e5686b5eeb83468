"""The serving façade the app and the routes use: one object, each job in its own module.

=================================  ===============================================
:mod:`api.serving.snapshot`        the experiment snapshot and its refresh
:mod:`api.serving.dispatch`        how a row reaches a model (inline, thread,
                                   micro-batch)
:mod:`api.serving.predict`         predict and shadow calls, logged to the lake
:mod:`api.serving.feedback`        feedback checks and storage
=================================  ===============================================
"""

from __future__ import annotations

from sqlalchemy.orm import Session, sessionmaker

from api.metrics import Metrics
from api.serving.dispatch import Dispatcher
from api.serving.feedback import FeedbackItem, FeedbackResult, FeedbackService
from api.serving.model_store import ModelStore
from api.serving.pool import ModelPool
from api.serving.predict import Prediction, Predictor, PredictRequest
from api.serving.request_ids import RequestIds
from api.serving.runtime import Runtime
from api.serving.snapshot import Snapshot
from api.settings import Settings
from lake.durable import BufferedLog, DurableLog, RowLog
from lake.writer import LakeWriter

__all__ = ["FeedbackItem", "FeedbackResult", "PredictRequest", "Prediction", "ServingService"]


class ServingService:
    """Predict and feedback over a snapshot of the SQL store, logged to the lake."""

    def __init__(
        self,
        settings: Settings,
        pool: ModelPool,
        session_factory: sessionmaker[Session],
        predictions: LakeWriter,
        feedback: LakeWriter,
        metrics: Metrics,
        request_ids: RequestIds,
        model_store: ModelStore | None = None,
        logs: tuple[RowLog, RowLog] | None = None,
    ) -> None:
        self.settings = settings
        self.pool = pool
        self.predictions = predictions
        self.feedback_writer = feedback
        self.metrics = metrics
        self.request_ids = request_ids
        self.model_store = model_store or ModelStore(settings.models_uri, settings.models_dir)
        self.snapshot = Snapshot(session_factory, pool, self.model_store, metrics)
        self._dispatcher = Dispatcher(settings, metrics)
        # How rows reach the writers: their buffers (default) or durable logs feeding them.
        prediction_log, feedback_log = logs or (BufferedLog(predictions), BufferedLog(feedback))
        self.logs = (prediction_log, feedback_log)
        self._predictor = Predictor(
            self.snapshot,
            pool,
            self._dispatcher,
            prediction_log,
            metrics,
            request_ids,
            max_batch=settings.max_predict_batch_rows,
            redaction_secret=settings.redaction_secret,
        )
        self._feedback = FeedbackService(
            self.snapshot,
            request_ids,
            feedback_log,
            metrics,
            dedup_ids=settings.feedback_dedup_ids,
            max_batch=settings.max_predict_batch_rows,
        )
        # The routes call these per request: bound here, they cost no forwarding frame.
        self.predict = self._predictor.predict
        self.predict_batch = self._predictor.predict_batch
        self.feedback = self._feedback.store
        self.feedback_batch = self._feedback.store_batch
        self.refresh = self.snapshot.refresh

    @property
    def runtime(self) -> Runtime:
        return self.snapshot.runtime

    def sync_metrics(self) -> None:
        """Copy the lake writers' counts into the metrics (the refresh loop calls it)."""
        for writer in (self.predictions, self.feedback_writer):
            stats = writer.stats()
            self.metrics.sync_counter(
                self.metrics.lake_rows_written, writer.table, stats.rows_written
            )
            self.metrics.sync_counter(
                self.metrics.lake_rows_dropped, writer.table, stats.rows_dropped
            )
            self.metrics.lake_queue_depth.labels(writer.table).set(stats.rows_pending)
        for log in self.logs:
            if isinstance(log, DurableLog):
                self.metrics.lake_log_bytes.labels(log.table).set(log.backlog_bytes)

    async def drain(self) -> None:
        """Wait for the shadow calls in flight (shutdown, tests)."""
        await self._predictor.drain()

    async def close(self) -> None:
        await self.drain()
        await self._dispatcher.close()
