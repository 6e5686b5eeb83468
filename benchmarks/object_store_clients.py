"""Which client the lake should use for S3: the figures behind the README's choice.

Against one S3 server (moto, over HTTP on loopback), each client in turn, over several
alternating rounds: upload N Parquet files of a flush's size (the writer's job), read
them back into Arrow (the aggregates' job), and a DuckDB count over them (the readers'
job, where DuckDB cannot use its own httpfs offline). Clients: pyarrow's
``S3FileSystem`` (what the lake uses), boto3 (the reference AWS SDK) and, when
installed, obstore (Rust ``object_store``). Prints the median seconds per step and client.

    python benchmarks/object_store_clients.py [--files 40] [--rows 5000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from lake_scale import new_bucket, prediction_table, s3_server  # noqa: E402

from lake.storage import open_storage  # noqa: E402


def _parquet(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="zstd")
    return sink.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--files", type=int, default=40)
    parser.add_argument("--rows", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    from datetime import UTC, datetime

    rng = np.random.default_rng(0)
    table = prediction_table(args.rows, rng, 0, datetime(2026, 11, 1, tzinfo=UTC))
    with s3_server() as env:
        bucket = new_bucket(env, "bench-clients")
        storage = open_storage(f"s3://{bucket}/c", env)
        fs = storage.filesystem
        import boto3

        s3 = boto3.client(
            "s3",
            endpoint_url=env["AWS_ENDPOINT_URL"],
            aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
            region_name=env["AWS_REGION"],
        )
        clients: dict[str, dict[str, Callable[[str], object]]] = {}

        def keys(tag: str) -> list[str]:
            return [f"c/{tag}/{i:05d}.parquet" for i in range(args.files)]

        # What the lake does: LakeStorage.write_new and read_table (lake/storage.py).
        def pa_put(tag: str) -> None:
            for key in keys(tag):
                storage.write_new(key.removeprefix("c/"), table, fresh_name=True)

        def pa_get(tag: str) -> int:
            return sum(storage.read_table(k.removeprefix("c/")).num_rows for k in keys(tag))

        def pa_duckdb(tag: str) -> int:
            con = duckdb.connect()
            con.register("t", ds.dataset([f"{bucket}/{k}" for k in keys(tag)], filesystem=fs))
            n = con.execute("SELECT count(*) FROM t").fetchone()
            con.close()
            return int(n[0]) if n else 0

        def fsspec_duckdb(tag: str) -> int:
            con = duckdb.connect()
            storage.attach_duckdb(con)
            urls = [f"s3://{bucket}/{k}" for k in keys(tag)]
            n = con.execute(f"SELECT count(*) FROM read_parquet({urls})").fetchone()
            con.close()
            return int(n[0]) if n else 0

        clients["pyarrow.fs"] = {
            "put": pa_put,
            "get": pa_get,
            "duckdb": pa_duckdb,
            "duckdb via fsspec": fsspec_duckdb,
        }

        def boto_put(tag: str) -> None:
            for key in keys(tag):
                s3.put_object(Bucket=bucket, Key=key, Body=_parquet(table))

        def boto_get(tag: str) -> int:
            return sum(
                pq.read_table(
                    io.BytesIO(s3.get_object(Bucket=bucket, Key=k)["Body"].read())
                ).num_rows
                for k in keys(tag)
            )

        clients["boto3"] = {"put": boto_put, "get": boto_get}
        try:
            import obstore
            from obstore.store import S3Store

            store = S3Store(
                bucket,
                endpoint=env["AWS_ENDPOINT_URL"],
                access_key_id=env["AWS_ACCESS_KEY_ID"],
                secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
                region=env["AWS_REGION"],
                client_options={"allow_http": True},
            )

            def ob_put(tag: str) -> None:
                for key in keys(tag):
                    obstore.put(store, key, _parquet(table))

            def ob_get(tag: str) -> int:
                return sum(
                    pq.read_table(pa.py_buffer(obstore.get(store, k).bytes())).num_rows
                    for k in keys(tag)
                )

            clients["obstore"] = {"put": ob_put, "get": ob_get}
        except ImportError:
            print("obstore is not installed: measured without it")

        times: dict[tuple[str, str], list[float]] = {}
        for r in range(args.rounds):
            order = list(clients) if r % 2 == 0 else list(reversed(clients))
            for name in order:
                steps = clients[name]
                tag = f"{name}-{r}"
                for step in steps:
                    start = time.perf_counter()
                    result = steps[step](tag)
                    times.setdefault((name, step), []).append(time.perf_counter() - start)
                    if step != "put":
                        assert result == args.files * args.rows, (name, step, result)
    print(
        f"{args.files} files of {args.rows:,} rows ({len(_parquet(table)):,} bytes each), median of {args.rounds}:"
    )
    for (name, step), values in times.items():
        print(f"  {name:12s} {step:18s} {statistics.median(values):.3f} s")


if __name__ == "__main__":
    main()
