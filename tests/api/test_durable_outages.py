"""Durable mode while the lake cannot be written: serve on, keep every row in the log, drain.

The lake breaks for real: a local lake's table directory becomes a path under a plain
file (chmod does not stop root), or the S3 server stops listening.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from moto.server import ThreadedMotoServer
from sqlalchemy import Connection, create_engine, text

from api.settings import Settings
from api.store.migrate import upgrade
from lake import open_lake
from tests.api.serving_support import running_experiment
from tests.api.test_store_outage import _outage
from tests.conftest import make_client, make_settings
from tests.s3_server import S3Server, _free_port


def _metric(client: TestClient, name: str, table: str = "predictions") -> float:
    for line in client.get("/metrics").text.splitlines():
        if line.startswith(f'{name}{{table="{table}"}}'):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def _wait(predicate: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _predict(client: TestClient, n: int) -> list[str]:
    ids = []
    for i in range(n):
        r = client.post("/v1/experiments/e/predict", json={"features": [i, 1, 2]})
        assert r.status_code == 200, r.text
        ids.append(r.json()["request_id"])
    return ids


def _arm_ids(settings: Settings) -> list[str]:
    with open_lake(settings.database_url, settings.lake_uri) as lake:
        rows = lake.duckdb().execute("select request_id from predictions where role = 'arm'")
        return [r[0] for r in rows.fetchall()]


class _Switch:
    """The lake's predictions directory as a link, swapped atomically to break and repair.

    The writer retries all the while and creates directories as it goes, so the lake
    must never pass through a state with no entry at that path (a rename would race it).
    """

    def __init__(self, settings: Settings, tmp_path: Path) -> None:
        self.link = settings.lake_root / "predictions"
        self.real = tmp_path / "real-predictions"
        self.real.mkdir()
        blocker = tmp_path / "not-a-directory"
        blocker.write_text("")
        self.broken = blocker / "predictions"  # a path under a plain file
        self.link.parent.mkdir(parents=True, exist_ok=True)
        self.link.symlink_to(self.real)

    def _point(self, target: Path) -> None:
        swap = self.link.with_name(".swap")
        swap.symlink_to(target)
        os.replace(swap, self.link)

    def break_lake(self) -> None:
        self._point(self.broken)

    def repair_lake(self) -> None:
        self._point(self.real)


def _backlog(client: TestClient) -> float:
    client.app.state.serving.sync_metrics()  # type: ignore[attr-defined]
    return _metric(client, "banditlake_lake_log_bytes")


def _serve_through_outage(
    settings: Settings,
    break_lake: Callable[[], None],
    repair_lake: Callable[[], None],
    *,
    lake_down: bool = True,
) -> None:
    """Rows acknowledged while publishing fails (or hangs) reach the lake once after."""
    with make_client(settings) as client:
        running_experiment(client)
        before = _predict(client, 10)
        _wait(lambda: len(_arm_ids(settings)) == 10, "the first rows in the lake")
        break_lake()
        during = _predict(client, 30)  # every one acknowledged: fsynced in the log
        _wait(lambda: _backlog(client) > 0, "rows held in the log")
        if lake_down:
            _wait(
                lambda: client.get("/readyz").json()["checks"]["lake"] == "failing",
                "readiness to report the lake",
            )
        assert client.get("/readyz").status_code == 200  # degraded, still serving
        repair_lake()
        _wait(lambda: len(_arm_ids(settings)) == 40, "the backlog to drain")
        ids = _arm_ids(settings)
        assert sorted(ids) == sorted(before + during)  # each once, none lost
        _wait(lambda: _backlog(client) == 0, "the log's segments to be deleted")
        assert _metric(client, "banditlake_lake_rows_dropped_total") == 0


def test_a_broken_local_lake_spills_to_the_log_and_drains_when_it_returns(
    tmp_path: Path, sqlite_url: str
) -> None:
    upgrade(sqlite_url)
    settings = make_settings(
        tmp_path / "home", sqlite_url, lake_durable=True, lake_flush_interval_ms=50
    )
    switch = _Switch(settings, tmp_path)
    _serve_through_outage(settings, switch.break_lake, switch.repair_lake)


def test_an_unreachable_s3_server_spills_to_the_log_and_drains_when_it_returns(
    tmp_path: Path, sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A server of its own, stopped and started again on the same port (moto keeps its
    # buckets in this process, so they outlive the restart, as a real store's would).
    port = _free_port()
    servers = [ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)]
    servers[0].start()
    s3 = S3Server(f"http://127.0.0.1:{port}")
    for name, value in s3.environment().items():
        monkeypatch.setenv(name, value)
    upgrade(sqlite_url)
    settings = make_settings(
        tmp_path / "home",
        sqlite_url,
        lake_uri=f"s3://{s3.create_bucket()}/lake",
        lake_durable=True,
        lake_flush_interval_ms=50,
    )

    def break_lake() -> None:
        servers.pop().stop()

    def repair_lake() -> None:
        servers.append(ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False))
        servers[0].start()

    try:
        _serve_through_outage(settings, break_lake, repair_lake)
    finally:
        for server in servers:
            server.stop()


@pytest.mark.parametrize(
    ("bound", "message"),
    [
        ({"lake_durable_max_bytes": 2000}, "over its bound of 2,000"),
        # The writer's memory is the tighter bound: shed before it refuses a logged row.
        ({"lake_buffer_rows": 30, "lake_flush_rows": 10}, "near its bound of 30"),
    ],
)
def test_a_replica_whose_log_is_over_its_bound_sheds_load_with_retry_after(
    tmp_path: Path, sqlite_url: str, bound: dict[str, int], message: str
) -> None:
    upgrade(sqlite_url)
    settings = make_settings(
        tmp_path / "home", sqlite_url, lake_durable=True, lake_flush_interval_ms=50, **bound
    )
    switch = _Switch(settings, tmp_path)
    with make_client(settings) as client:
        running_experiment(client)
        first_id = _predict(client, 1)
        _wait(lambda: len(_arm_ids(settings)) == 1, "the first row in the lake")
        switch.break_lake()
        answers = [
            client.post("/v1/experiments/e/predict", json={"features": [i, 1, 2]})
            for i in range(40)
        ]
        shed = [r for r in answers if r.status_code == 503]
        served = [r for r in answers if r.status_code == 200]
        assert shed and served and len(shed) + len(served) == 40
        assert {r.json()["error"]["code"] for r in shed} == {"lake_log_full"}
        assert {r.headers["retry-after"] for r in shed} == {"1"}
        assert message in shed[0].json()["error"]["message"]
        # Once refused, always refused until the lake takes the backlog: nothing served
        # after the first 503.
        first = answers.index(shed[0])
        assert all(r.status_code == 503 for r in answers[first:])
        # The lake returns: every served row reaches it once, the log empties, and the
        # replica serves again.
        switch.repair_lake()
        _wait(lambda: len(_arm_ids(settings)) == 1 + len(served), "the backlog to drain")
        assert sorted(_arm_ids(settings)) == sorted(
            [r.json()["request_id"] for r in served] + first_id
        )
        _wait(lambda: _backlog(client) == 0, "the log's segments to be deleted")
        assert (
            client.post("/v1/experiments/e/predict", json={"features": [1, 1, 2]}).status_code
            == 200
        )


@pytest.mark.postgres
def test_a_postgresql_outage_keeps_rows_in_the_log_until_the_manifest_returns(
    tmp_path: Path, pg_server: str, pg_url: str
) -> None:
    upgrade(pg_url)
    settings = make_settings(
        tmp_path / "home", pg_url, lake_durable=True, lake_flush_interval_ms=50, reallocate=False
    )
    outage = contextlib.ExitStack()

    def break_store() -> None:
        outage.enter_context(_outage(pg_server, pg_url))

    _serve_through_outage(settings, break_store, outage.close)


@pytest.mark.postgres
def test_a_slow_manifest_holds_no_request_back(tmp_path: Path, pg_server: str, pg_url: str) -> None:
    """A transaction holding lake_files locked: registrations wait, requests do not."""
    upgrade(pg_url)
    settings = make_settings(
        tmp_path / "home", pg_url, lake_durable=True, lake_flush_interval_ms=50, reallocate=False
    )
    engine = create_engine(pg_url)
    held: list[Connection] = []

    def lock_manifest() -> None:
        conn = engine.connect()
        conn.execute(text("LOCK TABLE lake_files IN ACCESS EXCLUSIVE MODE"))
        held.append(conn)  # the transaction stays open: the lock stays held

    def unlock_manifest() -> None:
        conn = held.pop()
        conn.rollback()
        conn.close()

    try:
        _serve_through_outage(settings, lock_manifest, unlock_manifest, lake_down=False)
    finally:
        for conn in held:
            conn.close()
        engine.dispose()
