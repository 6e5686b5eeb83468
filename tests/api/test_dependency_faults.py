"""The dependencies fail for real: a full disk, a stalled object store, a failover.

Each test breaks one dependency of a running app, keeps sending requests, and checks what
was served, what was kept (the durable log) or counted (buffered mode's drops), what
``/readyz`` and ``/metrics`` said, and that the backlog drains once the dependency returns,
without a restart and without duplicates. The other faults (a lake made unwritable, S3
stopped, PostgreSQL refusing connections, a locked manifest, models that fail, emit NaN or
sleep) are in test_durable_outages.py, test_store_outage.py and test_model_timeout.py.
"""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from moto.server import ThreadedMotoServer
from sqlalchemy.engine import make_url

from api.settings import Settings
from api.store.migrate import upgrade
from tests.api.helpers import error_code
from tests.api.serving_support import running_experiment
from tests.api.test_durable_outages import _arm_ids, _metric, _predict, _serve_through_outage, _wait
from tests.conftest import make_client, make_settings
from tests.s3_server import S3Server, _free_port
from tests.tcp_proxy import TcpProxy


class _TinyDisk:
    """A 4 MiB tmpfs mounted as the lake's root: filled to the last byte, or made read-only."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        mounted = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(root)],
            capture_output=True,
            text=True,
            check=False,
        )
        if mounted.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
        self.filler = root / "filler"

    def fill(self) -> None:
        # Until ENOSPC: the disk is full.
        with self.filler.open("ab") as out, contextlib.suppress(OSError):
            while True:
                out.write(b"\0" * 65536)
                out.flush()

    def empty(self) -> None:
        self.filler.unlink()

    def read_only(self) -> None:
        self._remount("ro")

    def writable(self) -> None:
        self._remount("rw")

    def _remount(self, mode: str) -> None:
        subprocess.run(["mount", "-o", f"remount,{mode}", str(self.root)], check=True)

    def unmount(self) -> None:
        subprocess.run(["umount", "-l", str(self.root)], check=False)


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[_TinyDisk]:
    disk = _TinyDisk(tmp_path / "home" / "inference-lake")
    try:
        yield disk
    finally:
        disk.unmount()


@pytest.mark.parametrize("fault", ["full", "read-only"])
def test_a_full_or_read_only_lake_disk_spills_to_the_log_and_drains_when_it_recovers(
    tmp_path: Path, sqlite_url: str, tiny_disk: _TinyDisk, fault: str
) -> None:
    upgrade(sqlite_url)
    settings = make_settings(
        tmp_path / "home", sqlite_url, lake_durable=True, lake_flush_interval_ms=50
    )
    assert settings.lake_root == tiny_disk.root
    if fault == "full":
        _serve_through_outage(settings, tiny_disk.fill, tiny_disk.empty)
    else:
        _serve_through_outage(settings, tiny_disk.read_only, tiny_disk.writable)


def _buffered_through_outage(
    settings: Settings, break_lake: Callable[[], None], repair_lake: Callable[[], None]
) -> None:
    """Buffered mode: rows past the writer's memory are dropped and counted, never lost quietly.

    Every acknowledged row ends in the lake or in ``banditlake_lake_rows_dropped_total``:
    the two add up to what was served.
    """
    with make_client(settings) as client:
        running_experiment(client)
        before = _predict(client, 10)
        _wait(lambda: len(_arm_ids(settings)) == 10, "the first rows in the lake")
        break_lake()
        during = _predict(client, 60)  # all served: buffered mode never refuses a request
        _wait(
            lambda: client.get("/readyz").json()["checks"]["lake"] == "failing",
            "readiness to report the lake",
        )
        _wait(lambda: _dropped(client) > 0, "the drops past the buffer to be counted")
        ready = client.get("/readyz")
        assert ready.status_code == 200 and "lake" in ready.json()["degraded"]
        repair_lake()
        _wait(
            lambda: client.get("/readyz").json()["checks"]["lake"] == "ok",
            "the lake to be writable again",
        )
        client.app.state.serving.predictions.flush()  # type: ignore[attr-defined]
        ids = _arm_ids(settings)
        dropped = _dropped(client)
        assert len(ids) == len(set(ids))  # nothing twice
        assert set(before) <= set(ids) and set(ids) <= set(before + during)
        kept = len(ids) - len(before)
        assert kept >= settings.lake_buffer_rows - settings.lake_flush_rows  # the memory held
        assert kept + dropped == len(during)  # none lost without a count
        after = _predict(client, 5)  # and the writer writes again
        client.app.state.serving.predictions.flush()  # type: ignore[attr-defined]
        assert set(after) <= set(_arm_ids(settings))


def test_a_full_lake_disk_in_buffered_mode_counts_every_row_it_drops(
    tmp_path: Path, sqlite_url: str, tiny_disk: _TinyDisk
) -> None:
    upgrade(sqlite_url)
    settings = make_settings(
        tmp_path / "home",
        sqlite_url,
        lake_flush_interval_ms=50,
        lake_buffer_rows=30,
        lake_flush_rows=10,
    )
    _buffered_through_outage(settings, tiny_disk.fill, tiny_disk.empty)


def _dropped(client: TestClient) -> float:
    client.app.state.serving.sync_metrics()  # type: ignore[attr-defined]
    return _metric(client, "banditlake_lake_rows_dropped_total")


@pytest.fixture
def s3_behind_proxy(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[S3Server, TcpProxy]]:
    """A moto server reached through a proxy that can stall or cut it."""
    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    proxy = TcpProxy(("127.0.0.1", port))
    s3 = S3Server(f"http://{proxy.address}")
    for name, value in s3.environment().items():
        monkeypatch.setenv(name, value)
    try:
        yield s3, proxy
    finally:
        proxy.close()
        server.stop()


def test_a_stalled_s3_holds_no_request_back_and_drains_when_it_answers(
    tmp_path: Path, sqlite_url: str, s3_behind_proxy: tuple[S3Server, TcpProxy]
) -> None:
    """Uploads hang (nothing refused, nothing answered): requests go on being served."""
    s3, proxy = s3_behind_proxy
    upgrade(sqlite_url)
    settings = make_settings(
        tmp_path / "home",
        sqlite_url,
        lake_uri=f"s3://{s3.create_bucket()}/lake",
        lake_durable=True,
        lake_flush_interval_ms=50,
    )
    _serve_through_outage(settings, proxy.stall, proxy.release, lake_down=False)


def test_an_unreachable_s3_in_buffered_mode_counts_every_row_it_drops(
    tmp_path: Path, sqlite_url: str, s3_behind_proxy: tuple[S3Server, TcpProxy]
) -> None:
    s3, proxy = s3_behind_proxy
    upgrade(sqlite_url)
    settings = make_settings(
        tmp_path / "home",
        sqlite_url,
        lake_uri=f"s3://{s3.create_bucket()}/lake",
        lake_flush_interval_ms=50,
        lake_buffer_rows=30,
        lake_flush_rows=10,
    )
    _buffered_through_outage(settings, proxy.cut, proxy.restore)


@pytest.mark.postgres
def test_a_postgresql_failover_serves_on_and_drains_the_log_once(
    tmp_path: Path, pg_server: str, pg_url: str
) -> None:
    """Every connection reset at once, new ones refused, then a server answering again.

    This is what a failover looks like from the service (a managed PostgreSQL moving its
    address to the promoted standby): the pool's connections die mid-use, and the store is
    back under the same name a moment later.
    """
    upgrade(pg_url)
    url = make_url(pg_url)
    proxy = TcpProxy((url.host or "127.0.0.1", url.port or 5432))
    through_proxy = url.set(port=proxy.port).render_as_string(hide_password=False)
    settings = make_settings(
        tmp_path / "home",
        through_proxy,
        lake_durable=True,
        lake_flush_interval_ms=50,
        reallocate=False,
    )
    try:
        with make_client(settings) as client:
            running_experiment(client)
            before = _predict(client, 10)
            _wait(lambda: len(_arm_ids_via(pg_url, settings)) == 10, "the first rows")
            proxy.cut()
            during = _predict(client, 30)  # served from memory, kept in the log
            policy = client.get("/v1/experiments")
            assert policy.status_code == 503 and error_code(policy) == "store_unavailable"
            ready = client.get("/readyz")
            assert ready.status_code == 200
            assert ready.json()["checks"]["store"] == "unavailable"
            assert "store" in ready.json()["degraded"]
            proxy.restore()  # the standby, promoted, answers at the same address
            _wait(lambda: client.get("/v1/experiments").status_code == 200, "the store")
            _wait(lambda: len(_arm_ids_via(pg_url, settings)) == 40, "the backlog to drain")
            assert sorted(_arm_ids_via(pg_url, settings)) == sorted(before + during)
            assert _dropped(client) == 0
            assert client.get("/readyz").json()["degraded"] == []
    finally:
        proxy.close()


def _arm_ids_via(database_url: str, settings: Settings) -> list[str]:
    """The lake's arm rows, read with the store's own address (not the proxy's)."""
    direct = settings.model_copy(update={"database_url": database_url})
    return _arm_ids(direct)
