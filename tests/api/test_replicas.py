"""The production shape, end to end: two replicas sharing only PostgreSQL and one bucket.

Two ``banditlake serve`` processes, each with its own ``BANDITLAKE_HOME`` (no shared
disk), one PostgreSQL database and one S3 bucket (moto's server, over HTTP) for the lake
and the model files. Traffic and feedback go through both; the lease holder is killed
with SIGKILL; the other replica takes the lease over. Afterwards every acknowledged
request is in the lake exactly once, the report counts what was sent, and compaction
publishes Delta tables that deltalake, polars and Spark read with the same counts.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import polars as pl
import pytest
from deltalake import DeltaTable
from pyspark.sql import SparkSession
from sqlalchemy import create_engine, text

from lake.reader import open_lake
from lake.storage import open_storage
from tests.onnx_models import linear_model
from tests.s3_server import S3Server, s3_server  # noqa: F401

CLI = str(Path(sys.executable).with_name("banditlake"))
LEASE_TTL_S = 3

pytestmark = [pytest.mark.slow, pytest.mark.postgres]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Replica:
    name: str
    port: int
    proc: subprocess.Popen[bytes]
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30)

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def _environment(base: dict[str, str], home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BANDITLAKE_", "PROMETHEUS_"))}
    return env | base | {"BANDITLAKE_HOME": str(home)}


def _start(name: str, tmp_path: Path, base: dict[str, str]) -> Replica:
    home = tmp_path / name
    home.mkdir()
    port = _free_port()
    log = tmp_path / f"{name}.log"
    with log.open("wb") as sink:
        # Its own session, so that killing it kills its reallocation process too.
        proc = subprocess.Popen(
            [CLI, "serve", "--port", str(port)],
            env=_environment(base, home),
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    replica = Replica(name, port, proc, log)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        assert proc.poll() is None, replica.output()
        try:
            if httpx.get(f"{replica.url}/readyz", timeout=1).status_code == 200:
                return replica
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"replica {name} did not become ready:\n{replica.output()}")


def _stop(replica: Replica, sig: signal.Signals = signal.SIGTERM) -> None:
    if replica.proc.poll() is None:
        os.killpg(replica.proc.pid, sig)
        replica.proc.wait(timeout=60)


def _lease_holder(database_url: str) -> str | None:
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            row = conn.execute(text("SELECT holder FROM leases WHERE expires_at > now()")).first()
    finally:
        engine.dispose()
    return None if row is None else str(row[0])


def _wait(condition, what: str, timeout: float = 60.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _metric(replica: Replica, name: str, label: str) -> float:
    body = httpx.get(f"{replica.url}/metrics", timeout=5).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in body.splitlines()
        if line.startswith(name + "{") and label in line
    )


@pytest.fixture
def shared(pg_url: str, s3_server: S3Server) -> Iterator[dict[str, str]]:  # noqa: F811
    bucket = s3_server.create_bucket()
    base = {
        **s3_server.environment(),
        "BANDITLAKE_DATABASE_URL": pg_url,
        "BANDITLAKE_LAKE_URI": f"s3://{bucket}/lake",
        "BANDITLAKE_MODELS_URI": f"s3://{bucket}/models",
        "BANDITLAKE_DEVICE": "cpu",
        "BANDITLAKE_LEASE_TTL_S": str(LEASE_TTL_S),
        "BANDITLAKE_LAKE_FLUSH_INTERVAL_MS": "100",
        "BANDITLAKE_ALLOCATION_REFRESH_MS": "200",
    }
    migrate = subprocess.run(
        [CLI, "migrate"],
        env=_environment(base, Path("/nonexistent")),
        capture_output=True,
        text=True,
    )
    assert migrate.returncode == 0, migrate.stderr
    yield base


def _predict(http: httpx.Client, n: int, offset: int) -> list[str]:
    ids = []
    for i in range(n):
        r = http.post("/v1/experiments/e/predict", json={"features": [i + offset, 1.0, 2.0]})
        assert r.status_code == 200, r.text
        ids.append(r.json()["request_id"])
    return ids


def _feedback(http: httpx.Client, ids: list[str]) -> None:
    for start in range(0, len(ids), 50):
        items = [{"request_id": rid, "reward": 1.0} for rid in ids[start : start + 50]]
        r = http.post("/v1/feedback/batch", json={"items": items})
        assert r.status_code in (200, 202), r.text


def test_two_replicas_share_postgresql_and_one_bucket(
    tmp_path: Path, shared: dict[str, str], pg_url: str, spark: SparkSession
) -> None:
    a = _start("a", tmp_path, shared)
    b: Replica | None = None
    try:
        with a.client() as http:
            r = http.post("/v1/experiments", json={"name": "e", "reward": {"kind": "binary"}})
            assert r.status_code == 201, r.text
            for name, weights in (("a", [1.0, 2.0, 3.0]), ("b", [-1.0, 0.5, 2.0])):
                r = http.post(
                    "/v1/experiments/e/variants",
                    data={"name": name},
                    files={"model": (f"{name}.onnx", linear_model(weights, 0.0))},
                )
                assert r.status_code == 201, r.text
            r = http.patch("/v1/experiments/e", json={"status": "running"})
            assert r.status_code == 200, r.text
        # The first replica takes the reallocation lease before the second starts.
        _wait(lambda: _lease_holder(pg_url) is not None, "the first lease holder")
        first_holder = _lease_holder(pg_url)
        # The second replica has its own home: it fetches the models from the bucket.
        b = _start("b", tmp_path, shared)
        with a.client() as ha, b.client() as hb:
            sent_a = _predict(ha, 150, 0)
            sent_b = _predict(hb, 150, 1000)
            _feedback(hb, sent_a[:100])
            _feedback(ha, sent_b[:100])
            # An allocation set through one replica is served by the other within a second.
            r = hb.put("/v1/experiments/e/allocation", json={"weights": {"a": 0.0, "b": 1.0}})
            assert r.status_code == 200, r.text
            version = r.json()["version"]
            time.sleep(1.0)
            r = ha.post("/v1/experiments/e/predict", json={"features": [1.0, 1.0, 1.0]})
            assert r.status_code == 200, r.text
            assert r.json()["allocation_version"] == version
            assert r.json()["variant"] == "b"
            sent_a.append(r.json()["request_id"])
        # Everything A acknowledged is flushed before it dies: in the default buffered
        # mode a crash loses what is still in a replica's buffer (at most a flush interval).
        _wait(
            lambda: (
                _metric(a, "banditlake_lake_rows_written_total", 'table="predictions"')
                >= len(sent_a)
            ),
            "replica a to flush its predictions",
        )
        _wait(
            lambda: _metric(a, "banditlake_lake_rows_written_total", 'table="feedback"') >= 100,
            "replica a to flush its feedback",
        )
        _stop(a, signal.SIGKILL)
        killed_at = time.monotonic()
        # The survivor's reallocator takes the lease once the dead holder's expires.
        _wait(
            lambda: (h := _lease_holder(pg_url)) is not None and h != first_holder,
            "the lease to change hands",
            timeout=LEASE_TTL_S + 30,
        )
        takeover_s = time.monotonic() - killed_at
        with b.client() as hb:
            more = _predict(hb, 50, 5000)
            _feedback(hb, sent_a[100:150] + more)
            _wait(
                lambda: (
                    _metric(b, "banditlake_lake_rows_written_total", 'table="predictions"')
                    >= len(sent_b) + len(more)
                ),
                "replica b to flush",
            )
            _wait(
                lambda: (
                    _metric(b, "banditlake_lake_rows_written_total", 'table="feedback"')
                    >= 100 + 50 + len(more)
                ),
                "replica b to flush its feedback",
            )
            sent = sent_a + sent_b + more
            lake_uri = shared["BANDITLAKE_LAKE_URI"]
            with open_lake(pg_url, open_storage(lake_uri, shared)) as lake:
                rows = lake.duckdb().execute("SELECT request_id FROM predictions").fetchall()
            ids = [row[0] for row in rows]
            assert len(ids) == len(set(ids)) == len(sent)
            assert set(ids) == set(sent)
            r = hb.post("/v1/experiments/e/reallocate")
            assert r.status_code == 200, r.text
            report = hb.get("/v1/experiments/e/report").json()
            arms = [v for v in report["variants"] if v["role"] == "arm"]
            assert sum(v["requests"] for v in arms) == len(sent)
            # Feedback through either replica, for requests either served: each counted once.
            rewarded = len(set(sent_a[:150]) | set(sent_b[:100]) | set(more))
            assert sum(v["rewarded"] for v in arms) == rewarded
        print(f"lease takeover after SIGKILL: {takeover_s:.1f} s (TTL {LEASE_TTL_S} s)")

        # Publication: compaction of everything committed, read by three engines.
        env = _environment(shared, tmp_path / "compactor")
        result = subprocess.run(
            [CLI, "compact", "--min-age", "0", "--json"], env=env, capture_output=True, text=True
        )
        assert result.returncode == 0, result.stderr
        summary = json.loads(result.stdout.strip().splitlines()[-1])
        assert summary
        storage = open_storage(lake_uri, shared)
        options = storage.polars_options()  # type: ignore[attr-defined]
        delta_uri = storage.url("delta/predictions")
        table = DeltaTable(delta_uri, storage_options=options).to_pyarrow_table()
        assert table.num_rows == len(sent)
        assert set(table.column("request_id").to_pylist()) == set(sent)
        frame = pl.scan_delta(delta_uri, storage_options=options).select(pl.len()).collect()
        assert frame.item() == len(sent)
        # Spark here has no S3 or Delta connector (they come from Maven): it reads the
        # Parquet files the Delta log lists, copied out of the bucket.
        local = tmp_path / "published"
        local.mkdir()
        files = DeltaTable(delta_uri, storage_options=options).file_uris()
        prefix = storage.url("") + "/"
        for i, uri in enumerate(files):
            (local / f"{i}.parquet").write_bytes(storage.read_bytes(uri.removeprefix(prefix)))
        spark_rows = spark.read.parquet(str(local)).count()
        assert spark_rows == len(sent)
        with open_lake(pg_url, storage) as lake:
            after = lake.duckdb().execute("SELECT count(*) FROM predictions").fetchone()
        assert after is not None and after[0] == len(sent)
    finally:
        for replica in (a, b):
            if replica is not None:
                _stop(replica)
