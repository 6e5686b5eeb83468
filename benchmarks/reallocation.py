"""Cost of one reallocation on lakes of 1M and 10M prediction rows (with feedback).

Builds each lake directly as Parquet files listed in the manifest, lets the service's
aggregator catch up once (timed separately: it happens when a replica takes the lease),
then, several times, appends one small flush of new predictions and feedback and times
one reallocation: read the new files, update the sufficient statistics, run Thompson
sampling, write the allocation version. Also times a refresh of the statistics alone
(one more flush folded, nothing else). Prints the medians and the reallocations' ratio.

    python benchmarks/reallocation.py [--sizes 1000000,10000000] [--reps 7]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from api.control import experiments  # noqa: E402
from api.settings import Settings  # noqa: E402
from api.store.migrate import upgrade  # noqa: E402
from api.store.models import Experiment  # noqa: E402
from lake.layout import partition_path  # noqa: E402
from lake.manifest import FileEntry, register_file  # noqa: E402
from lake.schemas import FEEDBACK_SCHEMA, PREDICTIONS_SCHEMA  # noqa: E402
from tests.api.helpers import create_experiment, start, upload  # noqa: E402
from tests.conftest import make_client, make_settings  # noqa: E402

FILE_ROWS = 1_000_000
SPAN = timedelta(days=30)
T0 = datetime(2026, 10, 1, tzinfo=UTC)


class LakeBuilder:
    """Writes prediction and feedback files straight into the lake and its manifest.

    ``row_group_rows`` sets the Parquet row-group size (``None``: one group per file;
    the lake's compacted files use groups of 100k rows, which lets a time filter skip).
    """

    def __init__(
        self, root: Path, engine: object, exp_id: int, *, row_group_rows: int | None = None
    ) -> None:
        self.row_group_rows = row_group_rows
        self.root = root
        self.engine = engine
        self.exp_id = exp_id
        self.seq = 0
        self.next_id = 0
        self.rng = np.random.default_rng(7)

    def _write(self, table: str, data: pa.Table, at: datetime) -> None:
        self.seq += 1
        relative = f"{partition_path(table, at)}/part-bench-{self.seq:08d}.parquet"  # type: ignore[arg-type]
        path = self.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(data, path, compression="zstd", row_group_size=self.row_group_rows)
        ts = data.column("ts")
        register_file(
            self.engine,  # type: ignore[arg-type]
            FileEntry(
                table=table,
                path=relative,
                rows=data.num_rows,
                bytes=path.stat().st_size,
                writer_id="bench",
                min_ts=ts[0].as_py(),
                max_ts=ts[-1].as_py(),
                created_at=datetime.now(UTC),
            ),
        )

    def add(self, n: int, start: datetime, end: datetime) -> None:
        """``n`` predictions between ``start`` and ``end``, 30 % of them with feedback."""
        ids = np.arange(self.next_id, self.next_id + n)
        self.next_id += n
        request_ids = pa.array([f"{self.exp_id}.{i:024x}" for i in ids.tolist()])
        offsets = np.linspace(0, (end - start) / timedelta(microseconds=1), n, dtype=np.int64)
        ts = pa.array(int(start.timestamp() * 1e6) + offsets, pa.timestamp("us", tz="UTC"))
        variant = self.rng.random(n) < 0.5
        features = pa.MapArray.from_arrays(
            pa.array(np.arange(0, 2 * n + 1, 2, dtype=np.int32)),
            pa.array(["f0", "f1"] * n),
            pa.array(self.rng.normal(size=2 * n)),
        )
        predictions = pa.Table.from_arrays(
            [
                request_ids,
                ts,
                pa.array(["bench"] * n),
                pa.array(np.where(variant, "a", "b")),
                pa.array(["arm"] * n),
                pa.array(np.ones(n, dtype=np.int32)),
                pa.array(np.full(n, 0.5)),
                pa.nulls(n, pa.string()),
                features,
                pa.array(self.rng.normal(size=n)),
                pa.nulls(n, pa.list_(pa.float64())),
                pa.array(self.rng.lognormal(0, 0.5, size=n)),
                pa.array(["0" * 64] * n),
                pa.array(["CPUExecutionProvider"] * n),
                pa.array(["ok"] * n),
                pa.nulls(n, pa.string()),
                pa.array(["online"] * n),
                pa.array(["bench"] * n),
            ],
            schema=PREDICTIONS_SCHEMA,
        )
        self._write("predictions", predictions, end)
        with_feedback = self.rng.random(n) < 0.3
        rate = np.where(variant, 0.05, 0.10)[with_feedback]
        rewarded = request_ids.filter(pa.array(with_feedback))
        feedback = pa.Table.from_arrays(
            [
                rewarded,
                pa.array(
                    int(start.timestamp() * 1e6) + offsets[with_feedback] + 60_000_000,
                    pa.timestamp("us", tz="UTC"),
                ),
                pa.array((self.rng.random(int(with_feedback.sum())) < rate).astype(float)),
                pa.nulls(len(rewarded), pa.string()),
                rewarded,
                pa.array(["bench"] * len(rewarded)),
            ],
            schema=FEEDBACK_SCHEMA,
        )
        self._write("feedback", feedback, end)


@contextmanager
def bench_experiment(work: Path) -> Iterator[tuple[Settings, Any, Experiment]]:
    """A test client of an app (reallocation loop off) with a running two-arm Thompson
    experiment ``bench``; yields the settings, the client and the experiment row."""
    url = f"sqlite:///{work / 'store.db'}"
    upgrade(url)
    settings = make_settings(work / "home", url, reallocate=False, feedback_lookback_s=86_400)
    with make_client(settings) as client:
        create_experiment(client, "bench", policy={"kind": "thompson"})
        upload(client, "bench", "a")
        upload(client, "bench", "b")
        start(client, "bench")
        app: Any = client.app
        with app.state.session_factory() as session:
            experiment = experiments.get_experiment(session, "bench")
        yield settings, client, experiment


def measure(rows: int, reps: int, new_rows: int) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="banditlake-realloc-"))
    with bench_experiment(work) as (settings, client, experiment):
        app = client.app
        factory = app.state.session_factory
        builder = LakeBuilder(settings.lake_root, app.state.engine, experiment.id)
        files = max(1, rows // FILE_ROWS)
        t_build = time.perf_counter()
        for i in range(files):
            builder.add(rows // files, T0 + SPAN * i / files, T0 + SPAN * (i + 1) / files)
        build_s = time.perf_counter() - t_build
        reallocator = app.state.reallocator
        t0 = time.perf_counter()
        with factory() as session:
            reallocator.stats.refresh(session)
        catch_up_s = time.perf_counter() - t0
        timings, refreshes = [], []
        now = T0 + SPAN
        for _ in range(reps):
            builder.add(new_rows, now, now + timedelta(seconds=60))
            now += timedelta(seconds=60)
            with factory() as session:
                t = time.perf_counter()
                reallocator.stats.refresh(session)
                refreshes.append(time.perf_counter() - t)
            builder.add(new_rows, now, now + timedelta(seconds=60))
            now += timedelta(seconds=60)
            with factory() as session:
                experiment = experiments.get_experiment(session, "bench")
                t = time.perf_counter()
                reallocator.reallocate(session, experiment, author="bench")
                session.commit()
                timings.append(time.perf_counter() - t)
    return {
        "rows": rows,
        "build_s": build_s,
        "catch_up_s": catch_up_s,
        "reallocation_ms": statistics.median(timings) * 1e3,
        "reallocation_ms_all": [round(t * 1e3, 2) for t in timings],
        "refresh_ms": statistics.median(refreshes) * 1e3,
        "refresh_ms_all": [round(t * 1e3, 2) for t in refreshes],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="1000000,10000000")
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--new-rows", type=int, default=2000, help="rows per new flush")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    results = [measure(n, args.reps, args.new_rows) for n in sizes]
    ratio = results[-1]["reallocation_ms"] / results[0]["reallocation_ms"]
    if args.json:
        print(json.dumps({"results": results, "ratio": ratio}))
        return
    for r in results:
        print(
            f"{r['rows']:>11,} rows: one reallocation {r['reallocation_ms']:.1f} ms "
            f"(median of {args.reps}: {r['reallocation_ms_all']}); "
            f"lake built in {r['build_s']:.1f} s, first catch-up {r['catch_up_s']:.1f} s"
        )
        print(f"{'':>17} one refresh alone {r['refresh_ms']:.1f} ms ({r['refresh_ms_all']})")
    print(f"ratio {results[-1]['rows']:,} / {results[0]['rows']:,} rows: {ratio:.2f}")


if __name__ == "__main__":
    main()
