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

from api.control.variants import sync_pool
from api.errors import (
    ConflictError,
    InvalidRequestError,
    NotFoundError,
    ServiceError,
    UnavailableError,
)
from api.metrics import Metrics
from api.serving.batcher import MicroBatcher, ModelOutput, split_output
from api.serving.pool import ModelPool, VariantKey
from api.serving.request_ids import RequestIds
from api.serving.runtime import ExperimentRuntime, Runtime, VariantRuntime, build_runtime
from api.serving.sessions import LoadedModel
from api.settings import Settings
from api.store.models import AuditEvent
from lake.schemas import FeedbackRow, PredictionRow
from lake.writer import LakeWriter

__all__ = ["FeedbackItem", "FeedbackResult", "PredictRequest", "Prediction", "ServingService"]

log = logging.getLogger(__name__)

# Pydantic hands over a plain list or dict of finite floats (``PredictBody`` checks them);
# ``isinstance(x, dict)`` is checked rather than the much slower ABC ``Mapping``.
Features = list[float] | dict[str, float]
PredictRequest = tuple[Features, str | None]
FeedbackItem = tuple[str, float | None, float | str | None]
Prediction = dict[str, Any]

# Rows of a batch predict served per turn of the event loop: a maximum-size batch must not
# hold other clients' requests for the whole of its validation and routing.
_BATCH_SLICE = 64


def _finite(output: ModelOutput) -> ModelOutput:
    # NaN or infinity is no answer (and no valid JSON): treat it as the model failing.
    if not math.isfinite(output.prediction) or (
        output.scores is not None and not all(map(math.isfinite, output.scores))
    ):
        msg = f"the model returned a non-finite output ({output.prediction}, {output.scores})"
        raise ValueError(msg)
    return output


@dataclass(frozen=True, slots=True)
class _VariantMetrics:
    ok: Any
    error: Any
    rejected: Any
    latency: Any


@dataclass(frozen=True, slots=True)
class FeedbackResult:
    """How many feedback items were stored, and how many repeated a request id already seen."""

    accepted: int
    duplicates: int


class _Recent:
    """A bounded set of recently seen keys, oldest forgotten first (dicts keep order)."""

    __slots__ = ("_keys", "_limit")

    def __init__(self, limit: int) -> None:
        self._keys: dict[str, None] = {}
        self._limit = limit

    def add(self, key: str) -> bool:
        """Remember ``key``; ``False`` if it was already remembered."""
        if key in self._keys:
            return False
        self._keys[key] = None
        if len(self._keys) > self._limit:
            del self._keys[next(iter(self._keys))]
        return True


class ServingService:
    def __init__(
        self,
        settings: Settings,
        pool: ModelPool,
        session_factory: sessionmaker[Session],
        predictions: LakeWriter,
        feedback: LakeWriter,
        metrics: Metrics,
        request_ids: RequestIds,
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
        # Variant choice only: request ids come from the OS's CSPRNG (``RequestIds``), so
        # the ids a client sees say nothing about this generator's state, and vice versa.
        self._rng = random.Random(secrets.randbits(64))
        self.request_ids = request_ids
        self._feedback_seen = _Recent(settings.feedback_dedup_ids)
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
            loaded = {
                (k.experiment, k.variant): np.dtype(m.input_dtype)
                for k, m in self.pool.models().items()
            }
            runtime = build_runtime(session, loaded)
            # Token and snapshot change together under the lock: a slower concurrent refresh
            # can never install an older snapshot under a newer token.
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
                rejected=self.metrics.requests.labels(experiment, variant, "arm", "rejected"),
                latency=self.metrics.latency.labels(experiment, variant),
            )
            self._metric_children[key] = found
        return found

    # -- model calls ----------------------------------------------------------------

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
            executor=None if model.inline else self._executor,
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
        if model.inline:
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
            unknown = [k for k in features if k not in exp.feature_set]
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
        limit = exp.feature_limit
        if limit is not None:
            # A value a float32 model cannot hold would reach it as infinity: refuse it here
            # rather than let it fail the model (and count against the variant).
            values = features.values() if isinstance(features, dict) else features
            if max(values, default=0.0) > limit or min(values, default=0.0) < -limit:
                items = features.items() if isinstance(features, dict) else enumerate(features)
                where, value = next((k, v) for k, v in items if not -limit <= v <= limit)
                name = f"{field}.{where}" if isinstance(where, str) else f"{field}[{where}]"
                msg = (
                    f"{name} = {value!r} is outside the float32 range (±{limit:.8g}) of the "
                    f"model inputs of experiment {exp.name!r}."
                )
                raise InvalidRequestError(msg, code="feature_out_of_range")

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
        result, error = await self._serve(exp, features, unit_id)
        if error is not None:
            raise error
        return result

    async def predict_batch(self, name: str, rows: Sequence[PredictRequest]) -> list[Prediction]:
        """Serve every row; a row whose model call fails carries its error, the others serve.

        The response and the lake agree row by row: every row in the answer, failed or
        not, has its request id and its row in the lake.
        """
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
            if i % _BATCH_SLICE == _BATCH_SLICE - 1:
                await asyncio.sleep(0)
        results: list[Prediction] = []
        for start in range(0, len(rows), _BATCH_SLICE):
            chunk = rows[start : start + _BATCH_SLICE]
            served = await asyncio.gather(*(self._serve(exp, f, u) for f, u in chunk))
            for result, error in served:
                if error is not None:
                    result = {**result, "prediction": None, "scores": None}
                    result["error"] = {
                        "code": error.code,
                        "message": error.message,
                        "status": error.status_code,
                    }
                results.append(result)
        return results

    async def _answers_reference(self, key: VariantKey, model: LoadedModel) -> bool:
        """Whether the variant still answers the input it answered at load time."""
        try:
            _finite(await self._run(key, model, model.reference))
        except Exception:
            return False
        return True

    async def _serve(
        self, exp: ExperimentRuntime, features: Features, unit_id: str | None
    ) -> tuple[Prediction, ServiceError | None]:
        start = time.perf_counter()
        ts = datetime.now(UTC)
        variant, propensity = exp.choose(unit_id, self._rng)
        request_id = self.request_ids.issue(exp.id)
        x, named = self._vector(variant, features)
        key = VariantKey(exp.name, variant.name)
        model = self.pool.get(key)
        error: str | None = None
        output: ModelOutput | None = None
        status: Literal["ok", "error", "rejected"] = "ok"
        if model is None:
            error, status = "model not loaded", "error"
        else:
            try:
                output = _finite(await self._run(key, model, x))
            except Exception as exc:
                error = f"{type(exc).__name__}: {exc}"[:500]
                # A model that fails on this row but still answers its load-time input was
                # broken by the row, not the other way round: the row is ``rejected`` and
                # does not count against the variant's error-rate guardrail. A model that
                # fails its reference input too is failing: that is an ``error``.
                status = "rejected" if await self._answers_reference(key, model) else "error"
        latency = time.perf_counter() - start
        provider = model.provider if model else "none"
        self.predictions.append(
            PredictionRow(
                request_id, ts, exp.name, variant.name, "arm", exp.version, propensity, unit_id,
                named, output.prediction if output else None, output.scores if output else None,
                latency * 1000.0, variant.sha256, provider, status, error,
            )
        )  # fmt: skip
        counters = self._counters(exp.name, variant.name)
        (counters.ok if status == "ok" else getattr(counters, status)).inc()
        counters.latency.observe(latency)
        for shadow in exp.shadows:
            task = asyncio.get_running_loop().create_task(
                self._shadow(exp, shadow, features, unit_id, request_id, ts)
            )
            self._shadow_tasks.add(task)
            task.add_done_callback(self._shadow_tasks.discard)
        result: Prediction = {
            "request_id": request_id,
            "variant": variant.name,
            "prediction": output.prediction if output else None,
            "scores": output.scores if output else None,
            "propensity": propensity,
            "allocation_version": exp.version,
        }
        if output is not None:
            return result, None
        # A rejected row is the client's doing: logging each at warning level would let a
        # client flood the log.
        log.log(
            logging.DEBUG if status == "rejected" else logging.WARNING,
            "variant %s/%s %s %s: %s",
            exp.name,
            variant.name,
            "rejected" if status == "rejected" else "failed on",
            request_id,
            error,
        )
        failure: ServiceError
        if status == "rejected":
            msg = (
                f"Variant {variant.name!r} of {exp.name!r} cannot make a prediction from these "
                f"features ({error}); it answers other inputs, so the input is refused."
            )
            failure = InvalidRequestError(
                msg, code="input_rejected_by_model", details={"request_id": request_id}
            )
        else:
            msg = f"Variant {variant.name!r} of {exp.name!r} failed to predict: {error}."
            failure = UnavailableError(msg, code="model_error", details={"request_id": request_id})
        return result, failure

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
    ) -> tuple[FeedbackRow, str]:
        """The row to store and the name of the experiment the request id belongs to."""
        exp_id = self.request_ids.experiment_of(request_id)
        if exp_id is None:
            msg = (
                f"{field}.request_id {request_id[:80]!r} is not a request id this service "
                "issued; send the request_id of a predict response."
            )
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
            return FeedbackRow(request_id, datetime.now(UTC), None, text), exp.name
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
        return FeedbackRow(request_id, datetime.now(UTC), float(reward), None), exp.name

    def feedback(self, items: Sequence[FeedbackItem]) -> FeedbackResult:
        """Check every item, then store each request id's first feedback once.

        A repeat of a request id this process has already stored (a client retry, a replay)
        is answered as a duplicate and neither stored nor counted, so the lake, the
        ``decisions`` view (first feedback wins) and ``banditlake_feedback_total`` agree.
        """
        rows = [
            self.check_feedback(rid, reward, label, f"items.{i}" if len(items) > 1 else "body")
            for i, (rid, reward, label) in enumerate(items)
        ]
        fresh = [(row, exp) for row, exp in rows if self._feedback_seen.add(row.request_id)]
        for row, _ in fresh:
            self.feedback_writer.append(row)
        for _, exp in fresh:
            self.metrics.feedback.labels(exp).inc()
        duplicates = len(rows) - len(fresh)
        if duplicates:
            self.metrics.feedback_duplicates.inc(duplicates)
        return FeedbackResult(len(fresh), duplicates)
