"""Durable mode against buffered mode, side by side in one run, and replay after a crash.

(1) Serving: two ``banditlake serve`` processes on the same model, one with
    ``BANDITLAKE_LAKE_DURABLE=true`` (each response waits for its row's fsync in the local
    log, group commit) and one buffered (the default), both pinned to one core, loaded in
    turn by wrk on the other core (httpx when wrk is missing), alternating windows;
    medians of throughput and p99 and their ratios (targets: >= 0.8x, <= 1.5x), and
    every acknowledged request counted in each lake after shutdown.
(2) Replay: ``--replay-rows`` (1M) prediction rows left in a durable log by a "crashed"
    process; the time a new process takes to read and check them against the lake
    (``DurableLog.replay``) and then to write them to the lake (one flush).

    python benchmarks/durability.py [--concurrency 32] [--windows 6] [--seconds 5]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from serving import (  # noqa: E402
    BODY,
    WRK_SCRIPT,
    D,
    Window,
    _free_port,
    _metric,
    _pin,
    _wait,
    load,
    setup_experiment,
)

from tests.onnx_models import mlp_model  # noqa: E402

MODES = ("buffered", "durable")


def _serve(env: dict[str, str], port: int) -> subprocess.Popen[bytes]:
    cli = Path(sys.executable).with_name("banditlake")
    subprocess.run([str(cli), "migrate"], env=env, check=True, capture_output=True)
    return subprocess.Popen(
        [*_pin(0), str(cli), "serve", "--port", str(port)], env=env, stderr=subprocess.PIPE
    )


def _lake_count(home: Path) -> int:
    from lake import locate_lake, open_lake

    where = locate_lake({"BANDITLAKE_HOME": str(home)})
    with open_lake(where.database_url, where.lake_root) as lake:
        return int(lake.duckdb().execute("select count(*) from predictions").fetchone()[0])


def serving(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    model = mlp_model(D)
    base = {k: v for k, v in os.environ.items() if not k.startswith("BANDITLAKE_")}
    base |= {"BANDITLAKE_DEVICE": "cpu", "BANDITLAKE_REALLOCATE": "false"}
    homes = {mode: work / mode for mode in MODES}
    envs = {
        mode: base
        | {
            "BANDITLAKE_HOME": str(homes[mode]),
            "BANDITLAKE_LAKE_DURABLE": "true" if mode == "durable" else "false",
        }
        for mode in MODES
    }
    ports = {mode: _free_port() for mode in MODES}
    procs = {mode: _serve(envs[mode], ports[mode]) for mode in MODES}
    results: dict[str, list[Window]] = {mode: [] for mode in MODES}
    served: dict[str, float] = {}
    try:
        for mode in MODES:
            url = f"http://127.0.0.1:{ports[mode]}"
            _wait(f"{url}/healthz", procs[mode])
            setup_experiment(url, model)
        script = None
        if shutil.which("wrk"):
            script = work / "post.lua"
            script.write_text(WRK_SCRIPT % BODY)
        urls = {m: f"http://127.0.0.1:{p}/v1/experiments/bench/predict" for m, p in ports.items()}
        for url in urls.values():
            load(url, args.concurrency, 3.0, script)
        for i in range(args.windows):
            order = MODES if i % 2 == 0 else MODES[::-1]
            for mode in order:
                window = load(urls[mode], args.concurrency, args.seconds, script)
                results[mode].append(window)
                print(
                    f"  window {i + 1} {mode}: {window.rps:,.0f} req/s, "
                    f"p99 {window.p99 * 1e3:.1f} ms, errors {window.errors}"
                )
        for mode in MODES:
            served[mode] = _metric(ports[mode], "banditlake_requests_total")
    finally:
        for proc in procs.values():
            proc.send_signal(signal.SIGTERM)
        for proc in procs.values():
            proc.wait(timeout=120)

    def med(mode: str, attr: str) -> float:
        return statistics.median(getattr(w, attr) for w in results[mode])

    rps_ratios = [
        d.rps / b.rps for d, b in zip(results["durable"], results["buffered"], strict=True)
    ]
    p99_ratios = [
        d.p99 / b.p99 for d, b in zip(results["durable"], results["buffered"], strict=True)
    ]
    return {
        "generator": "wrk" if script else "httpx",
        "concurrency": args.concurrency,
        "windows": args.windows,
        "seconds": args.seconds,
        **{
            mode: {
                "rps": med(mode, "rps"),
                "p50_ms": med(mode, "p50") * 1e3,
                "p99_ms": med(mode, "p99") * 1e3,
                "served": served[mode],
                "in_lake": _lake_count(homes[mode]),
            }
            for mode in MODES
        },
        "throughput_ratio": statistics.median(rps_ratios),
        "p99_ratio": statistics.median(p99_ratios),
        "errors": sum(w.errors for ws in results.values() for w in ws),
    }


def replay(rows: int, work: Path) -> dict[str, Any]:
    from lake_scale import manifest, prediction_rows

    from lake.durable import DurableLog
    from lake.writer import LakeWriter

    lake = work / "replay-lake"
    engine = manifest(work / "replay.db")
    directory = work / "replay-log"
    data = prediction_rows(rows, np.random.default_rng(3))

    def pair() -> tuple[LakeWriter, DurableLog]:
        writer = LakeWriter(
            lake,
            engine,
            table="predictions",
            flush_rows=rows + 1,
            flush_interval_s=3600.0,
            max_buffer_rows=rows + 1,
        )
        return writer, DurableLog(directory, writer, max_bytes=1 << 40, wait_s=60.0)

    # The crashed process: every row fsynced in its log, none published.
    writer, log = pair()
    t0 = time.perf_counter()
    for row in data:
        log.append(row)
    log.stop()
    logged_s = time.perf_counter() - t0
    log_bytes = log.backlog_bytes
    writer._rows.drop_pending()  # what a SIGKILL loses: the memory buffer
    writer.close(timeout=1)
    log.close()
    del data

    writer, log = pair()
    t0 = time.perf_counter()
    result = log.replay(writer.storage, engine)
    replay_s = time.perf_counter() - t0
    written = writer.flush()
    total_s = time.perf_counter() - t0
    writer.close()
    log.close()
    engine.dispose()
    assert result.rows_replayed == rows == written, (result, written)
    return {
        "rows": rows,
        "log_bytes": log_bytes,
        "log_write_s": logged_s,
        "replay_s": replay_s,
        "replay_and_flush_s": total_s,
        "rows_per_s": rows / total_s,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--windows", type=int, default=6)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--replay-rows", type=int, default=1_000_000)
    parser.add_argument("--skip-serving", action="store_true")
    parser.add_argument("--json", action="store_true", help="print one JSON object at the end")
    args = parser.parse_args()
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="durability-") as tmp:
        work = Path(tmp)
        if not args.skip_serving:
            print(f"(1) serving, durable vs buffered, {args.concurrency} clients")
            s = out["serving"] = serving(args, work)
            print(
                f"(1) buffered {s['buffered']['rps']:,.0f} req/s p99 "
                f"{s['buffered']['p99_ms']:.1f} ms; durable {s['durable']['rps']:,.0f} req/s "
                f"p99 {s['durable']['p99_ms']:.1f} ms; throughput {s['throughput_ratio']:.2f}x "
                f"(target >= 0.8), p99 {s['p99_ratio']:.2f}x (target <= 1.5); in the lake: "
                f"buffered {s['buffered']['in_lake']:,} of {s['buffered']['served']:,.0f}, "
                f"durable {s['durable']['in_lake']:,} of {s['durable']['served']:,.0f}"
            )
        print(f"(2) replay of {args.replay_rows:,} rows left in the durable log")
        r = out["replay"] = replay(args.replay_rows, work)
        print(
            f"(2) {r['log_bytes'] / 1e6:.0f} MB of log; read and checked in "
            f"{r['replay_s']:.1f} s, in the lake after {r['replay_and_flush_s']:.1f} s "
            f"({r['rows_per_s']:,.0f} rows/s)"
        )
    if args.json:
        print(json.dumps(out))


if __name__ == "__main__":
    main()
