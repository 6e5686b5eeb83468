"""The predict path: choose an arm, run it, answer, log the row; shadows see a copy.

Everything here runs on the event loop and does no I/O beyond the model call: the
experiment snapshot is in memory, the lake append is a list append, metrics are
in-memory counters. An arm and a shadow run through one code path
(:meth:`Predictor._run_variant`) and differ in two places only: a failing arm is judged
against its reference input (``rejected`` or ``error``), and each role has its metrics.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal, NamedTuple

from prometheus_client import Counter, Histogram
from pydantic import SecretStr

from api.errors import (
    ConflictError,
    InvalidRequestError,
    NotFoundError,
    ServiceError,
    UnavailableError,
)
from api.metrics import Metrics
from api.serving.batcher import ModelOutput
from api.serving.dispatch import Dispatcher, ModelTimeoutError
from api.serving.features import Features, check_features, to_vector
from api.serving.lake_log import check_log_room, record_rows
from api.serving.limits import check_batch_size
from api.serving.pool import ModelPool, VariantKey
from api.serving.redaction import redact
from api.serving.request_ids import RequestIds
from api.serving.runtime import ExperimentRuntime, VariantRuntime
from api.serving.sessions import LoadedModel
from api.serving.snapshot import Snapshot
from lake.durable import RowLog
from lake.schemas import InferenceMode, PredictionRow

__all__ = ["PredictRequest", "Prediction", "Predictor"]

log = logging.getLogger(__name__)

# (features, unit id), as a batch body's row carries them.
PredictRequest = tuple[Features, str | None]
Status = Literal["ok", "error", "rejected"]

# Rows of a batch predict served per turn of the event loop: a maximum-size batch must not
# hold other clients' requests for the whole of its validation and routing.
_BATCH_SLICE = 64


class Prediction(NamedTuple):
    """One served request: what its client gets back, or with ``error``, why it got none.

    A named tuple rather than a frozen dataclass: one is built per request, and a frozen
    dataclass's ``__init__`` (``object.__setattr__`` per field) costs several times more.
    """

    request_id: str
    variant: str
    prediction: float | None
    """``None`` exactly when ``error`` is set."""
    scores: Sequence[float] | None
    propensity: float
    """The probability the allocation gave this arm for this request."""
    allocation_version: int
    error: ServiceError | None = None
    """Why the arm gave no prediction: ``predict`` raises it, a batch row carries it."""


@dataclass(frozen=True, slots=True)
class _ArmMetrics:
    ok: Counter
    error: Counter
    rejected: Counter
    latency: Histogram


def _finite(output: ModelOutput) -> ModelOutput:
    # NaN or infinity is no answer (and no valid JSON): treat it as the model failing.
    if not math.isfinite(output.prediction) or (
        output.scores is not None and not all(map(math.isfinite, output.scores))
    ):
        msg = f"the model returned a non-finite output ({output.prediction}, {output.scores})"
        raise ValueError(msg)
    return output


class Predictor:
    """Serves predict requests from the current snapshot and logs every row to the lake."""

    def __init__(
        self,
        snapshot: Snapshot,
        pool: ModelPool,
        dispatcher: Dispatcher,
        predictions: RowLog,
        metrics: Metrics,
        request_ids: RequestIds,
        *,
        max_batch: int,
        redaction_secret: SecretStr | None = None,
    ) -> None:
        self._snapshot = snapshot
        self._pool = pool
        self._dispatcher = dispatcher
        self._log = predictions
        self._metrics = metrics
        self._request_ids = request_ids
        self._max_batch = max_batch
        # The key of the lake's hashed features (api.serving.redaction); without it, a
        # feature to hash is dropped instead.
        self._redaction_key = (
            redaction_secret.get_secret_value().encode() if redaction_secret is not None else None
        )
        self._unkeyed_warned: set[str] = set()
        # Variant choice only: request ids come from the OS's CSPRNG (``RequestIds``), so
        # the ids a client sees say nothing about this generator's state, and vice versa.
        self._rng = random.Random(secrets.randbits(64))
        self._shadow_tasks: set[asyncio.Task[None]] = set()
        self._arm_metrics: dict[tuple[str, str], _ArmMetrics] = {}

    def experiment(self, name: str) -> ExperimentRuntime:
        """The running experiment ``name`` with an arm to serve, or the error saying why not."""
        exp = self._snapshot.runtime.experiments.get(name)
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

    async def predict(
        self,
        name: str,
        features: Features,
        unit_id: str | None,
        *,
        request_id: str | None = None,
        rng: random.Random | None = None,
        mode: InferenceMode = "online",
    ) -> Prediction:
        """Serve one request; a failed model call raises its error (the row is logged).

        A caller that must answer a repeat of a request the same way (the stream consumer,
        :mod:`api.streaming`) passes the request id and a generator seeded for it, so the
        same variant is chosen; ``mode`` marks its lake row.
        """
        exp = self.experiment(name)
        check_log_room(self._log)
        check_features(exp, features, "features")
        result = await self._serve(
            exp, features, unit_id, request_id=request_id, rng=rng, mode=mode
        )
        if result.error is not None:
            raise result.error
        return result

    async def predict_batch(self, name: str, rows: Sequence[PredictRequest]) -> list[Prediction]:
        """Serve every row; a row whose model call fails carries its error, the others serve.

        The response and the lake agree row by row: every row in the answer, failed or
        not, has its request id and its row in the lake.
        """
        exp = self.experiment(name)
        check_batch_size(len(rows), self._max_batch, field="rows")
        check_log_room(self._log)
        # Every row is checked before any reaches a model.
        for i, (features, _) in enumerate(rows):
            check_features(exp, features, f"rows.{i}.features")
            if i % _BATCH_SLICE == _BATCH_SLICE - 1:
                await asyncio.sleep(0)
        results: list[Prediction] = []
        for start in range(0, len(rows), _BATCH_SLICE):
            chunk = rows[start : start + _BATCH_SLICE]
            results.extend(await asyncio.gather(*(self._serve(exp, f, u) for f, u in chunk)))
        return results

    async def drain(self) -> None:
        """Wait for the shadow calls in flight (shutdown, tests)."""
        while self._shadow_tasks:
            await asyncio.gather(*self._shadow_tasks, return_exceptions=True)

    async def _serve(
        self,
        exp: ExperimentRuntime,
        features: Features,
        unit_id: str | None,
        *,
        request_id: str | None = None,
        rng: random.Random | None = None,
        mode: InferenceMode = "online",
    ) -> Prediction:
        start = time.perf_counter()
        ts = datetime.now(UTC)
        variant, propensity = exp.choose(unit_id, rng or self._rng)
        request_id = request_id or self._request_ids.issue(exp.id)
        row, timeout = await self._run_variant(
            exp, variant, features, "arm", propensity, unit_id, request_id, ts, start, mode
        )
        for shadow in exp.shadows:
            task = asyncio.get_running_loop().create_task(
                self._shadow(exp, shadow, features, unit_id, request_id, ts, mode)
            )
            self._shadow_tasks.add(task)
            task.add_done_callback(self._shadow_tasks.discard)
        if row.status == "ok":
            return Prediction(
                request_id, variant.name, row.prediction, row.scores, propensity, exp.version
            )
        # A rejected row is the client's doing: logging each at warning level would let a
        # client flood the log.
        log.log(
            logging.DEBUG if row.status == "rejected" else logging.WARNING,
            "variant %s/%s %s %s: %s",
            exp.name,
            variant.name,
            "rejected" if row.status == "rejected" else "failed on",
            request_id,
            row.error,
        )
        failure: ServiceError
        if row.status == "rejected":
            msg = (
                f"Variant {variant.name!r} of {exp.name!r} cannot make a prediction from these "
                f"features ({row.error}); it answers other inputs, so the input is refused."
            )
            failure = InvalidRequestError(
                msg, code="input_rejected_by_model", details={"request_id": request_id}
            )
        elif timeout is not None:
            msg = (
                f"Variant {variant.name!r} of {exp.name!r} did not answer within its timeout "
                f"of {timeout.timeout_ms} ms; the request was abandoned."
            )
            failure = UnavailableError(
                msg, code="model_timeout", details={"request_id": request_id}
            )
        else:
            msg = f"Variant {variant.name!r} of {exp.name!r} failed to predict: {row.error}."
            failure = UnavailableError(msg, code="model_error", details={"request_id": request_id})
        return Prediction(request_id, variant.name, None, None, propensity, exp.version, failure)

    async def _shadow(
        self,
        exp: ExperimentRuntime,
        shadow: VariantRuntime,
        features: Features,
        unit_id: str | None,
        request_id: str,
        ts: datetime,
        mode: InferenceMode = "online",
    ) -> None:
        # A shadow's latency is its own: its clock starts when its task runs.
        start = time.perf_counter()
        await self._run_variant(
            exp, shadow, features, "shadow", 0.0, unit_id, request_id, ts, start, mode
        )

    async def _run_variant(
        self,
        exp: ExperimentRuntime,
        variant: VariantRuntime,
        features: Features,
        role: Literal["arm", "shadow"],
        propensity: float,
        unit_id: str | None,
        request_id: str,
        ts: datetime,
        start: float,
        mode: InferenceMode = "online",
    ) -> tuple[PredictionRow, ModelTimeoutError | None]:
        """Run one variant on the request's features, log its lake row and count it.

        A model's failure is the row's ``status`` and ``error``, never an exception, so a
        shadow's failures never reach the request it copies. Raises only when an arm's
        row cannot be logged durably (durable mode): the response must not be sent.
        """
        key = VariantKey(exp.name, variant.name)
        model = self._pool.get(key)
        named: dict[str, float] | None = None
        output: ModelOutput | None = None
        error: str | None = None
        status: Status = "ok"
        # A timeout is returned beside the row: the arm's answer names it.
        timeout: ModelTimeoutError | None = None
        try:
            x, named = to_vector(variant, features)
            # The model gets ``x``, every feature as sent; the lake row gets ``named``, after
            # the experiment's redaction (api.serving.redaction).
            if exp.redaction is not None:
                if exp.redaction.hashed and self._redaction_key is None:
                    self._warn_unkeyed(exp.name)
                redact(exp.redaction, named, self._redaction_key)
            if model is None:
                error, status = "model not loaded", "error"
            else:
                output = _finite(await self._dispatcher.run(key, model, x))
        except ModelTimeoutError as exc:
            # An error, not judged against the reference input: that check would queue one
            # more call behind the slow one. The latency below is the time waited.
            error, status, timeout = str(exc), "error", exc
        except Exception as exc:
            error, status = f"{type(exc).__name__}: {exc}"[:500], "error"
            # A model that fails on this row but still answers its load-time input was
            # broken by the row, not the other way round: the row is ``rejected`` and does
            # not count against the variant's error-rate guardrail. A model that fails its
            # reference input too is failing: that is an ``error``. A shadow answers no
            # one, so its failures stay errors.
            if role == "arm" and model is not None and await self._answers_reference(key, model):
                status = "rejected"
        latency = time.perf_counter() - start
        row = PredictionRow(
            request_id=request_id,
            ts=ts,
            experiment=exp.name,
            variant=variant.name,
            role=role,
            allocation_version=exp.version,
            propensity=propensity,
            unit_id=unit_id,
            features=named if named is not None else {},
            prediction=output.prediction if output else None,
            scores=output.scores if output else None,
            latency_ms=latency * 1000.0,
            model_sha256=variant.sha256,
            provider=model.provider if model else "none",
            status=status,
            error=error,
            mode=mode,
        )
        if role == "arm":
            counters = self._counters(exp.name, variant.name)
            (counters.ok if status == "ok" else getattr(counters, status)).inc()
            counters.latency.observe(latency)
            # In durable mode this returns once the row is on disk, and raises (503)
            # when it cannot get there: the response waits for its row.
            await record_rows(self._log, (row,))
        else:
            self._metrics.requests.labels(exp.name, variant.name, "shadow", status).inc()
            self._log.append(row)
        return row, timeout

    def _warn_unkeyed(self, experiment: str) -> None:
        if experiment not in self._unkeyed_warned:
            self._unkeyed_warned.add(experiment)
            log.warning(
                "experiment %s hashes features in the lake but BANDITLAKE_REDACTION_SECRET "
                "is not set: those features are dropped from its lake rows instead",
                experiment,
            )

    async def _answers_reference(self, key: VariantKey, model: LoadedModel) -> bool:
        """Whether the variant still answers the input it answered at load time."""
        try:
            _finite(await self._dispatcher.run(key, model, model.reference))
        except Exception:
            return False
        return True

    def _counters(self, experiment: str, variant: str) -> _ArmMetrics:
        # Resolving label children once per variant: ``labels()`` costs microseconds.
        key = (experiment, variant)
        found = self._arm_metrics.get(key)
        if found is None:
            found = _ArmMetrics(
                ok=self._metrics.requests.labels(experiment, variant, "arm", "ok"),
                error=self._metrics.requests.labels(experiment, variant, "arm", "error"),
                rejected=self._metrics.requests.labels(experiment, variant, "arm", "rejected"),
                latency=self._metrics.latency.labels(experiment, variant),
            )
            self._arm_metrics[key] = found
        return found
