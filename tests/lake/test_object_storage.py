"""The object-storage path the lake builds on, against a real S3 server over HTTP.

What it checks is what the design relies on when the lake lives in a bucket: a Parquet
file written through pyarrow's S3 file system is one whole object, and polars and DuckDB
read it back without DuckDB's ``httpfs`` extension (which it downloads at run time, and
this machine is offline) — DuckDB scans an Arrow dataset over the same file system.
"""

from __future__ import annotations

import duckdb
import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from tests.s3_server import S3Server, s3_server  # noqa: F401  (the fixture)


def _table(rng: np.random.Generator, rows: int) -> pa.Table:
    return pa.table(
        {
            "variant": rng.choice(["a", "b", "c"], size=rows),
            "reward": rng.random(rows),
        }
    )


def test_parquet_objects_round_trip_and_every_engine_agrees(s3_server: S3Server) -> None:  # noqa: F811
    fs = s3_server.filesystem()
    bucket = s3_server.create_bucket()
    rng = np.random.default_rng(7)
    parts = [_table(rng, n) for n in (1_000, 2_500, 40)]
    paths = []
    for i, part in enumerate(parts):
        path = f"{bucket}/lake/predictions/part-{i}.parquet"
        pq.write_table(part, path, filesystem=fs)
        paths.append(path)
    whole = pa.concat_tables(parts)
    # The reference, from numpy on the rows as written.
    variants = whole["variant"].to_numpy(zero_copy_only=False)
    rewards = whole["reward"].to_numpy()
    names = sorted(set(variants.tolist()))
    counts = [int(np.sum(variants == v)) for v in names]
    sums = [float(np.sum(rewards[variants == v])) for v in names]

    # Each object is whole: its size on the server is the file's, and it reads back alone.
    for path, part in zip(paths, parts, strict=True):
        info = fs.get_file_info(path)
        assert info.size > 0
        assert pq.read_table(path, filesystem=fs).equals(part)

    # polars over the same objects.
    with fs.open_input_file(paths[0]) as f:
        assert pl.read_parquet(f).height == parts[0].num_rows
    dataset = ds.dataset(paths, format="parquet", filesystem=fs)
    from_polars = (
        pl.scan_pyarrow_dataset(dataset)
        .group_by("variant")
        .agg(pl.len().alias("rows"), pl.col("reward").sum().alias("reward"))
        .sort("variant")
        .collect()
    )
    # DuckDB over the Arrow dataset: no extension download.
    con = duckdb.connect()
    con.register("predictions", dataset)
    from_duckdb = pl.DataFrame(
        con.sql(
            "SELECT variant, count(*) AS rows, sum(reward) AS reward FROM predictions "
            "GROUP BY variant ORDER BY variant"
        ).to_arrow_table()
    )
    con.close()
    for got in (from_polars, from_duckdb):
        assert got["variant"].to_list() == names
        assert got["rows"].cast(pl.Int64).to_list() == counts
        assert np.allclose(got["reward"].to_numpy(), sums)
    assert sum(counts) == 3_540
