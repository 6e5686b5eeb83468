"""The predict and feedback paths: validate, choose, run, answer, log.

Everything here runs on the event loop and does no I/O beyond the model call: the
experiment snapshot is in memory, the lake append is a list append, metrics are
in-memory counters.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import secrets
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from api.errors import ConflictError, InvalidRequestError, NotFoundError, UnavailableError
from api.metrics import Metrics
from api.serving.batcher import MicroBatcher, ModelOutput, split_output
from api.serving.pool import ModelPool, VariantKey
from api.serving.runtime import ExperimentRuntime, Runtime, VariantRuntime, build_runtime
from api.serving.sessions import CPU, LoadedModel
from api.settings import Settings
from api.store.models import AuditEvent
from api.variants import sync_pool
from lake.schemas import FeedbackRow, PredictionRow
from lake.writer import LakeWriter

__all__ = ["FeedbackItem", "PredictRequest", "Prediction", "ServingService"]

log = logging.getLogger(__name__)

# Pydantic hands over a plain list or dict of finite floats (``PredictBody`` checks them);
# ``isinstance(x, dict)`` is checked rather than the much slower ABC ``Mapping``.
Features = list[float] | dict[str, float]
PredictRequest = tuple[Features, str | None]
FeedbackItem = tuple[str, float | None, float | str | None]
Prediction = dict[str, Any]

# CPU models faster than this run on the event loop: a thread hop would cost more.
_INLINE_BELOW_S = 0.0005


def _request_id(experiment_id: int, rng: random.Random) -> str:
    # The experiment id prefix lets feedback be checked without any lookup. 96 random bits
    # from a generator seeded per process by the OS: unique across replicas, no syscall.
    return f"{experiment_id}.{rng.getrandbits(96):024x}"


def _finite(output: ModelOutput) -> ModelOutput:
    # NaN or infinity is no answer (and no valid JSON): treat it as the model failing.
    if not math.isfinite(output.prediction) or (
        output.scores is not None and not all(map(math.isfinite, output.scores))
    ):
        msg = f"the model returned a non-finite output ({output.prediction}, {output.scores})"
        raise ValueError(msg)
    return output


def experiment_id_of(request_id: str) -> int | None:
    head, sep, tail = request_id.partition(".")
    if not sep or not head.isdigit() or len(tail) != 24:
        return None
    return int(head)


@dataclass(frozen=True, slots=True)
class _VariantMetrics:
    ok: Any
    error: Any
    latency: Any


class ServingService:
    def __init__(
        self,
        settings: Settings,
        pool: ModelPool,
        session_factory: sessionmaker[Session],
        predictions: LakeWriter,
        feedback: LakeWriter,
        metrics: Metrics,
    ) -> None:
        self.settings = settings
        self.pool = pool
        self.predictions = predictions
        self.feedback_writer = feedback
        self.metrics = metrics
        self._session_factory = session_factory
        self._runtime = Runtime.empty()
        self._token: int | None = None
        self._refresh_lock = threading.Lock()
        self._batchers: dict[VariantKey, tuple[LoadedModel, MicroBatcher]] = {}
        self._executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="onnx")
        self._rng = random.Random(secrets.randbits(64))
        self._inline: dict[int, bool] = {}
        self._shadow_tasks: set[asyncio.Task[None]] = set()
        self._metric_children: dict[tuple[str, str], _VariantMetrics] = {}

    # -- snapshot -------------------------------------------------------------------

    @property
    def runtime(self) -> Runtime:
        return self._runtime

    def refresh(self, *, force: bool = True) -> None:
        """Rebuild the snapshot from the SQL store (called off the event loop).

        Every change to experiments, variants and allocations writes an audit event, so
        the newest audit id is a change token: the periodic poll compares it (one cheap
        query) and rebuilds only when something changed.
        """
        with self._refresh_lock, self._session_factory() as session:
            token = session.scalar(select(func.max(AuditEvent.id)))
            if not force and token == self._token:
                return
            # A variant uploaded through another worker or replica gets its session here.
            sync_pool(session, self.pool, self.settings.models_dir)
            loaded = {(k.experiment, k.variant) for k in self.pool.providers()}
            runtime = build_runtime(session, loaded)
            self._token = token
        self._runtime = runtime
        for key, provider in self.pool.providers().items():
            self.metrics.provider.labels(key.experiment, key.variant, provider).set(1)

    def sync_metrics(self) -> None:
        for writer in (self.predictions, self.feedback_writer):
            stats = writer.stats()
            self.metrics.sync_counter(
                self.metrics.lake_rows_written, writer.table, stats.rows_written
            )
            self.metrics.sync_counter(
                self.metrics.lake_rows_dropped, writer.table, stats.rows_dropped
            )
            self.metrics.lake_queue_depth.labels(writer.table).set(stats.rows_pending)

    async def drain(self) -> None:
        """Wait for the shadow calls in flight (shutdown, tests)."""
        while self._shadow_tasks:
            await asyncio.gather(*self._shadow_tasks, return_exceptions=True)

    async def close(self) -> None:
        await self.drain()
        for _, batcher in self._batchers.values():
            await batcher.close()
        self._executor.shutdown(wait=True)

    def _counters(self, experiment: str, variant: str) -> _VariantMetrics:
        # Resolving label children once per variant: ``labels()`` costs microseconds.
        key = (experiment, variant)
        found = self._metric_children.get(key)
        if found is None:
            found = _VariantMetrics(
                ok=self.metrics.requests.labels(experiment, variant, "arm", "ok"),
                error=self.metrics.requests.labels(experiment, variant, "arm", "error"),
                latency=self.metrics.latency.labels(experiment, variant),
            )
            self._metric_children[key] = found
        return found

    # -- model calls ----------------------------------------------------------------

    def _is_inline(self, model: LoadedModel) -> bool:
        cached = self._inline.get(id(model))
        if cached is None:
            x = np.zeros((1, self._dim(model)), dtype=model.input_dtype)
            best = math.inf
            for _ in range(5):
                t0 = time.perf_counter()
                model.session.run([model.output_name], {model.input_name: x})
                best = min(best, time.perf_counter() - t0)
            cached = model.provider == CPU and best < _INLINE_BELOW_S
            self._inline[id(model)] = cached
        return cached

    @staticmethod
    def _dim(model: LoadedModel) -> int:
        return int(model.session.get_inputs()[0].shape[1])

    def _batcher(self, key: VariantKey, model: LoadedModel) -> MicroBatcher:
        entry = self._batchers.get(key)
        if entry is not None and entry[0] is model:
            return entry[1]
        session, input_name, output_name = model.session, model.input_name, model.output_name

        def run(x: NDArray[np.floating]) -> NDArray[np.generic]:
            return np.asarray(session.run([output_name], {input_name: x})[0])

        histogram = self.metrics.batch_size.labels(key.experiment, key.variant)
        batcher = MicroBatcher(
            run,
            dtype=model.input_dtype,
            executor=None if self._is_inline(model) else self._executor,
            max_batch_size=self.settings.max_batch_size,
            max_delay_us=self.settings.max_queue_delay_us,
            on_batch=histogram.observe,
        )
        self._batchers[key] = (model, batcher)
        return batcher

    async def _run(
        self, key: VariantKey, model: LoadedModel, x: NDArray[np.floating]
    ) -> ModelOutput:
        if self.settings.microbatch:
            return await self._batcher(key, model).submit(x)
        batch = x.reshape(1, -1).astype(model.input_dtype, copy=False)
        feed = {model.input_name: batch}
        if self._is_inline(model):
            out = model.session.run([model.output_name], feed)[0]
        else:
            loop = asyncio.get_running_loop()
            out = await loop.run_in_executor(
                self._executor, lambda: model.session.run([model.output_name], feed)[0]
            )
        self.metrics.batch_size.labels(key.experiment, key.variant).observe(1)
        return split_output(out)[0]

    # -- validation -----------------------------------------------------------------

    def experiment(self, name: str) -> ExperimentRuntime:
        exp = self._runtime.experiments.get(name)
        if exp is None:
            msg = f"No experiment named {name!r}."
            raise NotFoundError(msg, code="experiment_not_found")
        if exp.status != "running":
            msg = f"Experiment {name!r} is {exp.status}, not running; it serves no predictions."
            raise ConflictError(msg, code="experiment_not_running")
        if not exp.arms:
            msg = f"Experiment {name!r} has no loaded arm with traffic to serve."
            raise UnavailableError(msg, code="no_servable_arm")
        return exp

    @staticmethod
    def check_features(exp: ExperimentRuntime, features: Features, field: str) -> None:
        """Refuse features that no variant of the experiment can take, naming the field."""
        if isinstance(features, dict):
            unknown = [k for k in features if k not in exp.feature_names]
            if unknown:
                msg = (
                    f"{field} names unknown feature(s) {unknown[:10]}; experiment "
                    f"{exp.name!r} expects {list(exp.feature_names)}."
                )
                raise InvalidRequestError(msg, code="unknown_feature")
            missing = [k for k in exp.feature_names if k not in features]
            if missing:
                msg = f"{field} lacks feature(s) {missing[:10]} that experiment {exp.name!r} needs."
                raise InvalidRequestError(msg, code="missing_feature")
        else:
            if exp.positional_dim is None:
                msg = (
                    f"{field}: the variants of {exp.name!r} take different inputs; send "
                    f"features as an object {{name: value}} with {list(exp.feature_names)}."
                )
                raise InvalidRequestError(msg, code="positional_features_ambiguous")
            if len(features) != exp.positional_dim:
                msg = (
                    f"{field} has {len(features)} values; experiment {exp.name!r} expects "
                    f"{exp.positional_dim}."
                )
                raise InvalidRequestError(msg, code="wrong_feature_count")

    @staticmethod
    def _vector(
        variant: VariantRuntime, features: Features
    ) -> tuple[NDArray[np.float64], dict[str, float]]:
        if isinstance(features, dict):
            values = [float(features[n]) for n in variant.feature_names]
            return np.asarray(values), dict(features)
        return np.asarray(features, dtype=np.float64), dict(
            zip(variant.feature_names, features, strict=True)
        )

    # -- predict --------------------------------------------------------------------

    async def predict(self, name: str, features: Features, unit_id: str | None) -> Prediction:
        exp = self.experiment(name)
        self.check_features(exp, features, "features")
        return await self._serve(exp, features, unit_id)

    async def predict_batch(self, name: str, rows: Sequence[PredictRequest]) -> list[Prediction]:
        exp = self.experiment(name)
        if not rows:
            raise InvalidRequestError("rows is empty; send at least one row.", code="empty_batch")
        limit = self.settings.max_predict_batch_rows
        if len(rows) > limit:
            msg = f"rows has {len(rows)} items; at most {limit} are accepted per request."
            raise InvalidRequestError(msg, code="batch_too_large")
        # Every row is checked before any reaches a model.
        for i, (features, _) in enumerate(rows):
            self.check_features(exp, features, f"rows.{i}.features")
        return list(await asyncio.gather(*(self._serve(exp, f, u) for f, u in rows)))

    async def _serve(
        self, exp: ExperimentRuntime, features: Features, unit_id: str | None
    ) -> Prediction:
        start = time.perf_counter()
        ts = datetime.now(UTC)
        variant, propensity = exp.choose(unit_id, self._rng)
        request_id = _request_id(exp.id, self._rng)
        x, named = self._vector(variant, features)
        key = VariantKey(exp.name, variant.name)
        model = self.pool.get(key)
        error: str | None = None
        output: ModelOutput | None = None
        if model is None:
            error = "model not loaded"
        else:
            try:
                output = _finite(await self._run(key, model, x))
            except Exception as exc:
                error = f"{type(exc).__name__}: {exc}"[:500]
        latency = time.perf_counter() - start
        status: Literal["ok", "error"] = "ok" if output is not None else "error"
        provider = model.provider if model else "none"
        self.predictions.append(
            PredictionRow(
                request_id, ts, exp.name, variant.name, "arm", exp.version, propensity, unit_id,
                named, output.prediction if output else None, output.scores if output else None,
                latency * 1000.0, variant.sha256, provider, status, error,
            )
        )  # fmt: skip
        counters = self._counters(exp.name, variant.name)
        (counters.ok if output is not None else counters.error).inc()
        counters.latency.observe(latency)
        for shadow in exp.shadows:
            task = asyncio.get_running_loop().create_task(
                self._shadow(exp, shadow, features, unit_id, request_id, ts)
            )
            self._shadow_tasks.add(task)
            task.add_done_callback(self._shadow_tasks.discard)
        if output is None:
            log.warning("variant %s/%s failed on %s: %s", exp.name, variant.name, request_id, error)
            msg = f"Variant {variant.name!r} of {exp.name!r} failed to predict: {error}."
            raise UnavailableError(msg, code="model_error", details={"request_id": request_id})
        return {
            "request_id": request_id,
            "variant": variant.name,
            "prediction": output.prediction,
            "scores": output.scores,
            "propensity": propensity,
            "allocation_version": exp.version,
        }

    async def _shadow(
        self,
        exp: ExperimentRuntime,
        shadow: VariantRuntime,
        features: Features,
        unit_id: str | None,
        request_id: str,
        ts: datetime,
    ) -> None:
        # A shadow never answers and never fails the request: every error stays here.
        start = time.perf_counter()
        key = VariantKey(exp.name, shadow.name)
        model = self.pool.get(key)
        output: ModelOutput | None = None
        error: str | None = None
        named: dict[str, float] = {}
        try:
            x, named = self._vector(shadow, features)
            if model is None:
                error = "model not loaded"
            else:
                output = _finite(await self._run(key, model, x))
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"[:500]
        status: Literal["ok", "error"] = "ok" if output is not None else "error"
        latency = time.perf_counter() - start
        self.predictions.append(
            PredictionRow(
                request_id, ts, exp.name, shadow.name, "shadow", exp.version, 0.0, unit_id,
                named, output.prediction if output else None, output.scores if output else None,
                latency * 1000.0, shadow.sha256, model.provider if model else "none", status, error,
            )
        )  # fmt: skip
        self.metrics.requests.labels(exp.name, shadow.name, "shadow", status).inc()

    # -- feedback -------------------------------------------------------------------

    def check_feedback(
        self, request_id: str, reward: float | None, label: float | str | None, field: str
    ) -> FeedbackRow:
        exp_id = experiment_id_of(request_id)
        if exp_id is None:
            msg = f"{field}.request_id {request_id[:80]!r} is not a request id this service issued."
            raise InvalidRequestError(msg, code="invalid_request_id")
        exp = self._runtime.by_id.get(exp_id)
        if exp is None:
            msg = f"{field}.request_id {request_id[:80]!r} belongs to no known experiment."
            raise NotFoundError(msg, code="experiment_not_found")
        if exp.reward_kind == "label":
            if label is None or reward is not None:
                msg = f'{field}: experiment {exp.name!r} takes a label, not a reward; send "label".'
                raise InvalidRequestError(msg, code="label_expected")
            if isinstance(label, float) and not math.isfinite(label):
                msg = f"{field}.label {label} is not a finite number."
                raise InvalidRequestError(msg, code="invalid_label")
            if exp.reward_metric != "accuracy" and not isinstance(label, float | int):
                msg = (
                    f"{field}.label {label!r} must be a number for the {exp.reward_metric} metric."
                )
                raise InvalidRequestError(msg, code="invalid_label")
            text = label if isinstance(label, str) else repr(float(label))
            return FeedbackRow(request_id, datetime.now(UTC), None, text)
        if reward is None or label is not None:
            msg = (
                f"{field}: experiment {exp.name!r} takes a numeric reward, not a label; "
                'send "reward".'
            )
            raise InvalidRequestError(msg, code="reward_expected")
        if not math.isfinite(reward):
            msg = f"{field}.reward {reward} is not a finite number."
            raise InvalidRequestError(msg, code="invalid_reward")
        if exp.reward_kind == "binary" and reward not in (0.0, 1.0):
            msg = (
                f"{field}.reward {reward} is not 0 or 1; experiment {exp.name!r} has binary "
                "rewards."
            )
            raise InvalidRequestError(msg, code="invalid_reward")
        return FeedbackRow(request_id, datetime.now(UTC), float(reward), None)

    def feedback(self, items: Sequence[FeedbackItem]) -> int:
        rows = [
            self.check_feedback(rid, reward, label, f"items.{i}" if len(items) > 1 else "body")
            for i, (rid, reward, label) in enumerate(items)
        ]
        for row in rows:
            self.feedback_writer.append(row)
        for row in rows:
            exp_id = experiment_id_of(row.request_id)
            exp = self._runtime.by_id.get(exp_id) if exp_id is not None else None
            if exp is not None:
                self.metrics.feedback.labels(exp.name).inc()
        return len(rows)
