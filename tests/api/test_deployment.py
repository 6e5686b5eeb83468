"""docs/deployment.md, followed on one machine: two replicas on one PostgreSQL.

Two ``banditlake serve`` processes on two loopback ports share one PostgreSQL database,
one ``BANDITLAKE_HOME`` (model files) and one lake, as two machines would through a
shared filesystem. The test applies the migrations with ``banditlake migrate`` as the
document says, then checks what the document promises: an experiment created through
one replica is served by the other, a request id issued by one is accepted as feedback
by the other, one reallocation loop holds the lease (and the other takes it over when
the holder stops), and both write the one lake.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TypeVar

import httpx
import pytest
from sqlalchemy import create_engine, text

from api.client import Client, ConflictError, FeedbackAck, NotFoundError, Prediction
from api.settings import Settings
from lake.reader import open_lake
from tests.onnx_models import linear_model
from tests.s3_server import S3Server, s3_server  # noqa: F401

CLI = str(Path(sys.executable).with_name("banditlake"))
ADMIN = "deployment-test-admin-token"
SERVE = "deployment-test-serve-token"
DOC = Path(__file__).resolve().parents[2] / "docs" / "deployment.md"
T = TypeVar("T")


@dataclass
class Replica:
    name: str
    process: subprocess.Popen[bytes]
    base_url: str
    log: Path

    def holder(self) -> str:
        """The name its reallocation loop holds the lease under, once the loop has logged it.

        The loop is a process of its own, spawned at start: on a busy machine it can take
        longer to import than the server takes to become ready.
        """

        def logged() -> str | None:
            found = re.search(r"reallocation loop started as (\S+)", self.log.read_text())
            return found.group(1) if found else None

        return _eventually(logged, timeout_s=90, what=f"{self.name}'s reallocation loop")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _eventually(check: Callable[[], T | None], *, timeout_s: float, what: str) -> T:
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value is not None:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"{what} did not happen within {timeout_s:g} s")
        time.sleep(0.2)


def _ready(replica: Replica) -> bool | None:
    if replica.process.poll() is not None:
        pytest.fail(f"{replica.name} exited at start:\n{replica.log.read_text()[-3000:]}")
    try:
        ok = httpx.get(f"{replica.base_url}/readyz", timeout=2, trust_env=False).status_code == 200
    except httpx.TransportError:
        return None
    return True if ok else None


@pytest.fixture
def environment(pg_url: str, tmp_path: Path) -> dict[str, str]:
    """The environment every replica gets (docs/deployment.md, "Several replicas")."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BANDITLAKE_")}
    env |= {
        "BANDITLAKE_DATABASE_URL": pg_url,
        "BANDITLAKE_HOME": str(tmp_path / "shared-home"),
        "BANDITLAKE_ADMIN_TOKEN": ADMIN,
        "BANDITLAKE_SERVE_TOKEN": SERVE,
        "BANDITLAKE_DEVICE": "cpu",
    }
    return env


@pytest.fixture
def replicas(environment: dict[str, str], tmp_path: Path) -> Iterator[list[Replica]]:
    migrate = subprocess.run(
        [CLI, "migrate"], env=environment, capture_output=True, text=True, timeout=120
    )
    assert migrate.returncode == 0, migrate.stderr
    started: list[Replica] = []
    try:
        for name in ("replica-a", "replica-b"):
            port = _free_port()
            log = tmp_path / f"{name}.log"
            with log.open("wb") as fh:
                process = subprocess.Popen(
                    [CLI, "serve", "--host", "127.0.0.1", "--port", str(port)],
                    env=environment,
                    stdout=fh,
                    stderr=subprocess.STDOUT,
                    # Its own process group: the reallocator child goes with it on cleanup.
                    start_new_session=True,
                )
            started.append(Replica(name, process, f"http://127.0.0.1:{port}", log))
        for replica in started:
            _eventually(partial(_ready, replica), timeout_s=120, what=f"{replica.name} ready")
        yield started
    finally:
        for replica in started:
            replica.stop()


def _lease_holder(database_url: str) -> str | None:
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                text("SELECT holder FROM leases WHERE name = 'reallocator' AND expires_at > now()")
            ).all()
    finally:
        engine.dispose()
    assert len(rows) <= 1
    return str(rows[0][0]) if rows else None


def _client(replica: Replica) -> Client:
    return Client(replica.base_url, admin_token=ADMIN, serve_token=SERVE, trust_env=False)


@pytest.mark.postgres
def test_two_replicas_share_one_postgresql(
    replicas: list[Replica], pg_url: str, environment: dict[str, str]
) -> None:
    a, b = replicas
    with _client(a) as via_a, _client(b) as via_b:
        via_a.create_experiment("shared", reward="binary", min_weight=0.1)
        via_a.upload_variant("shared", "one", linear_model([1.0, 0.0]), features=["x", "y"])
        via_a.upload_variant("shared", "two", linear_model([0.0, 1.0]), features=["x", "y"])
        via_a.start("shared")

        # B learns of the experiment from the store on its next poll, and loads the models
        # from the shared models directory.
        def served_by_b() -> Prediction | None:
            try:
                return via_b.predict("shared", {"x": 1, "y": 2})
            except (NotFoundError, ConflictError):
                return None  # not seen yet, or seen while still a draft

        from_b = _eventually(served_by_b, timeout_s=30, what="replica B serving 'shared'")
        assert from_b.prediction == (1.0 if from_b.variant == "one" else 2.0)
        assert [v.provider for v in via_b.list_variants("shared")] == ["CPUExecutionProvider"] * 2
        from_a = [via_a.predict("shared", [3.0, 4.0]) for _ in range(5)]

        # Request ids are signed with the key shared through the store: either replica
        # verifies the other's.
        ok = FeedbackAck(accepted=1, duplicate=False)
        assert via_b.feedback(from_a[0].request_id, reward=1) == ok
        assert via_a.feedback(from_b.request_id, reward=0) == ok
        assert via_a.feedback(from_a[1].request_id, reward=1) == ok

        # One reallocation loop of the two holds the lease.
        holders = {a.holder(), b.holder()}
        assert len(holders) == 2
        first = _eventually(lambda: _lease_holder(pg_url), timeout_s=30, what="a lease holder")
        assert first in holders
        time.sleep(2.5)  # more than two ticks of both loops: the lease does not move
        assert _lease_holder(pg_url) == first

        # The holder stops cleanly and releases the lease; the other loop takes it.
        holder, other = (a, b) if a.holder() == first else (b, a)
        holder.stop()
        taken = _eventually(
            lambda: _lease_holder(pg_url) if _lease_holder(pg_url) == other.holder() else None,
            timeout_s=30,
            what="the lease moving to the other replica",
        )
        assert taken == other.holder()
        with _client(other) as survivor:
            assert survivor.predict("shared", [1.0, 1.0]).variant in ("one", "two")
    other.stop()

    # Both replicas flushed their rows to the one lake, listed in the one manifest.
    lake_root = Settings(
        _env_file=None,
        home=Path(environment["BANDITLAKE_HOME"]),
        database_url=pg_url,
    ).lake_root
    with open_lake(pg_url, lake_root) as lake:
        con = lake.duckdb()
        try:
            predictions = con.execute("SELECT count(*) FROM predictions").fetchone()
            feedback = con.execute("SELECT count(*) FROM feedback").fetchone()
        finally:
            con.close()
    assert predictions == (7,) and feedback == (3,)


def test_every_variable_the_document_names_is_a_setting() -> None:
    named = set(re.findall(r"BANDITLAKE_([A-Z_]+[A-Z])", DOC.read_text(encoding="utf-8")))
    assert {"DATABASE_URL", "HOME", "DEVICE", "REQUEST_ID_SECRET", "LEASE_TTL_S"} <= named
    assert {n.lower() for n in named} <= set(Settings.model_fields)


def test_the_documented_line_for_a_missing_bucket(
    tmp_path: Path,
    s3_server: S3Server,  # noqa: F811
) -> None:
    text = DOC.read_text(encoding="utf-8")
    quoted = re.search(r"`(banditlake: BANDITLAKE_LAKE_URI: Bucket [^`]+)`", text, re.S)
    assert quoted is not None
    documented = " ".join(quoted.group(1).split())
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BANDITLAKE_", "AWS_"))}
    env |= s3_server.environment() | {
        "BANDITLAKE_HOME": str(tmp_path),
        "BANDITLAKE_LAKE_URI": "s3://ml-lake/banditlake",
    }
    result = subprocess.run(
        [CLI, "serve", "--port", "0"], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    line = result.stderr.strip().splitlines()[-1]
    assert "Traceback" not in result.stderr
    # The document's endpoint is an example; the rest of the sentence is verbatim.
    assert line == documented.replace("http://minio.internal:9000", s3_server.endpoint_url)
