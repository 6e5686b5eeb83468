"""Model files on shared storage: a directory or an S3 prefix (moto's server), by checksum.

The unit tests run :class:`ModelStore` on both kinds of store. The app tests run two
replicas (two apps, two homes) over one SQLite database and one bucket: a model uploaded
through one is fetched, checked and cached by the other; a file with the wrong bytes
fails its variant on the replica that read it, never in the store, and the other replica
keeps serving it; a file missing from the store is served once it appears, without a
restart.
"""

from __future__ import annotations

import hashlib
import os
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any, TypeVar

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text

from api.serving.model_store import (
    Backoff,
    ModelChecksumError,
    ModelFileUnavailableError,
    ModelStore,
)
from api.settings import Settings
from api.store.migrate import upgrade
from lake.storage import LakeStorage, open_storage
from tests.api.helpers import create_experiment, start, upload
from tests.conftest import make_client, make_settings
from tests.onnx_models import linear_model
from tests.s3_server import S3Server, s3_server  # noqa: F401

T = TypeVar("T")
MODEL = linear_model([1.0, 2.0, 3.0])
OTHER = linear_model([3.0, 2.0, 1.0], 0.5)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def eventually(check: Callable[[], T | None], *, what: str, timeout_s: float = 30.0) -> T:
    """Poll ``check`` until it returns something; the bound only keeps a failure short."""
    deadline = time.monotonic() + timeout_s
    while True:
        found = check()
        if found is not None and found is not False:
            return found
        if time.monotonic() > deadline:
            pytest.fail(f"{what} did not happen within {timeout_s} s")
        time.sleep(0.05)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- the store on its own ----------------------------------------------------------------


class Store:
    """A :class:`ModelStore` under test and the raw storage behind it."""

    def __init__(self, store: ModelStore, raw: LakeStorage, spool_dir: Path) -> None:
        self.store = store
        self.raw = raw
        self.spool_dir = spool_dir

    def spool(self, data: bytes) -> Path:
        self.spool_dir.mkdir(parents=True, exist_ok=True)
        path = self.spool_dir / f".upload-{sha(data)[:8]}.onnx"
        path.write_bytes(data)
        return path


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    if request.param == "local":
        uri = str(tmp_path / "models")
        model_store = ModelStore(uri, tmp_path / "unused-cache")
        return Store(model_store, open_storage(uri), model_store.directory)
    server: S3Server = request.getfixturevalue("s3_server")
    uri = f"s3://{server.create_bucket()}/models"
    env = server.environment()
    model_store = ModelStore(uri, tmp_path / "cache", environ=env)
    return Store(model_store, open_storage(uri, env), model_store.directory)


def test_put_stores_by_checksum_and_loads_back(store: Store) -> None:
    checksum = sha(MODEL)
    spooled = store.spool(MODEL)
    inode = spooled.stat().st_ino
    path = store.store.put(spooled, checksum)
    # Moved, not copied: into the store (directory) or into the cache (S3).
    assert not spooled.exists()
    assert path == store.store.directory / f"{checksum}.onnx"
    assert path.stat().st_ino == inode
    assert [f.path for f in store.raw.list_files()] == [f"{checksum}.onnx"]
    assert store.raw.read_bytes(f"{checksum}.onnx") == MODEL
    assert store.store.local_path(checksum).read_bytes() == MODEL


def test_a_missing_file_names_its_checksum(store: Store) -> None:
    checksum = sha(MODEL)
    with pytest.raises(ModelFileUnavailableError, match=f"{checksum}.*is missing from") as err:
        store.store.local_path(checksum)
    assert not err.value.store_unreachable
    assert err.value.status_code == 503


def test_a_file_with_other_bytes_is_refused_with_both_checksums(store: Store) -> None:
    checksum = sha(MODEL)
    store.raw.write_bytes(f"{checksum}.onnx", OTHER)
    with pytest.raises(ModelChecksumError) as err:
        store.store.local_path(checksum)
    message = str(err.value)
    assert f"has sha256 {sha(OTHER)} ({len(OTHER)} bytes), not {checksum}" in message
    # The right bytes in the store are accepted on the next call: nothing stuck.
    store.raw.write_bytes(f"{checksum}.onnx", MODEL)
    assert store.store.local_path(checksum).read_bytes() == MODEL


def test_put_replaces_a_file_with_wrong_bytes(store: Store) -> None:
    checksum = sha(MODEL)
    store.raw.write_bytes(f"{checksum}.onnx", OTHER)
    store.store.put(store.spool(MODEL), checksum)
    assert store.raw.read_bytes(f"{checksum}.onnx") == MODEL
    assert store.store.local_path(checksum).read_bytes() == MODEL


def test_a_name_that_is_not_a_checksum_is_refused(store: Store) -> None:
    with pytest.raises(ModelChecksumError, match="is not a sha256 checksum"):
        store.store.local_path("../../etc/passwd")


def test_a_checked_file_is_not_hashed_again_until_it_changes(store: Store) -> None:
    checksum = sha(MODEL)
    path = store.store.put(store.spool(MODEL), checksum)
    assert store.store.local_path(checksum) == path
    # Same size and mtime, other bytes: the remembered check stands (no second hash)...
    stat = path.stat()
    flipped = bytes([MODEL[0] ^ 0xFF]) + MODEL[1:]
    path.write_bytes(flipped)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert store.store.local_path(checksum).read_bytes() == flipped
    # ...and a new mtime makes it hash the file again and see the difference.
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    if store.store.is_local:
        with pytest.raises(ModelChecksumError, match=f"has sha256 {sha(flipped)}"):
            store.store.local_path(checksum)
    else:
        # A bad cached copy is this machine's problem: fetched again from the store.
        assert store.store.local_path(checksum).read_bytes() == MODEL


def test_s3_fetches_into_the_cache_and_checks_the_copy(
    s3_server: S3Server,  # noqa: F811
    tmp_path: Path,
) -> None:
    uri = f"s3://{s3_server.create_bucket()}/prefix/models"
    env = s3_server.environment()
    open_storage(uri, env).write_bytes(f"{sha(MODEL)}.onnx", MODEL)
    cache = tmp_path / "cache"
    path = ModelStore(uri, cache, environ=env).local_path(sha(MODEL))
    assert path == cache / f"{sha(MODEL)}.onnx"
    assert path.read_bytes() == MODEL
    assert [p.name for p in cache.iterdir()] == [path.name]  # no temp file left
    # Another process (a restart) finds it in the cache even with the store gone.
    open_storage(uri, env).delete(f"{sha(MODEL)}.onnx")
    again = ModelStore(uri, cache, environ=env)
    assert again.local_path(sha(MODEL)).read_bytes() == MODEL
    # A corrupted cached copy with the object gone from the store: missing, not served.
    path.write_bytes(OTHER)
    with pytest.raises(ModelFileUnavailableError, match="is missing from the model store"):
        again.local_path(sha(MODEL))
    with pytest.raises(ModelFileUnavailableError, match="could not be reached"):
        again.local_path(sha(MODEL), fetch=False)


def test_an_unreachable_store_says_so(tmp_path: Path) -> None:
    port = _closed_port()
    env = {
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
        "AWS_ACCESS_KEY_ID": "x",
        "AWS_SECRET_ACCESS_KEY": "y",
        "AWS_REGION": "us-east-1",
    }
    store = ModelStore("s3://nowhere/models", tmp_path / "cache", environ=env)
    with pytest.raises(ModelFileUnavailableError, match="cannot be read") as err:
        store.local_path(sha(MODEL))
    assert err.value.store_unreachable


def test_backoff_doubles_to_its_cap_and_resets() -> None:
    now = [100.0]
    backoff = Backoff(1.0, 4.0, clock=lambda: now[0])
    assert not backoff.due("v") and not backoff.any_due()
    assert [backoff.failed("v") for _ in range(4)] == [1.0, 2.0, 4.0, 4.0]
    assert not backoff.due("v") and backoff.waiting("v")
    now[0] += 4.0
    assert backoff.due("v") and backoff.any_due()
    backoff.succeeded("v")
    assert not backoff.waiting("v") and backoff.failed("v") == 1.0
    backoff.retain([])
    assert not backoff.waiting("v")


# -- two replicas over one bucket --------------------------------------------------------


@pytest.fixture
def bucket_settings(
    tmp_path: Path,
    s3_server: S3Server,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> Callable[..., Settings]:
    """Settings of a replica: its own home, the shared database, lake and bucket."""
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    upgrade(url)
    for name, value in s3_server.environment().items():
        monkeypatch.setenv(name, value)
    models_uri = f"s3://{s3_server.create_bucket()}/models"

    def make(name: str, **overrides: Any) -> Settings:
        return make_settings(
            tmp_path / name,
            url,
            lake_uri=str(tmp_path / "lake"),
            models_uri=models_uri,
            **overrides,
        )

    return make


def _bucket(settings: Settings) -> LakeStorage:
    return open_storage(settings.models_uri)


def _predicted(client: TestClient, experiment: str = "e") -> str | None:
    response = client.post(f"/v1/experiments/{experiment}/predict", json={"features": [1, 2, 3]})
    return str(response.json()["variant"]) if response.status_code == 200 else None


def _variants(client: TestClient) -> dict[str, dict[str, Any]]:
    return {v["name"]: v for v in client.get("/v1/experiments/e/variants").json()}


@pytest.fixture
def replicas(bucket_settings: Callable[..., Settings]) -> Iterator[tuple[TestClient, TestClient]]:
    """Replica A refreshes by itself; replica B only when the test says (``refresh(b)``)."""
    with ExitStack() as stack:
        a = stack.enter_context(make_client(bucket_settings("a")))
        b = stack.enter_context(make_client(bucket_settings("b", allocation_refresh_ms=3_600_000)))
        yield a, b


def refresh(client: TestClient) -> None:
    client.app.state.serving.refresh(force=False)  # type: ignore[attr-defined]


def test_a_model_uploaded_through_one_replica_is_served_by_the_other(
    bucket_settings: Callable[..., Settings],
) -> None:
    settings_a, settings_b = bucket_settings("a"), bucket_settings("b")
    with make_client(settings_a) as a, make_client(settings_b) as b:
        create_experiment(a, "e")
        body = upload(a, "e", "one", MODEL)
        start(a, "e")
        assert body["sha256"] == sha(MODEL)
        # B loads it on a refresh of its own: fetched from the bucket, checked, cached.
        eventually(lambda: _predicted(b) == "one", what="replica B serving 'one'")
        assert _variants(b)["one"]["provider"] == "CPUExecutionProvider"
    name = f"{sha(MODEL)}.onnx"
    assert _bucket(settings_a).read_bytes(name) == MODEL
    assert (settings_b.models_dir / name).read_bytes() == MODEL
    # A kept its upload in its cache under the checksum's name, nothing else.
    assert [p.name for p in settings_a.models_dir.iterdir()] == [name]


def test_a_bad_copy_in_the_store_fails_the_variant_on_the_replica_that_read_it(
    replicas: tuple[TestClient, TestClient], bucket_settings: Callable[..., Settings]
) -> None:
    a, b = replicas
    settings = bucket_settings("a")
    create_experiment(a, "e")
    upload(a, "e", "good", MODEL)
    start(a, "e")
    refresh(b)
    assert _predicted(b) == "good"
    # "bad" is uploaded through A, then its object is overwritten before B reads it.
    bad = upload(a, "e", "bad", OTHER)
    _bucket(settings).write_bytes(f"{bad['sha256']}.onnx", b"not the model that was uploaded")
    put = a.put("/v1/experiments/e/allocation", json={"weights": {"good": 0.5, "bad": 0.5}})
    assert put.status_code == 200, put.text
    refresh(b)
    health = b.get("/v1/health").json()
    reason = health["models"]["e/bad"]["failed"]
    assert f"not {bad['sha256']} as recorded for the variant" in reason
    assert health["checks"]["models"] == "failing" and health["ready"] is True
    assert health["unserved_experiments"] == {}  # "good" still serves here
    assert _variants(b)["bad"]["status_reason"] == reason
    # Only B's pool knows: the store still says active, and A (which has a good copy)
    # keeps serving it.
    assert _variants(a)["bad"]["status"] == "active"
    assert a.get("/v1/health").json()["checks"]["models"] == "ok"
    served_b = {_predicted(b) for _ in range(40)}
    assert served_b == {"good"}
    eventually(lambda: _predicted(a) == "bad", what="replica A serving 'bad'")
    # Once the store has the right bytes, B tries again (after its backoff) and serves it.
    _bucket(settings).write_bytes(f"{bad['sha256']}.onnx", OTHER)

    def b_serves_bad() -> bool:
        refresh(b)
        return any(_predicted(b) == "bad" for _ in range(10))

    eventually(b_serves_bad, what="replica B serving 'bad' once its file is right")
    assert b.get("/v1/health").json()["models"]["e/bad"]["failed"] is None


def test_a_missing_file_is_served_once_it_appears_without_a_restart(
    bucket_settings: Callable[..., Settings],
) -> None:
    # B writes nothing to the store by itself (no reallocation loop): only the retry of
    # the missing file can bring the variant in.
    settings_a, settings_b = bucket_settings("a"), bucket_settings("b", reallocate=False)
    name = f"{sha(MODEL)}.onnx"
    with make_client(settings_a) as a:
        create_experiment(a, "e")
        upload(a, "e", "only", MODEL)
        start(a, "e")
    # The object is not (yet) in the store when B starts: replication lag, a bad copy job.
    assert _bucket(settings_a).delete(name)
    with make_client(settings_b) as b:
        # Failed here only: the store keeps the variant active for every other replica.
        listed = _variants(b)["only"]
        assert listed["status"] == "active"
        assert (
            f"{name} (sha256 {sha(MODEL)}) is missing from the model store"
            in (listed["status_reason"])
        )
        assert (
            b.post("/v1/experiments/e/predict", json={"features": [1, 2, 3]}).json()["error"][
                "code"
            ]
            == "no_servable_arm"
        )
        health = b.get("/v1/health").json()
        assert health["checks"]["models"] == "failing"
        unserved = health["unserved_experiments"]["e"]
        assert unserved.startswith("No arm of running experiment 'e' can serve on this replica")
        assert sha(MODEL) in unserved
        assert b.get("/readyz").json()["degraded"] == ["models"]
        # The file appears; the refresh loop tries again and B serves it.
        _bucket(settings_a).write_bytes(name, MODEL)
        eventually(lambda: _predicted(b) == "only", what="replica B serving 'only'")
        health = b.get("/v1/health").json()
        assert health["checks"]["models"] == "ok"
        assert health["unserved_experiments"] == {}
    engine = create_engine(settings_a.database_url)
    with engine.connect() as conn:
        statuses = conn.execute(text("SELECT status FROM variants")).scalars().all()
    engine.dispose()
    assert statuses == ["active"]


def test_a_store_unreachable_at_start_marks_nothing_failed_in_the_database(
    bucket_settings: Callable[..., Settings],
    monkeypatch: pytest.MonkeyPatch,
    s3_server: S3Server,  # noqa: F811
) -> None:
    with make_client(bucket_settings("a")) as a:
        create_experiment(a, "e")
        upload(a, "e", "one", MODEL)
        upload(a, "e", "two", OTHER)
        start(a, "e")
    port = _closed_port()
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")
    with make_client(bucket_settings("c")) as c:
        listed = _variants(c)
        for variant in ("one", "two"):
            assert listed[variant]["status"] == "active"
            assert "could not be reached" in listed[variant]["status_reason"] or (
                "cannot be read" in listed[variant]["status_reason"]
            )
            assert listed[variant]["provider"] is None
        assert "e" in c.get("/v1/health").json()["unserved_experiments"]
        # An upload cannot be stored either: 503 with a sentence, not a 500.
        response = c.post(
            "/v1/experiments/e/variants",
            data={"name": "three"},
            files={"model": ("m.onnx", linear_model([0.0, 1.0, 0.0]), "application/octet-stream")},
        )
        assert response.status_code == 503, response.text
        error = response.json()["error"]
        assert error["code"] == "model_file_unavailable"
        assert error["message"].startswith("The model store s3://")
        assert "cannot be written now" in error["message"]
    # A new replica that can reach the store loads both, from the same database.
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server.endpoint_url)
    with make_client(bucket_settings("d")) as d:
        assert {v["status"] for v in _variants(d).values()} == {"active"}
        assert {v["provider"] for v in _variants(d).values()} == {"CPUExecutionProvider"}
