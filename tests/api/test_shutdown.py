"""SIGTERM on ``banditlake serve``: readiness off first, requests finish, a bounded exit.

A real process and real signals: the server answers ``/readyz`` with 503 while it still
listens, finishes the requests in flight, writes their rows and exits 0; with a lake it
cannot write, it still exits within ``BANDITLAKE_SHUTDOWN_TIMEOUT_S`` and says how many
rows it dropped.
"""

from __future__ import annotations

import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from api.health import SHUTTING_DOWN
from lake.reader import open_lake
from tests.api.serve_support import running_experiment, start_serve, unwritable

SLACK_S = 4.0


def _predict(url: str, i: int) -> httpx.Response:
    with httpx.Client(base_url=url, timeout=30) as http:
        return http.post("/v1/experiments/e/predict", json={"features": [i, 1.0, 2.0]})


def _lake_request_ids(home: Path) -> list[str]:
    with open_lake(f"sqlite:///{home / 'banditlake.db'}", home / "lake") as lake:
        rows = lake.duckdb().execute("select request_id from predictions").fetchall()
    return [row[0] for row in rows]


def test_sigterm_turns_readiness_off_first_and_finishes_what_is_in_flight(
    tmp_path: Path,
) -> None:
    home = tmp_path / "home"
    env = {
        "BANDITLAKE_LAKE_URI": str(home / "lake"),
        # Each batch waits this long for company: requests stay in flight for a while.
        "BANDITLAKE_MAX_QUEUE_DELAY_US": "1500000",
        "BANDITLAKE_SHUTDOWN_TIMEOUT_S": "10",
    }
    served = start_serve(home, env, args=["--drain-delay", "1"])
    try:
        running_experiment(served.url)
        before = _predict(served.url, 0)
        assert before.status_code == 200, before.text
        with ThreadPoolExecutor(4) as pool:
            in_flight = [pool.submit(_predict, served.url, i) for i in range(1, 5)]
            time.sleep(0.3)
            assert not any(f.done() for f in in_flight)
            signalled = time.monotonic()
            served.proc.send_signal(signal.SIGTERM)
            # The listener is still open (this request is answered), and says not ready.
            ready = httpx.get(f"{served.url}/readyz", timeout=5)
            assert ready.status_code == 503, ready.text
            assert ready.json()["ready"] is False
            assert ready.json()["reason"] == SHUTTING_DOWN
            responses = [f.result() for f in in_flight]
        assert [r.status_code for r in responses] == [200] * 4, [r.text for r in responses]
        code = served.proc.wait(timeout=10 + SLACK_S)
        elapsed = time.monotonic() - signalled
    finally:
        served.stop()
    log = served.output()
    assert code == 0, log
    assert elapsed < 10 + SLACK_S
    assert "shutting down: /readyz answers 503" in log
    acknowledged = [r.json()["request_id"] for r in [before, *responses]]
    assert sorted(_lake_request_ids(home)) == sorted(acknowledged)


def test_sigterm_with_an_unwritable_lake_exits_in_time_and_counts_the_drops(
    tmp_path: Path,
) -> None:
    home = tmp_path / "home"
    lake = home / "lake"
    env = {
        "BANDITLAKE_LAKE_URI": str(lake),
        "BANDITLAKE_SHUTDOWN_TIMEOUT_S": "3",
        "BANDITLAKE_LAKE_FLUSH_INTERVAL_MS": "100",
    }
    served = start_serve(home, env)
    try:
        running_experiment(served.url)
        with unwritable(lake):
            for i in range(25):
                assert _predict(served.url, i).status_code == 200
            signalled = time.monotonic()
            served.proc.send_signal(signal.SIGTERM)
            code = served.proc.wait(timeout=3 + SLACK_S)
            elapsed = time.monotonic() - signalled
    finally:
        served.stop()
    log = served.output()
    assert code == 0, log
    assert elapsed < 3 + SLACK_S, log
    assert "closed with 25 predictions rows unwritten" in log, log
    assert "25 predictions" in log.split("lake writers closed")[-1], log
    assert _lake_request_ids(home) == []
