"""Arrow schemas of the lake's tables and the row values the service appends.

Each table has a pyarrow schema (what the Parquet files hold) and a row type (what the
request path creates, one per request). A row type's fields are the schema's columns in
order, minus the trailing ``writer_id`` column, which the writer fills in; keeping the
order identical lets the writer transpose a batch of rows with one ``zip(*rows)``.

The row types are ``NamedTuple`` rather than dataclasses because building one is a single
``tuple.__new__`` call, which matters on a path that runs once per request; they are just
as immutable and typed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Final, Literal, NamedTuple

import pyarrow as pa

__all__ = [
    "FEEDBACK_SCHEMA",
    "INFERENCE_MODES",
    "PREDICTIONS_SCHEMA",
    "SCHEMAS",
    "TABLES",
    "FeedbackRow",
    "InferenceMode",
    "PredictionRow",
    "TableName",
]

TableName = Literal["predictions", "feedback"]
"""Name of a lake table; also its directory name under the lake root."""

TABLES: Final[tuple[TableName, ...]] = ("predictions", "feedback")

InferenceMode = Literal["online", "batch", "stream"]
"""How a prediction was served; the ``mode`` column of the predictions table."""

INFERENCE_MODES: Final[tuple[InferenceMode, ...]] = ("online", "batch", "stream")

_TS = pa.timestamp("us", tz="UTC")

PREDICTIONS_SCHEMA: Final[pa.Schema] = pa.schema(
    [
        pa.field("request_id", pa.string(), nullable=False),
        pa.field("ts", _TS, nullable=False),
        pa.field("experiment", pa.string(), nullable=False),
        pa.field("variant", pa.string(), nullable=False),
        pa.field("role", pa.string(), nullable=False),
        pa.field("allocation_version", pa.int32(), nullable=False),
        pa.field("propensity", pa.float64(), nullable=False),
        pa.field("unit_id", pa.string(), nullable=True),
        pa.field("features", pa.map_(pa.string(), pa.float64()), nullable=False),
        pa.field("prediction", pa.float64(), nullable=True),
        pa.field("scores", pa.list_(pa.float64()), nullable=True),
        pa.field("latency_ms", pa.float64(), nullable=False),
        pa.field("model_sha256", pa.string(), nullable=False),
        pa.field("provider", pa.string(), nullable=False),
        pa.field("status", pa.string(), nullable=False),
        pa.field("error", pa.string(), nullable=True),
        pa.field("mode", pa.string(), nullable=False),
        pa.field("writer_id", pa.string(), nullable=False),
    ]
)
"""One row per served request and variant (arms and shadows), including failed ones.

``mode`` was added after the first files were written: a file without it holds online
rows, and every reader treats a missing ``mode`` as ``"online"``.
"""

FEEDBACK_SCHEMA: Final[pa.Schema] = pa.schema(
    [
        pa.field("request_id", pa.string(), nullable=False),
        pa.field("ts", _TS, nullable=False),
        pa.field("reward", pa.float64(), nullable=True),
        pa.field("label", pa.string(), nullable=True),
        pa.field("idempotency_key", pa.string(), nullable=False),
        pa.field("writer_id", pa.string(), nullable=False),
    ]
)
"""One row per piece of feedback received; duplicates are resolved by readers."""

SCHEMAS: Final[Mapping[TableName, pa.Schema]] = {
    "predictions": PREDICTIONS_SCHEMA,
    "feedback": FEEDBACK_SCHEMA,
}


class PredictionRow(NamedTuple):
    """One prediction, as appended by the serving path.

    Parameters
    ----------
    request_id
        Identifier returned to the client; feedback joins on it. A shadow row carries
        the request id of the request it shadowed.
    ts
        When the request was served, timezone-aware UTC (a naive value is read as UTC).
    experiment, variant
        Names of the experiment and of the variant that produced this row.
    role
        ``"arm"`` for the variant whose prediction was returned, ``"shadow"`` otherwise.
    allocation_version
        Version of the allocation the variant was chosen from.
    propensity
        Probability with which this variant was chosen for this request (its weight in
        the allocation), not ``1/K``.
    unit_id
        The client's unit id, when given.
    features
        Model inputs by name; read back by name (DuckDB ``features['x']``, polars
        ``pl.col("features").map.get("x")``).
    prediction
        The scalar prediction: a class label's value or a regression value; ``None``
        when the request failed.
    scores
        Optional vector output, such as class probabilities.
    latency_ms
        Time spent serving this row, in milliseconds.
    model_sha256
        Checksum of the ONNX file that produced the prediction.
    provider
        ONNX Runtime execution provider actually in use, e.g. ``"CPUExecutionProvider"``.
    status
        ``"ok"``; ``"error"`` when the variant failed (it counts against the variant's
        error-rate guardrail); ``"rejected"`` when the model could not answer this row's
        features but still answers its reference input, so the row, not the variant, is
        at fault (the client got a 422; it does not count against the guardrail).
    error
        The error message when ``status`` is not ``"ok"``.
    mode
        How the row was served: ``"online"`` (the HTTP path), ``"batch"`` (``banditlake
        score``) or ``"stream"`` (the message-stream consumer). Batch rows stay out of the
        bandit statistics unless the experiment sets ``learn_from_batch``.
    """

    request_id: str
    ts: datetime
    experiment: str
    variant: str
    role: Literal["arm", "shadow"]
    allocation_version: int
    propensity: float
    unit_id: str | None
    features: Mapping[str, float]
    prediction: float | None
    scores: Sequence[float] | None
    latency_ms: float
    model_sha256: str
    provider: str
    status: Literal["ok", "error", "rejected"]
    error: str | None = None
    mode: InferenceMode = "online"


class FeedbackRow(NamedTuple):
    """One piece of feedback, as appended by the feedback endpoint.

    Parameters
    ----------
    request_id
        The request this feedback is about.
    ts
        When the feedback was received, timezone-aware UTC.
    reward
        Numeric reward, when given.
    label
        Observed label as a string (numbers are stored in their string form), when given.
    idempotency_key
        Key that identifies a retried delivery of the same feedback; ``None`` means the
        request id, which is what the writer stores in that case.
    """

    request_id: str
    ts: datetime
    reward: float | None
    label: str | None
    idempotency_key: str | None = None
