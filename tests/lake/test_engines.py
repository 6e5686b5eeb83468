"""After compaction, every engine reads the same lake: Spark (local mode, over the Parquet
files the Delta log lists: no Delta or S3 connector can be downloaded here), polars
``scan_delta``, DuckDB over the same files, and ``lake.open_lake`` over the manifest."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import pytest
from deltalake import DeltaTable
from sqlalchemy import Engine, create_engine

from lake.compaction import compact, delta_uri
from lake.manifest import COMPACTION_WRITER_ID, live_files, metadata
from lake.schemas import SCHEMAS
from lake.storage import LakeStorage, open_storage
from tests.lake.compaction_support import TABLE_NAMES, totals, write_lake

pytestmark = pytest.mark.skipif(shutil.which("java") is None, reason="Spark needs Java")


# `spark`: the suite's one local Spark session (tests/conftest.py).


@pytest.fixture
def compacted(tmp_path: Path) -> Iterator[tuple[Engine, LakeStorage]]:
    engine = create_engine(f"sqlite:///{tmp_path / 'store.db'}")
    metadata.create_all(engine, tables=[metadata.tables[name] for name in TABLE_NAMES])
    storage = open_storage(tmp_path / "lake")
    write_lake(storage, engine, files=10, rows=20)
    before = totals(engine, storage)
    compact(engine, storage, min_age=timedelta(0), grace=timedelta(hours=1))  # --min-age 0
    assert totals(engine, storage) == before
    for table in ("predictions", "feedback"):
        assert all(e.writer_id == COMPACTION_WRITER_ID for e in live_files(engine, table))
    yield engine, storage
    engine.dispose()


def _rounded(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    return [tuple(round(v, 9) if isinstance(v, float) else v for v in row) for row in rows]


def test_spark_polars_duckdb_and_the_lake_agree(
    compacted: tuple[Engine, LakeStorage], spark: Any
) -> None:
    engine, storage = compacted
    lake = totals(engine, storage)
    expected = {
        "predictions": _rounded([(v, n, s) for v, n, s, _d in lake["predictions"]]),  # type: ignore[attr-defined]
        "feedback": _rounded(lake["feedback"]),  # type: ignore[arg-type]
    }
    assert sum(n for _v, n, _s in expected["predictions"]) == 200

    uris = {t: DeltaTable(delta_uri(storage, t)).file_uris() for t in ("predictions", "feedback")}
    assert sorted(uris["predictions"]) == sorted(
        storage.url(e.path) for e in live_files(engine, "predictions")
    )

    # Spark over the files the Delta log lists.
    from pyspark.sql import functions as F  # noqa: N812

    preds = spark.read.parquet(*uris["predictions"])
    assert preds.columns == SCHEMAS["predictions"].names  # no dt: it lives in the log
    got = preds.groupBy("variant").agg(F.count("*"), F.sum("prediction")).orderBy("variant")
    spark_preds = _rounded([tuple(r) for r in got.collect()])
    fb = spark.read.parquet(*uris["feedback"]).agg(F.count("*"), F.sum("reward")).collect()
    assert spark_preds == expected["predictions"]
    assert _rounded([tuple(fb[0])]) == expected["feedback"]

    # polars through the Delta log (partition column dt added).
    frame = pl.scan_delta(delta_uri(storage, "predictions"))
    assert frame.collect_schema().names() == [*SCHEMAS["predictions"].names, "dt"]
    polars_preds = (
        frame.group_by("variant")
        .agg(pl.len(), pl.col("prediction").sum())
        .sort("variant")
        .collect()
        .rows()
    )
    polars_fb = (
        pl.scan_delta(delta_uri(storage, "feedback"))
        .select(pl.len(), pl.col("reward").sum())
        .collect()
        .rows()
    )
    assert _rounded(polars_preds) == expected["predictions"]
    assert _rounded(polars_fb) == expected["feedback"]

    # DuckDB over the same files.
    con = duckdb.connect()
    duck_preds = con.execute(
        "SELECT variant, count(*), sum(prediction) FROM read_parquet(?, hive_partitioning = false) "
        "GROUP BY variant ORDER BY variant",
        [uris["predictions"]],
    ).fetchall()
    duck_fb = con.execute(
        "SELECT count(*), sum(reward) FROM read_parquet(?, hive_partitioning = false)",
        [uris["feedback"]],
    ).fetchall()
    con.close()
    assert _rounded(duck_preds) == expected["predictions"]
    assert _rounded(duck_fb) == expected["feedback"]
