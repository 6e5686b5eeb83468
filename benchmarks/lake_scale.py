"""The lake at scale, each figure against a baseline run side by side in this script.

(a) writer throughput to an S3 server (moto, over HTTP on loopback) against plain
    ``pyarrow.parquet.write_table`` of the same Arrow batches to the same server: rows/s
    of each, alternating rounds, and the median ratio (target >= 0.8);
(b) a DuckDB group-by over N prediction rows through ``open_lake`` after compaction,
    against the same query over one Parquet file holding those rows (target <= 1.2x),
    and before compaction (the writers' small files);
(c) compaction rate in rows/s (the compaction that (b) measures after);
(d) serving throughput with the lake on S3 against on local disk (``--serving``: runs
    two servers under wrk, alternating windows; target >= 0.9).

    python benchmarks/lake_scale.py [--rows 10000000] [--file-rows 5000] [--serving]

(b) and (c) build the lake in a local directory by default (``--s3-lake`` puts it on
the S3 server: moto keeps objects in memory, so keep ``--rows`` to a few million there).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from sqlalchemy import Engine, create_engine

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from lake.compaction import compact  # noqa: E402
from lake.manifest import FileEntry, metadata, register_file  # noqa: E402
from lake.reader import open_lake  # noqa: E402
from lake.schemas import PREDICTIONS_SCHEMA, PredictionRow  # noqa: E402
from lake.storage import LakeStorage, open_storage  # noqa: E402
from lake.writer import LakeWriter  # noqa: E402

T0 = datetime(2026, 11, 1, tzinfo=UTC)
QUERY = (
    "SELECT variant, count(*) AS n, avg(latency_ms) AS latency, avg(prediction) AS mean "
    "FROM {source} WHERE experiment = 'bench' AND role = 'arm' GROUP BY variant ORDER BY variant"
)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def s3_server() -> Iterator[dict[str, str]]:
    """moto's S3 server in its own process; yields the AWS_* variables that reach it."""
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    env = {
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench-secret",
        "AWS_REGION": "us-east-1",
    }
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        yield env
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def new_bucket(env: dict[str, str], name: str) -> str:
    client = boto3.client(
        "s3",
        endpoint_url=env["AWS_ENDPOINT_URL"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        region_name=env["AWS_REGION"],
    )
    client.create_bucket(Bucket=name)
    return name


def prediction_rows(n: int, rng: np.random.Generator, *, offset: int = 0) -> list[PredictionRow]:
    """What the serving path appends: one PredictionRow per request."""
    features = rng.normal(size=(n, 4))
    variants = np.where(rng.random(n) < 0.5, "a", "b")
    latency = rng.lognormal(0, 0.5, size=n)
    prediction = rng.normal(size=n)
    now = datetime.now(UTC)
    return [
        PredictionRow(
            request_id=f"bench.{offset + i:024x}",
            ts=now,
            experiment="bench",
            variant=str(variants[i]),
            role="arm",
            allocation_version=1,
            propensity=0.5,
            unit_id=None,
            features={f"f{j}": float(features[i, j]) for j in range(4)},
            prediction=float(prediction[i]),
            scores=None,
            latency_ms=float(latency[i]),
            model_sha256="0" * 64,
            provider="CPUExecutionProvider",
            status="ok",
            error=None,
        )
        for i in range(n)
    ]


def prediction_table(n: int, rng: np.random.Generator, start: int, at: datetime) -> pa.Table:
    """``n`` prediction rows as Arrow, built column-wise (fast enough for 10M rows)."""
    ids = pa.array([f"bench.{i:024x}" for i in range(start, start + n)])
    ts = pa.array(
        int(at.timestamp() * 1e6) + np.arange(n, dtype=np.int64), pa.timestamp("us", tz="UTC")
    )
    variant = rng.random(n) < 0.5
    features = pa.MapArray.from_arrays(
        pa.array(np.arange(0, 2 * n + 1, 2, dtype=np.int32)),
        pa.array(["f0", "f1"] * n),
        pa.array(rng.normal(size=2 * n)),
    )
    return pa.Table.from_arrays(
        [
            ids,
            ts,
            pa.array(["bench"] * n),
            pa.array(np.where(variant, "a", "b")),
            pa.array(["arm"] * n),
            pa.array(np.ones(n, dtype=np.int32)),
            pa.array(np.full(n, 0.5)),
            pa.nulls(n, pa.string()),
            features,
            pa.array(rng.normal(size=n)),
            pa.nulls(n, pa.list_(pa.float64())),
            pa.array(rng.lognormal(0, 0.5, size=n)),
            pa.array(["0" * 64] * n),
            pa.array(["CPUExecutionProvider"] * n),
            pa.array(["ok"] * n),
            pa.nulls(n, pa.string()),
            pa.array(["bench"] * n),
        ],
        schema=PREDICTIONS_SCHEMA,
    )


def manifest(path: Path) -> Engine:
    engine = create_engine(f"sqlite:///{path}")
    metadata.create_all(engine)
    return engine


# -- (a) writer throughput ------------------------------------------------------------


def writer_round(
    storage: LakeStorage, engine: Engine, rows: list[PredictionRow], batch: int
) -> float:
    writer = LakeWriter(
        storage,
        engine,
        table="predictions",
        flush_rows=batch,
        flush_interval_s=3600.0,
        max_buffer_rows=len(rows) + batch,
    )
    try:
        start = time.perf_counter()
        for row in rows:
            writer.append(row)
        writer.flush()
        elapsed = time.perf_counter() - start
        stats = writer.stats()
        assert stats.rows_written == len(rows), stats
    finally:
        writer.close()
    return len(rows) / elapsed


def raw_round(storage: LakeStorage, tables: list[pa.Table], tag: str) -> float:
    fs = storage.filesystem
    start = time.perf_counter()
    for i, table in enumerate(tables):
        pq.write_table(
            table, storage.location(f"raw/{tag}/{i:06d}.parquet"), filesystem=fs, compression="zstd"
        )
    elapsed = time.perf_counter() - start
    return sum(t.num_rows for t in tables) / elapsed


def publish_round(storage: LakeStorage, engine: Engine, tables: list[pa.Table]) -> float:
    """The writer's I/O half alone: Arrow batches through FilePublisher (file + manifest)."""
    from lake.publish import FilePublisher

    publisher = FilePublisher(
        storage, engine, table="predictions", writer_id="publish", compression="zstd"
    )
    start = time.perf_counter()
    for table in tables:
        publisher.publish(table)
    elapsed = time.perf_counter() - start
    return sum(t.num_rows for t in tables) / elapsed


def convert_round(rows: list[PredictionRow], batch: int) -> float:
    """The writer's CPU half alone: Python rows to Arrow, batch by batch."""
    from lake.arrow_rows import rows_to_table

    start = time.perf_counter()
    for i in range(0, len(rows), batch):
        rows_to_table(rows[i : i + batch], table="predictions", writer_id="convert")
    return len(rows) / (time.perf_counter() - start)


def part_a(env: dict[str, str], rows: int, batch: int, rounds: int, work: Path) -> dict[str, Any]:
    from lake.arrow_rows import rows_to_table

    bucket = new_bucket(env, "bench-writer")
    storage = open_storage(f"s3://{bucket}/lake", env)
    engine = manifest(work / "writer.db")
    rng = np.random.default_rng(1)
    data = prediction_rows(rows, rng)
    tables = [
        rows_to_table(data[i : i + batch], table="predictions", writer_id="raw")
        for i in range(0, rows, batch)
    ]
    ratios, writer_rps, raw_rps, publish_ratios, convert_rps = [], [], [], [], []
    for r in range(rounds):
        w = writer_round(storage, engine, data, batch)
        b = raw_round(storage, tables, str(r))
        p = publish_round(storage, engine, tables)
        c = convert_round(data, batch)
        writer_rps.append(w)
        raw_rps.append(b)
        ratios.append(w / b)
        publish_ratios.append(p / b)
        convert_rps.append(c)
        print(
            f"  (a) round {r + 1}: writer {w:,.0f} rows/s, raw write_table {b:,.0f} rows/s, "
            f"ratio {w / b:.2f}; of which publishing Arrow batches {p:,.0f} rows/s "
            f"({p / b:.2f} of raw), converting rows to Arrow {c:,.0f} rows/s"
        )
    engine.dispose()
    return {
        "rows": rows,
        "batch_rows": batch,
        "writer_rows_per_s": statistics.median(writer_rps),
        "raw_rows_per_s": statistics.median(raw_rps),
        "ratio": statistics.median(ratios),
        "publish_vs_raw": statistics.median(publish_ratios),
        "convert_rows_per_s": statistics.median(convert_rps),
    }


# -- (b), (c) query after compaction, compaction rate -----------------------------------


def build_lake(storage: LakeStorage, engine: Engine, rows: int, file_rows: int) -> pa.Table:
    """The writers' small files, registered as flushes an hour old; returns all rows."""
    rng = np.random.default_rng(2)
    tables = []
    created = datetime.now(UTC) - timedelta(hours=2)
    for k, start in enumerate(range(0, rows, file_rows)):
        n = min(file_rows, rows - start)
        at = T0 + timedelta(seconds=start // 1000)
        table = prediction_table(n, rng, start, at)
        path = f"predictions/dt={at:%Y-%m-%d}/hour={at:%H}/part-bench-{k:08d}.parquet"
        size = storage.write_new(path, table, compression="zstd")
        register_file(
            engine,
            FileEntry(
                table="predictions",
                path=path,
                rows=n,
                bytes=size,
                writer_id="bench",
                min_ts=table["ts"][0].as_py(),
                max_ts=table["ts"][-1].as_py(),
                created_at=created,
            ),
        )
        tables.append(table)
    return pa.concat_tables(tables)


def timed(fn: Callable[[], Any], reps: int) -> tuple[float, Any]:
    times, result = [], None
    for _ in range(reps):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def part_bc(
    storage: LakeStorage, engine: Engine, rows: int, file_rows: int, reps: int, work: Path
) -> dict[str, Any]:
    start = time.perf_counter()
    everything = build_lake(storage, engine, rows, file_rows)
    build_s = time.perf_counter() - start
    single = work / "single.parquet"
    pq.write_table(
        everything.sort_by([("experiment", "ascending"), ("ts", "ascending")]),
        single,
        compression="zstd",
        row_group_size=128 * 1024,
    )
    del everything
    print(f"  built {rows:,} rows in {rows // file_rows:,} files in {build_s:.1f} s")

    def lake_query() -> list[tuple[Any, ...]]:
        with open_lake(engine, storage) as lake:
            con = lake.duckdb()
            try:
                return con.execute(QUERY.format(source="predictions")).fetchall()
            finally:
                con.close()

    import duckdb

    def single_query() -> list[tuple[Any, ...]]:
        con = duckdb.connect()
        try:
            return con.execute(QUERY.format(source=f"read_parquet('{single}')")).fetchall()
        finally:
            con.close()

    before_s, before = timed(lake_query, reps)
    start = time.perf_counter()
    summary = compact(engine, storage, min_age=timedelta(0), grace=timedelta(hours=1))
    compact_s = time.perf_counter() - start
    results = {"after": [], "single": []}
    after_times, single_times = [], []
    for _ in range(reps):
        # Alternating, so both see the same machine.
        t, r = timed(lake_query, 1)
        after_times.append(t)
        results["after"] = r
        t, r = timed(single_query, 1)
        single_times.append(t)
        results["single"] = r
    after_s, single_s = statistics.median(after_times), statistics.median(single_times)
    same = (
        [row[:2] for row in before]
        == [row[:2] for row in results["after"]]
        == [row[:2] for row in results["single"]]
    )
    assert same, (before, results)
    return {
        "rows": rows,
        "small_files": rows // file_rows,
        "compaction_seconds": compact_s,
        "compaction_rows_per_s": rows / compact_s,
        "compaction": repr(summary),
        "query_before_compaction_s": before_s,
        "query_after_compaction_s": after_s,
        "query_one_file_s": single_s,
        "after_vs_one_file": after_s / single_s,
        "before_vs_one_file": before_s / single_s,
    }


# -- (d) serving with the lake on S3 against on local disk ------------------------------


def _banditlake(env: dict[str, str], port: int) -> subprocess.Popen[bytes]:
    from serving import _pin

    cli = Path(sys.executable).with_name("banditlake")
    subprocess.run([str(cli), "migrate"], env=env, check=True, capture_output=True)
    return subprocess.Popen(
        [*_pin(0), str(cli), "serve", "--port", str(port)], env=env, stderr=subprocess.PIPE
    )


def part_d(
    s3_env: dict[str, str], windows: int, seconds: float, concurrency: int, work: Path
) -> dict[str, Any]:
    import shutil

    from serving import BODY, WRK_SCRIPT, D, _wait, load, setup_experiment

    from tests.onnx_models import mlp_model

    model = mlp_model(D)
    base = {k: v for k, v in os.environ.items() if not k.startswith("BANDITLAKE_")}
    base |= {"BANDITLAKE_DEVICE": "cpu"}
    bucket = new_bucket(s3_env, "bench-serving")
    envs = {
        "local": base | {"BANDITLAKE_HOME": str(work / "serve-local")},
        "s3": base
        | s3_env
        | {
            "BANDITLAKE_HOME": str(work / "serve-s3"),
            "BANDITLAKE_LAKE_URI": f"s3://{bucket}/lake",
        },
    }
    ports = {name: _free_port() for name in envs}
    procs = {name: _banditlake(env, ports[name]) for name, env in envs.items()}
    results: dict[str, list[Any]] = {name: [] for name in envs}
    try:
        for name, proc in procs.items():
            url = f"http://127.0.0.1:{ports[name]}"
            _wait(f"{url}/healthz", proc)
            setup_experiment(url, model)
        script = None
        if shutil.which("wrk"):
            script = work / "post.lua"
            script.write_text(WRK_SCRIPT % BODY)
        urls = {n: f"http://127.0.0.1:{p}/v1/experiments/bench/predict" for n, p in ports.items()}
        for url in urls.values():
            load(url, concurrency, 3.0, script)
        for i in range(windows):
            order = ["local", "s3"] if i % 2 == 0 else ["s3", "local"]
            for name in order:
                results[name].append(load(urls[name], concurrency, seconds, script))
                print(f"  (d) window {i + 1} {name}: {results[name][-1].rps:,.0f} req/s")
        # What the S3 replica served is in its lake (flushed at shutdown).
    finally:
        for proc in procs.values():
            proc.terminate()
        for proc in procs.values():
            proc.wait(timeout=120)
    ratios = [s.rps / loc.rps for s, loc in zip(results["s3"], results["local"], strict=True)]
    return {
        "generator": "wrk" if script else "httpx",
        "local_rps": statistics.median(w.rps for w in results["local"]),
        "s3_rps": statistics.median(w.rps for w in results["s3"]),
        "ratio": statistics.median(ratios),
        "errors": sum(w.errors for ws in results.values() for w in ws),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=10_000_000, help="rows for (b) and (c)")
    parser.add_argument("--file-rows", type=int, default=5000, help="rows per small file")
    parser.add_argument("--writer-rows", type=int, default=200_000, help="rows for (a)")
    parser.add_argument("--writer-batch", type=int, default=5000, help="flush size for (a)")
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds of (a)")
    parser.add_argument("--reps", type=int, default=5, help="query repetitions of (b)")
    parser.add_argument("--s3-lake", action="store_true", help="build (b)'s lake on S3")
    parser.add_argument("--skip-writer", action="store_true", help="skip (a)")
    parser.add_argument("--skip-query", action="store_true", help="skip (b) and (c)")
    parser.add_argument(
        "--serving", action="store_true", help="run (d) (needs wrk for stable figures)"
    )
    parser.add_argument("--windows", type=int, default=6, help="alternating windows of (d)")
    parser.add_argument("--seconds", type=float, default=5.0, help="seconds per window of (d)")
    parser.add_argument("--concurrency", type=int, default=32, help="connections of (d)")
    parser.add_argument("--json", action="store_true", help="print one JSON object at the end")
    args = parser.parse_args()
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="lake-scale-") as tmp, s3_server() as env:
        work = Path(tmp)
        if not args.skip_writer:
            print(
                f"(a) writer vs raw write_table, {args.writer_rows:,} rows in batches of {args.writer_batch:,}, S3 server"
            )
            out["writer"] = part_a(env, args.writer_rows, args.writer_batch, args.rounds, work)
            a = out["writer"]
            print(
                f"(a) ratio {a['ratio']:.2f} (target >= 0.8); publishing alone "
                f"{a['publish_vs_raw']:.2f} of raw; conversion {a['convert_rows_per_s']:,.0f} rows/s"
            )
        if not args.skip_query:
            if args.s3_lake:
                storage = open_storage(f"s3://{new_bucket(env, 'bench-query')}/lake", env)
            else:
                storage = open_storage(work / "lake")
            engine = manifest(work / "query.db")
            print(f"(b, c) {args.rows:,} rows on {storage.uri}")
            out["query"] = part_bc(storage, engine, args.rows, args.file_rows, args.reps, work)
            q = out["query"]
            print(
                f"(b) group-by: after compaction {q['query_after_compaction_s']:.3f} s, one file "
                f"{q['query_one_file_s']:.3f} s (ratio {q['after_vs_one_file']:.2f}, target <= 1.2), "
                f"before compaction {q['query_before_compaction_s']:.3f} s "
                f"(ratio {q['before_vs_one_file']:.2f})"
            )
            print(
                f"(c) compaction {q['compaction_rows_per_s']:,.0f} rows/s ({q['compaction_seconds']:.1f} s)"
            )
            engine.dispose()
        if args.serving:
            print("(d) serving throughput, lake on S3 vs on local disk")
            out["serving"] = part_d(env, args.windows, args.seconds, args.concurrency, work)
            d = out["serving"]
            print(
                f"(d) local {d['local_rps']:,.0f} req/s, S3 {d['s3_rps']:,.0f} req/s, "
                f"ratio {d['ratio']:.2f} (target >= 0.9), {d['generator']}, errors {d['errors']}"
            )
    if args.json:
        print(json.dumps(out))


if __name__ == "__main__":
    os.environ.setdefault("POLARS_MAX_THREADS", "2")
    main()
