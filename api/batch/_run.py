"""One scoring run: input chunks through the variants' sessions, to OUTPUT and the lake.

Per chunk: the features as one checked matrix (:mod:`api.batch._features`), the rows
assigned (allocation mode: by the current allocation's cumulative weights, a uniform
draw per row or the serving router's sticky hash of the unit id, exactly as
:meth:`api.serving.runtime.ExperimentRuntime.choose`), each variant's rows through its
session in one call, then the output columns and the lake rows (mode ``"batch"``) built
from the arrays. At the end, with SIGINT held off, the lake files are registered and the
output renamed into place; before that, any failure or interrupt removes both.
"""

from __future__ import annotations

import contextlib
import gc
import os
import queue
import signal
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, TextIO

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from numpy.typing import NDArray
from sqlalchemy import Engine, create_engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import sessionmaker

from api.batch._errors import BatchInputError, BatchScoringError
from api.batch._features import FeatureMatrix, check_range, feature_matrix
from api.batch._ids import BatchRequestIds
from api.batch._lake import LoggedFeatures, StagedFiles, prediction_table
from api.batch._output import OutputFile
from api.batch._plan import Plan, ScoredVariant, load_plan
from api.batch._progress import Progress
from api.batch._source import Source, open_source
from api.serving.model_store import ModelStore
from api.serving.pool import ModelPool
from api.serving.runtime import sticky_point
from api.settings import Settings
from api.store.secrets import shared_secret
from lake.errors import LakeConfigError
from lake.layout import default_writer_id
from lake.storage import open_storage

__all__ = ["ScoreOptions", "ScoreSummary", "score"]

DEFAULT_BATCH_SIZE = 65_536


@dataclass(frozen=True, slots=True)
class ScoreOptions:
    """What ``banditlake score`` was asked to do.

    Parameters
    ----------
    experiment, input, output
        The experiment's name, the input (path or ``s3://``) and the output path.
    variant
        Score every row with this variant (propensity 1).
    all_variants
        Score every row with every active variant (one prediction column each).
    id_column
        The input column copied to the output, to join predictions back.
    unit_column
        The unit id of sticky assignment and of the lake rows; default ``id_column``.
    log
        Log every scored row to the lake (mode ``"batch"``).
    batch_size
        Rows per chunk: what is read, scored in one model call and logged at a time.
    threads
        ONNX Runtime intra-op threads; ``None``: one per core.
    seed
        Seed of the allocation's draws (non-sticky experiments); ``None``: fresh entropy.
    """

    experiment: str
    input: str
    output: str
    variant: str | None = None
    all_variants: bool = False
    id_column: str = "id"
    unit_column: str | None = None
    log: bool = True
    batch_size: int = DEFAULT_BATCH_SIZE
    threads: int | None = None
    seed: int | None = None


@dataclass(slots=True)
class ScoreSummary:
    """What a run did: the ``--json`` line."""

    experiment: str
    input: str
    output: str
    assignment: Literal["allocation", "variant", "all_variants"]
    rows: int = 0
    logged: int = 0
    lake_files: int = 0
    seconds: float = 0.0
    rows_per_s: float = 0.0
    batch_size: int = DEFAULT_BATCH_SIZE
    variants: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@contextlib.contextmanager
def _no_interrupt() -> Iterator[None]:
    """Hold SIGINT off (main thread): what runs inside completes or does not start."""
    main = threading.current_thread() is threading.main_thread()
    if main:
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        if main:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def _engine(settings: Settings) -> Engine:
    # No migration here: the experiment to score exists only in a migrated store, and
    # one that lags behind fails the first query with a message that says to migrate.
    return create_engine(settings.database_url)


def _request_id_secret(settings: Settings, engine: Engine) -> bytes:
    if settings.request_id_secret is not None:
        return settings.request_id_secret.get_secret_value().encode()
    return shared_secret(sessionmaker(engine), "request_id")


def _check_columns(source: Source, plan: Plan, options: ScoreOptions) -> None:
    have = set(source.columns)
    for column, role in (
        (options.id_column, "--id-column"),
        (options.unit_column, "--unit-column"),
    ):
        if column is not None and column not in have:
            msg = (
                f"The input {source.name} has no column {column!r} ({role}); its columns "
                f"are {source.columns[:30]}."
            )
            raise BatchInputError(msg)
    for v in plan.variants:
        missing = [n for n in v.feature_names if n not in have]
        if missing:
            msg = (
                f"The input {source.name} lacks column(s) {missing[:10]} that variant "
                f"{v.name!r} needs; its columns are {source.columns[:30]}."
            )
            raise BatchInputError(msg)


def _predict(
    variant: ScoredVariant, x: NDArray[Any], where: str
) -> tuple[NDArray[np.float64], NDArray[np.float64] | None, float]:
    """Predictions (and scores for an ``[N, k]`` output) as the server reads them, and
    the seconds the call took (see :func:`api.serving.batcher.split_output`)."""
    model = variant.model
    started = time.perf_counter()
    try:
        out = model.session.run([model.output_name], {model.input_name: x})[0]
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        msg = f"Variant {variant.name!r} failed on {where}: {first}"
        raise BatchScoringError(msg) from exc
    seconds = time.perf_counter() - started
    arr = np.asarray(out)
    if arr.ndim == 1 or (arr.ndim == 2 and arr.shape[1] == 1):
        return arr.reshape(-1).astype(np.float64), None, seconds
    flat = arr.reshape(arr.shape[0], -1).astype(np.float64)
    return flat.argmax(axis=1).astype(np.float64), flat, seconds


class _Run:
    """The state of one run (one instance per :func:`score` call)."""

    def __init__(
        self, settings: Settings, options: ScoreOptions, plan: Plan, source: Source
    ) -> None:
        self.options = options
        self.plan = plan
        self.source = source
        self.rng = np.random.default_rng(options.seed)
        self.unit_column = options.unit_column or options.id_column
        self.writer_id = default_writer_id()
        self.counts = {v.name: 0 for v in plan.variants}
        self.float32 = [v for v in plan.variants if v.model.input_dtype != np.float64]
        self.ids: BatchRequestIds | None = None
        self.logged: LoggedFeatures | None = None
        self.staged: StagedFiles | None = None
        self._settings = settings

    def start_lake(self, engine: Engine) -> None:
        settings = self._settings
        try:
            storage = open_storage(settings.lake_uri)
        except LakeConfigError as exc:
            raise BatchScoringError(f"BANDITLAKE_LAKE_URI: {exc}") from exc
        self.ids = BatchRequestIds(_request_id_secret(settings, engine), self.plan.experiment_id)
        secret = settings.redaction_secret
        self.logged = LoggedFeatures(
            self.plan.experiment,
            self.plan.features,
            self.plan.redaction,
            secret.get_secret_value().encode() if secret is not None else None,
        )
        self.staged = StagedFiles(storage, engine, writer_id=self.writer_id)

    def assign(self, data: pa.RecordBatch) -> NDArray[np.intp]:
        """Each row's arm index, as the serving router would choose it."""
        runtime = self.plan.runtime
        assert runtime is not None
        n = data.num_rows
        if runtime.sticky:
            units = pc.cast(data.column(self.unit_column), pa.string()).to_pylist()
            name = runtime.name
            points = np.fromiter(
                (
                    sticky_point(name, u) if u else float(r)
                    for u, r in zip(units, self.rng.random(n), strict=True)
                ),
                dtype=np.float64,
                count=n,
            )
        else:
            points = self.rng.random(n)
        cumulative = np.asarray(runtime.cumulative, dtype=np.float64)
        chosen = np.searchsorted(cumulative, points * cumulative[-1], side="right")
        arms: NDArray[np.intp] = np.minimum(chosen, len(runtime.arms) - 1).astype(np.intp)
        return arms

    def chunk(self, data: pa.RecordBatch, first: int) -> _Scored:
        """Score one chunk (the model calls); :meth:`finish` writes it."""
        plan, options = self.plan, self.options
        n = data.num_rows
        matrix = feature_matrix(data, plan.features, first=first, where=self.source.where)
        for v in self.float32:
            check_range(
                matrix, v.feature_names, variant=v.name, first=first, where=self.source.where
            )
        units = data.column(self.unit_column) if self.unit_column in data.schema.names else None
        scored = _Scored(n, data.column(options.id_column), units, datetime.now(UTC))
        # Signed here rather than by the writer thread, which has more to do per chunk.
        scored.request_ids = self.ids.issue(n) if self.ids is not None else None
        if plan.assignment == "allocation":
            self._allocated(data, first, matrix, scored)
            return scored
        for v in plan.variants:
            x = matrix.model_input(v.feature_names, v.model.input_dtype)
            preds, scores, seconds = _predict(v, x, self.source.span(first, n))
            self.counts[v.name] += n
            scored.columns[f"prediction_{v.name}"] = pa.array(preds, pa.float64())
            scored.parts.append(_Part(v, None, matrix.values, 1.0, preds, scores, seconds))
        return scored

    def _allocated(
        self, data: pa.RecordBatch, first: int, matrix: FeatureMatrix, scored: _Scored
    ) -> None:
        runtime = self.plan.runtime
        assert runtime is not None
        n = data.num_rows
        arm = self.assign(data)
        weights = np.asarray(runtime.weights, dtype=np.float64)
        predictions = np.empty(n, dtype=np.float64)
        for i, v in enumerate(self.plan.variants):
            rows = np.flatnonzero(arm == i)
            if rows.size == 0:
                continue
            values = matrix.values[rows]
            x = FeatureMatrix(matrix.names, values).model_input(
                v.feature_names, v.model.input_dtype
            )
            preds, scores, seconds = _predict(v, x, self.source.span(first, n))
            predictions[rows] = preds
            self.counts[v.name] += int(rows.size)
            scored.parts.append(_Part(v, rows, values, float(weights[i]), preds, scores, seconds))
        names = pa.array([v.name for v in self.plan.variants], pa.string())
        scored.columns["variant"] = names.take(pa.array(arm))
        scored.columns["propensity"] = pa.array(weights[arm], pa.float64())
        scored.columns["prediction"] = pa.array(predictions, pa.float64())

    def finish(self, scored: _Scored, output: OutputFile) -> None:
        """Write a scored chunk: its lake rows (with new request ids) and output rows."""
        out: dict[str, pa.Array] = {self.options.id_column: scored.ids}
        request_ids = scored.request_ids
        if request_ids is not None:
            out["request_id"] = request_ids
        out.update(scored.columns)
        if self.staged is not None and request_ids is not None and self.logged is not None:
            for part in scored.parts:
                self.staged.write(self._lake_rows(part, scored, request_ids, self.logged))
        output.write(pa.table(out))

    def _lake_rows(
        self, part: _Part, scored: _Scored, request_ids: pa.Array, logged: LoggedFeatures
    ) -> pa.Table:
        units = scored.units
        if part.rows is not None:
            take = pa.array(part.rows)
            request_ids = request_ids.take(take)
            units = units.take(take) if units is not None else None
        return prediction_table(
            request_ids=request_ids,
            ts=scored.ts,
            experiment=self.plan.experiment,
            variant=part.variant.name,
            role=part.variant.role,
            version=self.plan.version,
            propensity=part.propensity,
            unit_ids=units,
            features=logged.map_array(part.values),
            predictions=part.predictions,
            scores=part.scores,
            latency_ms=part.seconds * 1000.0 / max(len(part.predictions), 1),
            model_sha256=part.variant.sha256,
            provider=part.variant.model.provider,
            writer_id=self.writer_id,
        )


@dataclass(slots=True)
class _Part:
    """One variant's share of a scored chunk (``rows``: its row indices; ``None``: all)."""

    variant: ScoredVariant
    rows: NDArray[np.intp] | None
    values: NDArray[np.float64]
    propensity: float
    predictions: NDArray[np.float64]
    scores: NDArray[np.float64] | None
    seconds: float


@dataclass(slots=True)
class _Scored:
    """A chunk after its model calls, waiting to be written."""

    n: int
    ids: pa.Array
    units: pa.Array | None
    ts: datetime
    request_ids: pa.Array | None = None
    columns: dict[str, pa.Array] = field(default_factory=dict)
    parts: list[_Part] = field(default_factory=list)


class _Writer:
    """The thread that writes scored chunks (lake files, output rows) in order.

    Writing (Arrow building, Parquet encoding, fsync) overlaps the next chunk's reading
    and model calls. The queue holds at most two chunks, so memory stays bounded.
    """

    def __init__(self, run: _Run, output: OutputFile) -> None:
        self._run = run
        self._output = output
        self._queue: queue.Queue[_Scored | None] = queue.Queue(maxsize=2)
        self._error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._work, name="score-writer", daemon=True)
        self._thread.start()

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is None or self._stop.is_set():
                return
            try:
                self._run.finish(item, self._output)
            except BaseException as exc:
                self._error = exc
                return

    def _check(self) -> None:
        if self._error is not None:
            error = self._error
            if isinstance(error, (OSError, pa.ArrowException)):
                msg = f"Writing the scored rows failed: {type(error).__name__}: {error}"
                raise BatchScoringError(msg) from error
            raise error

    def put(self, item: _Scored) -> None:
        while True:
            self._check()
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def close(self) -> None:
        """Wait until every chunk is written; raise the writer's error if it had one."""
        while self._thread.is_alive():
            try:
                self._queue.put(None, timeout=0.1)
                break
            except queue.Full:
                self._check()
        self._thread.join()
        self._check()

    def cancel(self) -> None:
        """Stop after the chunk being written (nothing else is written)."""
        self._stop.set()
        with contextlib.suppress(queue.Empty):
            while True:
                self._queue.get_nowait()
        with contextlib.suppress(queue.Full):
            self._queue.put_nowait(None)
        self._thread.join(timeout=120)


def _validate(options: ScoreOptions) -> None:
    if options.variant is not None and options.all_variants:
        msg = "--variant and --all-variants exclude each other; give one or neither."
        raise BatchInputError(msg)
    if not 1 <= options.batch_size <= 16_777_216:
        msg = f"--batch-size must be between 1 and 16777216 rows; got {options.batch_size}."
        raise BatchInputError(msg)
    if options.threads is not None and options.threads < 1:
        msg = f"--threads must be at least 1; got {options.threads}."
        raise BatchInputError(msg)


def score(
    settings: Settings, options: ScoreOptions, *, progress: TextIO | None = None
) -> ScoreSummary:
    """Score ``options.input`` with the experiment's variants; see :class:`ScoreOptions`.

    Parameters
    ----------
    settings
        The service's settings: the SQL store, the lake, the model store, the device.
    options
        The run.
    progress
        Where progress is drawn when it is a terminal (default ``sys.stderr``).

    Returns
    -------
    ScoreSummary

    Raises
    ------
    BatchScoringError
        With one sentence for anything that stops the run (``BatchInputError`` for the
        input's problems, naming the row or column); OUTPUT and the lake are unchanged.
    """
    _validate(options)
    started = time.perf_counter()
    engine = _engine(settings)
    try:
        return _score(settings, options, engine, started, progress or sys.stderr)
    except SQLAlchemyError as exc:
        where = settings.database_url.split("@")[-1]
        first = str(exc).splitlines()[0]
        msg = f"The SQL store at {where} failed ({first}); is it migrated (banditlake migrate)?"
        raise BatchScoringError(msg) from exc
    finally:
        engine.dispose()


def _score(
    settings: Settings,
    options: ScoreOptions,
    engine: Engine,
    started: float,
    stream: TextIO,
) -> ScoreSummary:
    pool = ModelPool(device=settings.device, threads=options.threads or os.cpu_count() or 1)
    store = ModelStore(settings.models_uri, settings.models_dir)
    with sessionmaker(engine)() as session:
        plan = load_plan(
            session,
            pool,
            store,
            options.experiment,
            variant=options.variant,
            all_variants=options.all_variants,
        )
    source = open_source(options.input, float_columns=plan.features)
    _check_columns(source, plan, options)
    run = _Run(settings, options, plan, source)
    if options.log:
        run.start_lake(engine)
    output = OutputFile(options.output)
    bar = Progress(stream, total_rows=source.rows, total_bytes=source.size_bytes)
    columns = list(dict.fromkeys([options.id_column, run.unit_column, *plan.features]))
    summary = ScoreSummary(
        experiment=plan.experiment,
        input=options.input,
        output=str(output.path),
        assignment=plan.assignment,
        batch_size=options.batch_size,
    )
    done = False
    # The collector would otherwise walk every object of the loaded libraries again and
    # again (the run allocates steadily; it measured as half the main thread's time):
    # what exists now is frozen out of its scans, and the loop makes no cycles.
    gc.freeze()
    writer = _Writer(run, output)
    try:
        try:
            for chunk in source.chunks(columns, options.batch_size):
                writer.put(run.chunk(chunk.data, chunk.first))
                summary.rows += chunk.data.num_rows
                bar.update(summary.rows, source.bytes_read)
            writer.close()
            if run.staged is not None:
                run.staged.wait()
        except (OSError, pa.ArrowException) as exc:
            # Reading the input (a file cut short, a corrupt page) or writing the lake.
            writer.cancel()
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            msg = f"The run stopped after {summary.rows} rows: {type(exc).__name__}: {first}"
            raise BatchScoringError(msg) from exc
        except BaseException:
            writer.cancel()
            raise
        bar.update(summary.rows, source.bytes_read, force=True)
        empty = _empty_output(options, plan, source)
        with _no_interrupt():
            if run.staged is not None:
                summary.logged = run.staged.commit()
                summary.lake_files = run.staged.files
            output.finish(empty)
            done = True
    finally:
        gc.unfreeze()
        bar.close()
        if not done:
            output.abort()
            if run.staged is not None:
                run.staged.discard()
    summary.seconds = round(time.perf_counter() - started, 3)
    summary.rows_per_s = round(summary.rows / summary.seconds, 1) if summary.seconds else 0.0
    summary.variants = {
        v.name: {"rows": run.counts[v.name], "provider": v.model.provider, "role": v.role}
        for v in plan.variants
    }
    return summary


def _empty_output(options: ScoreOptions, plan: Plan, source: Source) -> pa.Schema:
    fields = [source.schema.field(options.id_column)]
    if options.log:
        fields.append(pa.field("request_id", pa.string()))
    if plan.assignment == "allocation":
        fields += [
            pa.field("variant", pa.string()),
            pa.field("propensity", pa.float64()),
            pa.field("prediction", pa.float64()),
        ]
    else:
        fields += [pa.field(f"prediction_{v.name}", pa.float64()) for v in plan.variants]
    return pa.schema(fields)
