"""Time each dashboard panel on a lake of 10M prediction rows (30 days, 30 % with feedback).

Builds the lake as 1M-row Parquet files listed in the manifest (``LakeBuilder`` from the
reallocation benchmark, here with row groups of 100k rows as the compacted layout has),
lets the service's incremental aggregates catch up once (what a replica does when it
starts; timed separately), records a few allocation versions, then times every panel's
JSON endpoint end to end (HTTP through the ASGI app, a fresh manifest snapshot each
time): once cold (first DuckDB use in the process, drift's reference window not cached
yet), then several times, each after one more small flush of predictions and feedback.
Also times the lake queries alone. Each panel must stay under 200 ms at 10M rows with
the default window (24 h); ``timeseries_7d`` shows what widening costs.

    python benchmarks/dashboard.py [--rows 10000000] [--reps 7] [--row-group-rows 100000]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from api.reallocation.lake_views import reward_rule  # noqa: E402
from benchmarks.reallocation import FILE_ROWS, SPAN, T0, LakeBuilder, bench_experiment  # noqa: E402
from lake.reader import open_lake  # noqa: E402

BUDGET_MS = 200.0


def _median_ms(timings: list[float]) -> float:
    return statistics.median(timings) * 1e3


def measure(rows: int, reps: int, new_rows: int, row_group_rows: int) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="banditlake-dashboard-"))
    try:
        return _measure(work, rows, reps, new_rows, row_group_rows)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _measure(
    work: Path, rows: int, reps: int, new_rows: int, row_group_rows: int
) -> dict[str, Any]:
    with bench_experiment(work) as (settings, client, experiment):
        app = client.app
        factory = app.state.session_factory
        exp_id, rule = experiment.id, reward_rule(experiment)
        builder = LakeBuilder(
            settings.lake_root, app.state.engine, exp_id, row_group_rows=row_group_rows or None
        )
        files = max(1, rows // FILE_ROWS)
        t = time.perf_counter()
        for i in range(files):
            builder.add(rows // files, T0 + SPAN * i / files, T0 + SPAN * (i + 1) / files)
        build_s = time.perf_counter() - t
        t = time.perf_counter()
        with factory() as session:
            app.state.lake_stats.refresh(session)
        catch_up_s = time.perf_counter() - t
        for _ in range(3):
            assert client.post("/v1/experiments/bench/reallocate").status_code == 200

        api = "/dashboard/api/experiments"
        endpoints: dict[str, str] = {
            "experiments": api,
            "report": f"{api}/bench/report",
            "allocations": f"{api}/bench/allocations",
            "timeseries_24h": f"{api}/bench/timeseries",
            "timeseries_7d": f"{api}/bench/timeseries?hours=168&buckets=84",
            "drift_24h": f"{api}/bench/drift",
            "prediction_drift_24h": f"{api}/bench/prediction-drift",
            "quality_24h": f"{api}/bench/quality",
        }
        lookback = timedelta(seconds=settings.feedback_lookback_s)
        # The app's own: the same connection and cache as the endpoints use.
        panel_queries = app.state.dashboard_queries

        def lake_query(run: Callable[[Any], object]) -> Callable[[], object]:
            def call() -> object:
                with open_lake(app.state.engine, settings.lake_root) as lake:
                    return run(lake)

            return call

        queries: dict[str, Callable[[], object]] = {
            "lake.time_buckets_24h": lake_query(
                lambda lake: panel_queries.time_buckets(lake, "bench", rule, lookback=lookback)
            ),
            "lake.time_buckets_7d": lake_query(
                lambda lake: panel_queries.time_buckets(
                    lake, "bench", rule, hours=168, buckets=84, lookback=lookback
                )
            ),
            "lake.feature_drift_24h": lake_query(
                lambda lake: panel_queries.feature_drift(lake, "bench", features=["f0", "f1"])
            ),
            "lake.prediction_drift_24h": lake_query(
                lambda lake: panel_queries.prediction_drift(lake, "bench")
            ),
            "lake.data_quality_24h": lake_query(
                lambda lake: panel_queries.data_quality(lake, "bench", features=["f0", "f1"])
            ),
        }
        cold: dict[str, float] = {}
        for name, path in endpoints.items():
            t = time.perf_counter()
            assert client.get(path).status_code == 200
            cold[name] = time.perf_counter() - t
        http: dict[str, list[float]] = {name: [] for name in endpoints}
        direct: dict[str, list[float]] = {name: [] for name in queries}
        now = T0 + SPAN
        for _ in range(reps):
            builder.add(new_rows, now, now + timedelta(seconds=60))
            now += timedelta(seconds=60)
            for name, path in endpoints.items():
                t = time.perf_counter()
                response = client.get(path)
                http[name].append(time.perf_counter() - t)
                assert response.status_code == 200, response.text
            for name, run in queries.items():
                t = time.perf_counter()
                run()
                direct[name].append(time.perf_counter() - t)
        series = client.get(endpoints["timeseries_24h"]).json()
        requests_24h = sum(sum(v["requests"]) for v in series["variants"])
    return {
        "rows": rows + reps * new_rows,
        "row_group_rows": row_group_rows or FILE_ROWS,
        "build_s": round(build_s, 1),
        "catch_up_s": round(catch_up_s, 1),
        "requests_in_24h_window": requests_24h,
        "http_ms": {k: round(_median_ms(v), 1) for k, v in http.items()},
        "http_max_ms": {k: round(max(v) * 1e3, 1) for k, v in http.items()},
        "http_cold_ms": {k: round(v * 1e3, 1) for k, v in cold.items()},
        "lake_ms": {k: round(_median_ms(v), 1) for k, v in direct.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--new-rows", type=int, default=2000, help="rows per new flush")
    parser.add_argument(
        "--row-group-rows",
        type=int,
        default=100_000,
        help="rows per Parquet row group (0: one group per 1M-row file)",
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = measure(args.rows, args.reps, args.new_rows, args.row_group_rows)
    if args.json:
        print(json.dumps(result))
        return
    print(
        f"{result['rows']:,} prediction rows in row groups of {result['row_group_rows']:,}; "
        f"lake built in {result['build_s']} s, "
        f"first catch-up of the aggregates {result['catch_up_s']} s; "
        f"{result['requests_in_24h_window']:,} requests in the last 24 h"
    )
    print(
        f"per panel: the first call (cold caches), then the median and the worst of "
        f"{args.reps} calls, each after a new flush of {args.new_rows} rows; budget "
        f"{BUDGET_MS:.0f} ms"
    )
    print(f"  {'endpoint':<24} {'cold':>8} {'median':>8} {'worst':>8}")
    for name, ms in result["http_ms"].items():
        flag = "ok" if ms <= BUDGET_MS else "OVER"
        print(
            f"  {name:<24} {result['http_cold_ms'][name]:8.1f} {ms:8.1f} "
            f"{result['http_max_ms'][name]:8.1f}  {flag}"
        )
    print("  the lake queries alone (median):")
    for name, ms in result["lake_ms"].items():
        print(f"  {name:<24} {'':>8} {ms:8.1f}")


if __name__ == "__main__":
    main()
