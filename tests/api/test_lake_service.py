"""The service's lake under stress: several processes at once, and a sink that fails."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from api.store.migrate import upgrade
from tests.api.serving_support import flush, lake_rows, running_experiment
from tests.conftest import make_client, make_settings


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _serve(home: Path, port: int, workers: int) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BANDITLAKE_", "PROMETHEUS_"))}
    env |= {"BANDITLAKE_HOME": str(home), "BANDITLAKE_DEVICE": "cpu"}
    cli = Path(sys.executable).with_name("banditlake")
    return subprocess.Popen(
        [str(cli), "serve", "--port", str(port), "--workers", str(workers)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def _wait_ready(port: int, proc: subprocess.Popen[bytes]) -> None:
    # Generous: several server processes start at once here, on a machine the other test
    # worker keeps busy (60 s was not always enough on 2 cores).
    deadline = time.monotonic() + 150
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"server on port {port} did not become ready")


def _metric_total(port: int, name: str) -> float:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(name + "{") and 'role="arm"' in line
    )


@pytest.mark.slow
def test_processes_writing_one_lake_are_read_back_exactly(tmp_path: Path) -> None:
    home = tmp_path / "home"
    settings = make_settings(home, f"sqlite:///{home / 'banditlake.db'}")
    home.mkdir()
    upgrade(settings.database_url)
    with make_client(settings) as client:
        running_experiment(client)
    ports = [_free_port(), _free_port()]
    procs = [_serve(home, ports[0], workers=2), _serve(home, ports[1], workers=1)]
    try:
        for port, proc in zip(ports, procs, strict=True):
            _wait_ready(port, proc)

        def hit(port: int) -> list[str]:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
                ids = []
                for i in range(100):
                    r = http.post("/v1/experiments/e/predict", json={"features": [i, 1, 2]})
                    assert r.status_code == 200, r.text
                    ids.append(r.json()["request_id"])
                return ids

        with ThreadPoolExecutor(8) as pool:
            batches = list(pool.map(hit, [ports[0], ports[1]] * 4))
        sent = {rid for batch in batches for rid in batch}
        assert len(sent) == 800
        # Several uvicorn workers behind one port: /metrics sums over the worker processes.
        assert _metric_total(ports[0], "banditlake_requests_total") == 400
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            proc.wait(timeout=60)
    for proc in procs:
        log = proc.stderr.read().decode() if proc.stderr else ""
        # uvicorn re-raises SIGTERM after a graceful shutdown, so the code is 0 or -15.
        assert proc.returncode in (0, -signal.SIGTERM), log
        assert "Application shutdown complete" in log
    rows = lake_rows(settings, "select request_id, writer_id from predictions")
    assert len(rows) == 800
    assert {r[0] for r in rows} == sent
    assert len({r[1] for r in rows}) >= 2


def _metric(client: TestClient, name: str) -> float:
    for line in client.get("/metrics").text.splitlines():
        if line.startswith(name + '{table="predictions"}'):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_a_failing_lake_never_fails_requests_and_drops_are_exact(
    tmp_path: Path, sqlite_url: str
) -> None:
    upgrade(sqlite_url)
    settings = make_settings(
        tmp_path / "home",
        sqlite_url,
        lake_buffer_rows=40,
        lake_flush_rows=10,
        lake_flush_interval_ms=50,
    )
    table_dir = settings.lake_root / "predictions"
    with make_client(settings) as client:
        running_experiment(client)
        for _ in range(20):
            assert (
                client.post("/v1/experiments/e/predict", json={"features": [1, 2, 3]}).status_code
                == 200
            )
        flush(client)
        # Break the sink: the table directory becomes a link to a path under a plain file
        # (chmod would not stop root). Swapping links is atomic, so the writer never
        # sees a half-repaired state.
        parked = tmp_path / "parked"
        shutil.move(table_dir, parked)
        (tmp_path / "plain-file").write_text("not a directory")
        table_dir.symlink_to(tmp_path / "plain-file" / "predictions")
        for _ in range(200):
            response = client.post("/v1/experiments/e/predict", json={"features": [1, 2, 3]})
            assert response.status_code == 200
        writer = client.app.state.serving.predictions  # type: ignore[attr-defined]
        stats = writer.stats()
        assert stats.rows_pending == 40
        assert stats.rows_dropped == 160
        assert _metric(client, "banditlake_lake_rows_dropped_total") == 160
        # Predict still serves: the replica stays ready and reports the lake as degraded.
        ready = client.get("/readyz")
        assert ready.status_code == 200
        assert ready.json()["degraded"] == ["lake"]
        # Repair the sink: the writer recovers by itself.
        (tmp_path / "repair").symlink_to(parked)
        os.replace(tmp_path / "repair", table_dir)
        deadline = time.monotonic() + 30
        while writer.stats().rows_pending and time.monotonic() < deadline:
            time.sleep(0.05)
        assert writer.stats().rows_pending == 0
        for _ in range(30):
            assert (
                client.post("/v1/experiments/e/predict", json={"features": [1, 2, 3]}).status_code
                == 200
            )
        flush(client)
        assert _metric(client, "banditlake_lake_rows_written_total") == 90
        assert _metric(client, "banditlake_lake_rows_dropped_total") == 160
    assert lake_rows(settings, "select count(*) from predictions") == [(90,)]
    assert not list(settings.lake_root.rglob(".tmp-*"))
