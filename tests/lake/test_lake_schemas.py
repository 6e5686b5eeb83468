from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from functools import partial

import pyarrow as pa
import pytest

from lake import FEEDBACK_SCHEMA, PREDICTIONS_SCHEMA, FeedbackRow, PredictionRow
from lake.arrow_rows import rows_to_table, split_convertible
from lake.errors import RowConversionError
from tests.lake.lake_support import T0, feedback, prediction


def test_row_types_follow_their_schema_minus_writer_id() -> None:
    assert PredictionRow._fields == tuple(PREDICTIONS_SCHEMA.names[:-1])
    assert FeedbackRow._fields == tuple(FEEDBACK_SCHEMA.names[:-1])
    assert PREDICTIONS_SCHEMA.names[-1] == FEEDBACK_SCHEMA.names[-1] == "writer_id"


def test_prediction_schema_types() -> None:
    s = PREDICTIONS_SCHEMA
    assert s.field("ts").type == pa.timestamp("us", tz="UTC")
    assert s.field("allocation_version").type == pa.int32()
    assert s.field("features").type == pa.map_(pa.string(), pa.float64())
    assert s.field("scores").type == pa.list_(pa.float64())
    nullable = {f.name for f in s if f.nullable}
    assert nullable == {"unit_id", "prediction", "scores", "error"}


def test_feedback_schema_types() -> None:
    s = FEEDBACK_SCHEMA
    assert s.field("ts").type == pa.timestamp("us", tz="UTC")
    assert {f.name for f in s if f.nullable} == {"reward", "label"}


def test_predictions_convert_with_values_intact() -> None:
    rows = [prediction("r1", features={"x": 1.0}), prediction("r2", features={}, prediction=None)]
    table = rows_to_table(rows, "predictions", "w-1")
    assert table.schema == PREDICTIONS_SCHEMA
    got = table.to_pylist()
    assert got[0]["features"] == [("x", 1.0)]
    assert got[1]["features"] == []
    assert got[1]["prediction"] is None
    assert got[0]["ts"] == T0
    assert {r["writer_id"] for r in got} == {"w-1"}


def test_timestamps_are_stored_in_utc() -> None:
    plus_two = datetime(2025, 3, 1, 14, 0, tzinfo=timezone(timedelta(hours=2)))
    table = rows_to_table([prediction("r", ts=plus_two)], "predictions", "w")
    assert table.column("ts")[0].as_py() == datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def test_feedback_without_key_gets_its_request_id() -> None:
    rows = [feedback("r1"), feedback("r2", key="k-9", reward=None, label="cat")]
    table = rows_to_table(rows, "feedback", "w")
    assert table.schema == FEEDBACK_SCHEMA
    assert table.column("idempotency_key").to_pylist() == ["r1", "k-9"]
    assert table.column("label").to_pylist() == [None, "cat"]


def test_no_rows_give_an_empty_table_with_the_schema() -> None:
    assert rows_to_table([], "feedback", "w").schema == FEEDBACK_SCHEMA


@pytest.mark.parametrize(
    ("row", "message"),
    [
        (
            prediction("r", role="canary"),
            "Column 'role' may only hold ['arm', 'shadow'], but got ['canary'].",
        ),
        (
            prediction("r", status="maybe"),
            "Column 'status' may only hold ['error', 'ok', 'rejected'], but got ['maybe'].",
        ),
        (
            feedback("r"),
            "Rows for table 'predictions' must have 17 fields (request_id, ts, experiment, "
            "variant, role, allocation_version, propensity, unit_id, features, prediction, "
            "scores, latency_ms, model_sha256, provider, status, error, mode), but they "
            "have 5.",
        ),
        (
            prediction("r")._replace(request_id=None),  # type: ignore[arg-type]
            "Column 'request_id' may not be null, but 1 rows hold null.",
        ),
        (
            prediction("r")._replace(features=None),  # type: ignore[arg-type]
            "Rows for table 'predictions' do not fit its schema: "
            "TypeError: object of type 'NoneType' has no len()",
        ),
    ],
)
def test_bad_rows_are_refused_with_a_sentence(row: tuple[object, ...], message: str) -> None:
    with pytest.raises(RowConversionError) as info:
        rows_to_table([row], "predictions", "w")
    assert str(info.value) == message


@pytest.mark.parametrize(
    "row",
    [
        prediction("r")._replace(propensity="high"),  # type: ignore[arg-type]
        prediction("r")._replace(scores=[0.5, "x"]),  # type: ignore[list-item]
        prediction("r")._replace(ts="yesterday"),  # type: ignore[arg-type]
    ],
)
def test_wrong_types_are_refused(row: tuple[object, ...]) -> None:
    with pytest.raises(RowConversionError, match="do not fit its schema"):
        rows_to_table([row], "predictions", "w")


def test_bad_rows_are_isolated_from_their_batch() -> None:
    rows = [prediction(f"r{i}") for i in range(100)]
    rows[17] = rows[17]._replace(role="nope")  # type: ignore[arg-type]
    rows[80] = rows[80]._replace(features=None)  # type: ignore[arg-type]
    convert = partial(rows_to_table, table="predictions", writer_id="w")
    tables, rejected = split_convertible(rows, convert)
    assert [row[0] for row, _ in rejected] == ["r17", "r80"]
    kept = [rid for t in tables for rid in t.column("request_id").to_pylist()]
    assert kept == [f"r{i}" for i in range(100) if i not in (17, 80)]
