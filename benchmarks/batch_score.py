"""``banditlake score`` against a plain ONNX Runtime loop over the same Parquet file.

Both run as subprocesses of this script, side by side, in alternating order over several
repeats, on the same input (``--rows`` rows of an id and 16 float features), with the same
model (the benchmarks' MLP, :func:`tests.onnx_models.mlp_model`), the same batch size and
the same ONNX Runtime threads:

- ``baseline``: ``pyarrow.parquet.ParquetFile.iter_batches`` -> one ``session.run`` per
  batch -> id and prediction written to a Parquet file; timed from the session's creation
  to the output's close.
- ``score``: ``banditlake score EXPERIMENT INPUT --output OUT --variant mlp`` with lake
  logging on (every row to the lake with its features, request id and mode "batch",
  registered in the manifest), and again with ``--no-log``; timed by the command's own
  ``seconds`` (from reading the experiment to the output's rename, so it also pays for
  the SQL store, the model store's checksum and the lake commit).

Rows per second are compared as ratios (score / baseline), and the memory high-water mark
(``ru_maxrss`` of each subprocess, from ``os.wait4``) is reported for ``--small``,
``--rows`` and ``--large`` rows, to show it stays flat as the input grows (``--small``
is two chunks of the default batch size, below the steady state of reading, scoring and
writing in flight). Prints one JSON object.

    python benchmarks/batch_score.py [--rows 1000000] [--small 100000] [--large 3000000]
        [--repeats 3]
        [--batch-size 65536] [--threads N] [--hidden 64] [--device cpu]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

D = 16
FEATURES = [f"x{i}" for i in range(D)]


def baseline(args: argparse.Namespace) -> None:
    """The plain loop (run in a subprocess of the benchmark)."""
    import numpy as np
    import onnxruntime as ort
    import pyarrow as pa
    import pyarrow.parquet as pq

    started = time.perf_counter()
    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads
    options.inter_op_num_threads = 1
    providers = ["CPUExecutionProvider"]
    if args.device != "cpu":
        providers.insert(0, "CUDAExecutionProvider")
    session = ort.InferenceSession(args.model, options, providers=providers)
    source = pq.ParquetFile(args.input)
    writer = None
    rows = 0
    for batch in source.iter_batches(batch_size=args.batch_size, columns=["id", *FEATURES]):
        x = np.column_stack([batch.column(c).to_numpy() for c in FEATURES]).astype(np.float32)
        y = session.run(None, {"x": x})[0]
        out = pa.table({"id": batch.column("id"), "prediction": y.reshape(-1).astype(np.float64)})
        if writer is None:
            # As banditlake's output: zstd, no dictionary over unique ids and predictions.
            writer = pq.ParquetWriter(
                args.output, out.schema, compression="zstd", use_dictionary=False
            )
        writer.write_table(out)
        rows += len(y)
    if writer is not None:
        writer.close()
    seconds = time.perf_counter() - started
    print(json.dumps({"rows": rows, "seconds": seconds, "provider": session.get_providers()[0]}))


def _run(command: list[str], env: dict[str, str]) -> tuple[dict[str, Any], float]:
    """Run ``command``; its last stdout line as JSON and its peak RSS in MiB."""
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT
    )
    assert process.stdout is not None and process.stderr is not None
    out = process.stdout.read()
    err = process.stderr.read()
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise SystemExit(f"{command[:3]} failed ({process.returncode}): {err.decode()[-2000:]}")
    # ru_maxrss is in KiB on Linux.
    return json.loads(out.decode().strip().splitlines()[-1]), usage.ru_maxrss / 1024


def setup(work: Path, env: dict[str, str], hidden: int, rows: list[int]) -> Path:
    """The experiment, the model and the inputs (run in a subprocess of the benchmark)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq
    from fastapi.testclient import TestClient

    from api.app import create_app
    from api.settings import Settings
    from api.store.migrate import upgrade
    from tests.onnx_models import mlp_model

    model = work / "mlp.onnx"
    model.write_bytes(mlp_model(D, hidden))
    home = Path(env["BANDITLAKE_HOME"])
    home.mkdir(parents=True)
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        home=home,
        device=env["BANDITLAKE_DEVICE"],  # type: ignore[arg-type]
    )
    upgrade(settings.database_url)
    with TestClient(create_app(settings)) as client:
        client.post("/v1/experiments", json={"name": "bench", "reward": {"kind": "binary"}})
        response = client.post(
            "/v1/experiments/bench/variants",
            data={"name": "mlp", "role": "arm", "features": json.dumps(FEATURES)},
            files={"model": ("mlp.onnx", model.read_bytes(), "application/octet-stream")},
        )
        assert response.status_code == 201, response.text
        client.patch("/v1/experiments/bench", json={"status": "running"})
    rng = np.random.default_rng(0)
    for n in rows:
        x = rng.normal(size=(n, D))
        table = pa.table(
            {"id": np.arange(n, dtype=np.int64), **dict(zip(FEATURES, x.T, strict=True))}
        )
        pq.write_table(table, work / f"in-{n}.parquet", row_group_size=65_536)
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--small", type=int, default=100_000)
    parser.add_argument(
        "--large", type=int, default=3_000_000, help="rows of the last memory run (0: none)"
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=65_536)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--hidden", type=int, default=64, help="width of the MLP's layers")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda", "auto"])
    parser.add_argument("--baseline", nargs=3, metavar=("MODEL", "INPUT", "OUTPUT"))
    parser.add_argument("--setup", metavar="WORK")
    args = parser.parse_args()
    if args.baseline:
        args.model, args.input, args.output = args.baseline
        baseline(args)
        return
    if args.setup:
        sizes = [n for n in (args.small, args.rows, args.large) if n]
        setup(Path(args.setup), dict(os.environ), args.hidden, sizes)
        return

    work = Path(tempfile.mkdtemp(prefix="banditlake-batch-bench-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("BANDITLAKE_")}
    env |= {
        "BANDITLAKE_HOME": str(work / "home"),
        "BANDITLAKE_DEVICE": args.device,
        "PYTHONPATH": str(ROOT),
    }
    # Set up in a subprocess: a child forked from a parent holding pyarrow and the app
    # would inherit that parent's resident size in its ru_maxrss.
    subprocess.run(
        [sys.executable, __file__, "--setup", str(work), "--hidden", str(args.hidden),
         "--rows", str(args.rows), "--small", str(args.small), "--large", str(args.large)],
        env=env, check=True, capture_output=True, cwd=ROOT,
    )  # fmt: skip
    model = work / "mlp.onnx"
    banditlake = str(Path(sys.executable).with_name("banditlake"))
    common = ["--batch-size", str(args.batch_size), "--threads", str(args.threads)]

    def run(kind: str, rows: int) -> tuple[dict[str, Any], float]:
        source = str(work / f"in-{rows}.parquet")
        if kind == "baseline":
            return _run(
                [sys.executable, __file__, "--baseline", str(model), source,
                 str(work / "base.parquet"), *common, "--device", args.device],
                env,
            )  # fmt: skip
        extra = ["--no-log"] if kind == "no_log" else []
        return _run(
            [banditlake, "score", "bench", source, "--output", str(work / f"{kind}.parquet"),
             "--variant", "mlp", "--json", *common, *extra],
            env,
        )  # fmt: skip

    kinds = ["baseline", "logged", "no_log"]
    seconds: dict[str, list[float]] = {k: [] for k in kinds}
    rss: dict[str, list[float]] = {k: [] for k in kinds}
    provider = ""
    logged_rows = 0
    run("logged", args.small)  # warm-up: file caches, the model store's checksum cache
    for i in range(args.repeats):
        # Rotate the order so drift on a shared machine hits every side alike.
        for kind in kinds[i % 3 :] + kinds[: i % 3]:
            result, peak = run(kind, args.rows)
            assert result["rows"] == args.rows, result
            seconds[kind].append(float(result["seconds"]))
            rss[kind].append(peak)
            if kind == "logged":
                logged_rows += int(result["logged"])
                provider = result["variants"]["mlp"]["provider"]
    small_rss = [run("logged", args.small)[1] for _ in range(2)]
    large_rss = run("logged", args.large)[1] if args.large else None

    # Only now may this process import the lake: every measured child has run.
    from api.settings import Settings
    from lake import open_lake

    settings = Settings(_env_file=None, home=work / "home")  # type: ignore[call-arg]
    with open_lake(settings.database_url, settings.lake_uri) as lake:
        in_lake = (
            lake.duckdb()
            .execute("SELECT count(*) FROM predictions WHERE mode = 'batch'")
            .fetchone()
        )
    rate = {k: args.rows / statistics.median(v) for k, v in seconds.items()}
    summary = {
        "rows": args.rows,
        "batch_size": args.batch_size,
        "threads": args.threads,
        "model": f"MLP {D}-{args.hidden}-{args.hidden}-1",
        "provider": provider,
        "repeats": args.repeats,
        "rows_per_s": {k: round(v) for k, v in rate.items()},
        "ratio_logged": round(rate["logged"] / rate["baseline"], 3),
        "ratio_no_log": round(rate["no_log"] / rate["baseline"], 3),
        "target_ratio_logged": 0.8,
        "max_rss_mib": {
            f"score_{args.small}": round(max(small_rss), 1),
            f"score_{args.rows}": round(max(rss["logged"]), 1),
            f"score_no_log_{args.rows}": round(max(rss["no_log"]), 1),
            f"baseline_{args.rows}": round(max(rss["baseline"]), 1),
            **({f"score_{args.large}": round(large_rss, 1)} if large_rss else {}),
        },
        "rss_growth": round(max(rss["logged"]) / max(small_rss), 3),
        **({"rss_growth_large": round(large_rss / max(rss["logged"]), 3)} if large_rss else {}),
        "lake_rows_checked": in_lake is not None and in_lake[0] >= logged_rows,
        "cpu_count": os.cpu_count(),
        "load_average_1m": round(os.getloadavg()[0], 2),
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
