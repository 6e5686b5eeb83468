"""A rolling restart under load loses nothing: two replicas, restarted one after the other.

Two ``banditlake serve`` processes share one PostgreSQL database, one local lake and one
model directory, each with its own home. A client sends predictions to both in turn and,
like a load balancer, sends a request to the other replica when one refuses the
connection or answers 503. Each replica in turn gets SIGTERM, exits and starts again.
The client sees no failure, and every acknowledged request is in the lake exactly once.
"""

from __future__ import annotations

import signal
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest

from lake.reader import open_lake
from tests.api.serve_support import (
    CLI,
    Served,
    free_port,
    running_experiment,
    serve_environment,
    start_serve,
)

pytestmark = [pytest.mark.slow, pytest.mark.postgres]


class Load:
    """Predictions sent round robin, each retried on the other replica until answered."""

    def __init__(self, ports: list[int]) -> None:
        self.ports = ports
        self.acknowledged: list[str] = []
        self.failed: list[str] = []
        self.retried = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Load:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=60)

    def _send(self, http: httpx.Client, i: int) -> None:
        deadline = time.monotonic() + 20
        attempt = 0
        while time.monotonic() < deadline:
            port = self.ports[(i + attempt) % len(self.ports)]
            attempt += 1
            try:
                r = http.post(
                    f"http://127.0.0.1:{port}/v1/experiments/e/predict",
                    json={"features": [i, 1.0, 2.0]},
                )
            except httpx.TransportError:
                self.retried += 1
                continue
            if r.status_code == 503:
                self.retried += 1
                continue
            if r.status_code != 200:
                self.failed.append(f"{r.status_code}: {r.text}")
                return
            self.acknowledged.append(r.json()["request_id"])
            return
        self.failed.append(f"request {i} found no replica to answer it")

    def _run(self) -> None:
        # No keep-alive: a connection the server closes between requests is not a failure.
        limits = httpx.Limits(max_keepalive_connections=0)
        with httpx.Client(timeout=30, limits=limits) as http:
            i = 0
            while not self._stop.is_set():
                self._send(http, i)
                i += 1
                time.sleep(0.005)


def _restart(served: Served, home: Path, env: dict[str, str]) -> Served:
    served.proc.send_signal(signal.SIGTERM)
    code = served.proc.wait(timeout=30)
    assert code == 0, served.output()
    return start_serve(home, env, port=served.port, args=["--drain-delay", "0.5"])


def test_a_rolling_restart_under_load_fails_no_request_and_loses_no_row(
    tmp_path: Path, pg_url: str
) -> None:
    env = {
        "BANDITLAKE_DATABASE_URL": pg_url,
        "BANDITLAKE_LAKE_URI": str(tmp_path / "lake"),
        "BANDITLAKE_MODELS_URI": str(tmp_path / "models"),
        "BANDITLAKE_LAKE_FLUSH_INTERVAL_MS": "200",
        "BANDITLAKE_ALLOCATION_REFRESH_MS": "200",
        "BANDITLAKE_SHUTDOWN_TIMEOUT_S": "10",
    }
    migrate = subprocess.run(
        [CLI, "migrate"],
        env=serve_environment(tmp_path / "migrate", env),
        capture_output=True,
        text=True,
    )
    assert migrate.returncode == 0, migrate.stderr
    homes = [tmp_path / "a", tmp_path / "b"]
    ports = [free_port(), free_port()]
    a = start_serve(homes[0], env, port=ports[0], args=["--drain-delay", "0.5"])
    running_experiment(a.url)
    b = start_serve(homes[1], env, port=ports[1], args=["--drain-delay", "0.5"])
    replicas = [a, b]
    try:
        with Load(ports) as load:
            time.sleep(1.0)
            for k in range(2):
                before = len(load.acknowledged)
                replicas[k] = _restart(replicas[k], homes[k], env)
                time.sleep(1.0)
                assert len(load.acknowledged) > before
        for replica in replicas:
            replica.proc.send_signal(signal.SIGTERM)
        for replica in replicas:
            assert replica.proc.wait(timeout=30) == 0, replica.output()
    finally:
        for replica in replicas:
            replica.stop()
    assert load.failed == []
    assert len(load.acknowledged) > 50
    assert load.retried > 0  # the restarts were seen, and the retries hid them
    with open_lake(pg_url, tmp_path / "lake") as lake:
        rows = lake.duckdb().execute("select request_id from predictions").fetchall()
    in_lake = [row[0] for row in rows]
    assert len(in_lake) == len(set(in_lake))
    assert set(load.acknowledged) <= set(in_lake)
