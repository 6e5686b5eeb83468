"""The storage contract (:mod:`lake.storage`) on both backends, and its start-up checks.

Every test taking ``storage`` runs on a local directory and on a fresh bucket of the moto
S3 server (see conftest). The credential and permission checks need a server that
enforces authentication, which the shared one does not: they start their own moto
server in a subprocess, create IAM users and policies, and then switch enforcement on.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC
from pathlib import Path

import boto3
import duckdb
import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.fs as pafs
import pytest

from lake.errors import LakeConfigError
from lake.layout import TEMP_PREFIX
from lake.storage import LakeStorage, LocalStorage, ObjectStorage, open_storage
from tests.lake.lake_support import broken_sink
from tests.s3_server import REGION, S3Server

BAD_PATHS = ("../x", "a/../../x", "a/../b", "/etc/passwd", "..\\x")


def _table(seed: int, rows: int) -> pa.Table:
    rng = np.random.default_rng(seed)
    return pa.table(
        {
            "file": pa.array(np.full(rows, seed, dtype=np.int64)),
            "variant": rng.choice(["a", "b", "c"], size=rows),
            "reward": rng.random(rows),
        }
    )


def _one_line(exc: LakeConfigError) -> str:
    message = str(exc)
    assert "\n" not in message
    assert "Traceback" not in message
    # Raised "from None": nothing chained for a log line or a CLI to print.
    assert exc.__cause__ is None
    assert exc.__suppress_context__ or exc.__context__ is None
    return message


# -- writing whole files -------------------------------------------------------------------


def test_write_new_never_replaces(storage: LakeStorage) -> None:
    path = "predictions/dt=2025-03-01/hour=12/part-w-00000001.parquet"
    first, second = _table(1, 100), _table(2, 5)
    size = storage.write_new(path, first)
    with pytest.raises(FileExistsError):
        storage.write_new(path, second)
    assert storage.read_table(path).equals(first)
    [stored] = storage.list_files()
    assert (stored.path, stored.size) == (path, size)
    assert storage.read_bytes(path)[:4] == b"PAR1"


def test_a_reader_never_sees_a_partial_file(storage: LakeStorage) -> None:
    # Large files (multipart uploads on S3, several writes locally) and small ones,
    # written by one thread while another lists and reads whatever part files exist.
    expected = {
        f"t/dt=2025-03-01/hour={i % 3:02d}/part-w-{i:08d}.parquet": _table(
            i, 600_000 if i % 6 == 0 else 500
        )
        for i in range(18)
    }
    half_written = threading.Event()
    first_read = threading.Event()
    done = threading.Event()
    problems: list[str] = []
    verified: set[str] = set()

    def read_pass() -> None:
        for stored in storage.list_files("t"):
            name = stored.path.rsplit("/", 1)[-1]
            if stored.path in verified or name.startswith(TEMP_PREFIX):
                continue
            if stored.path not in expected:
                problems.append(f"unexpected file {stored.path}")
                continue
            got = storage.read_table(stored.path)
            if not got.equals(expected[stored.path]):
                problems.append(f"{stored.path}: {got.num_rows} rows, not the file written")
            verified.add(stored.path)
            first_read.set()

    def reader() -> None:
        try:
            while not done.is_set():
                read_pass()
            read_pass()
        except Exception as exc:
            problems.append(f"{type(exc).__name__}: {exc}")
        finally:
            first_read.set()

    def writer() -> None:
        try:
            for n, (path, table) in enumerate(expected.items()):
                storage.write_new(path, table, compression="none")
                if n == len(expected) // 2:
                    half_written.set()
                    # The reader reads while the second half is being written.
                    assert first_read.wait(60)
        except Exception as exc:
            problems.append(f"writer: {type(exc).__name__}: {exc}")
        finally:
            done.set()

    threads = [threading.Thread(target=reader), threading.Thread(target=writer)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not any(thread.is_alive() for thread in threads)
    assert problems == []
    assert half_written.is_set()
    assert verified == set(expected)
    assert [f.path for f in storage.list_files()] == sorted(expected)


# -- the other operations ------------------------------------------------------------------


def test_list_exists_delete_and_bytes(storage: LakeStorage) -> None:
    storage.write_bytes("models/a/model.onnx", b"first")
    storage.write_bytes("models/a/model.onnx", b"second, longer")  # replaced whole
    storage.write_bytes("models/b.json", b"{}")
    storage.write_bytes("other/x", b"x")
    assert storage.exists("models/a/model.onnx")
    assert not storage.exists("models/a")  # a directory or a prefix is not a file
    assert not storage.exists("models/missing")
    assert storage.read_bytes("models/a/model.onnx") == b"second, longer"
    listed = storage.list_files("models")
    assert [(f.path, f.size) for f in listed] == [
        ("models/a/model.onnx", len(b"second, longer")),
        ("models/b.json", 2),
    ]
    assert all(f.mtime is not None and f.mtime.tzinfo == UTC for f in listed)
    assert [f.path for f in storage.list_files()] == [
        "models/a/model.onnx",
        "models/b.json",
        "other/x",
    ]
    assert storage.list_files("nothing/here") == []
    assert storage.delete("models/b.json") is True
    assert storage.delete("models/b.json") is False
    assert not storage.exists("models/b.json")
    with pytest.raises(FileNotFoundError):
        storage.read_bytes("models/b.json")
    with pytest.raises(FileNotFoundError):
        storage.read_table("models/b.json")
    assert [f.path for f in storage.list_files()] == ["models/a/model.onnx", "other/x"]


def test_urls_and_locations(root: str, storage: LakeStorage, tmp_path: Path) -> None:
    path = "feedback/dt=2025-03-01/hour=12/part-w-00000001.parquet"
    assert open_storage(storage) is storage
    if isinstance(storage, LocalStorage):
        assert storage.is_local and storage.kind == "local"
        assert storage.uri == str(tmp_path / "lake") == root
        assert storage.location(path) == f"{tmp_path}/lake/{path}"
        assert storage.url(path) == storage.location(path)
        assert storage.location("") == storage.location(".") == f"{tmp_path}/lake"
        assert open_storage(f"file://{tmp_path}/lake").uri == storage.uri
    else:
        assert isinstance(storage, ObjectStorage)
        assert not storage.is_local and storage.kind == "s3"
        bucket = root.removeprefix("s3://").split("/")[0]
        assert storage.uri == root == f"s3://{bucket}/lake"
        assert storage.location(path) == f"{bucket}/lake/{path}"
        assert storage.url(path) == f"s3://{bucket}/lake/{path}"
        assert storage.location("") == f"{bucket}/lake"
        assert open_storage(f"{root}/").uri == root
        assert open_storage(f"s3://{bucket}").location("x") == f"{bucket}/x"
    # Windows separators name the same file.
    assert storage.location("feedback\\x") == storage.location("feedback/x")


@pytest.mark.parametrize("bad", BAD_PATHS)
def test_paths_outside_the_root_are_refused(
    root: str, storage: LakeStorage, tmp_path: Path, bad: str
) -> None:
    table = _table(0, 3)
    operations = {
        "exists": lambda: storage.exists(bad),
        "read_bytes": lambda: storage.read_bytes(bad),
        "read_table": lambda: storage.read_table(bad),
        "write_bytes": lambda: storage.write_bytes(bad, b"x"),
        "write_new": lambda: storage.write_new(bad, table),
        "delete": lambda: storage.delete(bad),
        "list_files": lambda: storage.list_files(bad),
        "url": lambda: storage.url(bad),
    }
    for name, operation in operations.items():
        with pytest.raises(LakeConfigError, match="must be relative to the lake root") as caught:
            operation()
        assert _one_line(caught.value), name
    # Nothing was written anywhere: not beside the root, not in the bucket.
    assert list(tmp_path.iterdir()) == []
    if isinstance(storage, ObjectStorage):
        bucket = root.removeprefix("s3://").split("/")[0]
        selector = pafs.FileSelector(bucket, recursive=True)
        assert storage.filesystem.get_file_info(selector) == []


# -- engines -------------------------------------------------------------------------------


def test_duckdb_and_polars_read_back_the_same_rows(storage: LakeStorage) -> None:
    parts = [_table(seed, rows) for seed, rows in ((1, 1000), (2, 2500), (3, 40))]
    paths = [f"predictions/dt=2025-03-01/hour=12/part-w-{i:08d}.parquet" for i in range(3)]
    for path, part in zip(paths, parts, strict=True):
        storage.write_new(path, part)
    whole = pa.concat_tables(parts)
    variants = whole["variant"].to_numpy(zero_copy_only=False)
    rewards = whole["reward"].to_numpy()
    names = sorted(set(variants.tolist()))
    reference = [
        (v, int(np.sum(variants == v)), float(np.sum(rewards[variants == v]))) for v in names
    ]
    query = "SELECT variant, count(*), sum(reward) FROM {} GROUP BY variant ORDER BY variant"

    con = duckdb.connect()
    from_source = con.sql(query.format(storage.duckdb_source(con, paths))).fetchall()
    con.close()

    con = duckdb.connect()
    storage.attach_duckdb(con)
    storage.attach_duckdb(con)  # a second attach is harmless
    listed = ", ".join(f"'{storage.url(p)}'" for p in paths)
    cursor = con.cursor()  # the dashboard builds SQL for cursors of one connection
    from_urls = cursor.sql(query.format(f"read_parquet([{listed}])")).fetchall()
    con.close()

    frame = (
        storage.scan_polars(paths)
        .group_by("variant")
        .agg(n=pl.len(), s=pl.col("reward").sum())
        .sort("variant")
        .collect()
    )
    from_polars = list(frame.iter_rows())

    for got in (from_source, from_urls, from_polars):
        assert [(v, int(n)) for v, n, _ in got] == [(v, n) for v, n, _ in reference]
        assert np.allclose([s for *_, s in got], [s for *_, s in reference])
    assert sum(n for _, n, _ in reference) == 3540


# -- counters ------------------------------------------------------------------------------


def test_stats_count_requests_bytes_and_errors(root: str) -> None:
    storage = open_storage(root)  # fresh counters
    assert storage.stats() == {}
    size = storage.write_new("p/part-1.parquet", _table(1, 200))
    storage.write_bytes("m/model.bin", b"12345")
    assert storage.read_bytes("m/model.bin") == b"12345"
    assert storage.stats()["read"].bytes == 5
    assert storage.read_table("p/part-1.parquet").num_rows == 200
    assert storage.exists("p/part-1.parquet")
    assert not storage.exists("p/part-2.parquet")
    assert len(storage.list_files()) == 2
    with pytest.raises(FileNotFoundError):
        storage.read_bytes("m/missing.bin")
    assert storage.delete("m/model.bin")
    stats = storage.stats()
    assert (stats["write"].requests, stats["write"].errors, stats["write"].bytes) == (
        2,
        0,
        size + 5,
    )
    # A file asked about that is not there is an answer, not an error of the store.
    assert (stats["read"].requests, stats["read"].errors) == (3, 0)
    assert stats["read"].bytes > 5  # a table counts its Arrow size, not the file's
    assert (stats["head"].requests, stats["head"].errors) == (2, 0)
    assert (stats["list"].requests, stats["delete"].requests) == (1, 1)
    assert all(s.seconds >= 0 for s in stats.values())
    # stats() hands out copies.
    stats["write"].requests = 99
    assert storage.stats()["write"].requests == 2

    with broken_sink(storage, "p"), pytest.raises(OSError):
        storage.write_new("p/part-3.parquet", _table(3, 10))
    after = storage.stats()["write"]
    assert (after.requests, after.errors, after.bytes) == (3, 1, size + 5)


# -- start-up checks: one clear line -------------------------------------------------------


def test_check_passes_on_a_usable_root(storage: LakeStorage) -> None:
    storage.check(writable=False)
    storage.check(writable=True)
    # The write probe cleans up after itself.
    assert storage.list_files() == []


def test_an_unwritable_directory_is_one_line(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_bytes(b"not a directory")
    storage = open_storage(blocker / "lake")
    with pytest.raises(LakeConfigError) as caught:
        storage.check(writable=True)
    message = _one_line(caught.value)
    assert message.startswith(f"The lake directory {blocker / 'lake'} cannot be written: ")


def _env(server: S3Server, **changes: str) -> dict[str, str]:
    return {**server.environment(), **changes}


def test_an_unreachable_endpoint_is_one_line(s3_server: S3Server) -> None:
    env = _env(s3_server, AWS_ENDPOINT_URL="http://127.0.0.1:1")
    for writable in (False, True):
        with pytest.raises(LakeConfigError) as caught:
            open_storage("s3://some-bucket/lake", env).check(writable=writable)
        assert _one_line(caught.value) == (
            "The object store at http://127.0.0.1:1 for the lake at s3://some-bucket/lake "
            "cannot be reached."
        )


def test_a_missing_bucket_is_one_line(s3_server: S3Server) -> None:
    for writable in (False, True):
        with pytest.raises(LakeConfigError) as caught:
            open_storage("s3://banditlake-never-made/lake", _env(s3_server)).check(
                writable=writable
            )
        assert _one_line(caught.value) == (
            "Bucket 'banditlake-never-made' of the lake at s3://banditlake-never-made/lake "
            f"does not exist at {s3_server.endpoint_url}; create it first."
        )


@pytest.mark.parametrize("uri", ["gs://bucket/lake", "azure://c/lake", "http://host/lake"])
def test_an_unsupported_scheme_is_one_line(uri: str) -> None:
    with pytest.raises(LakeConfigError) as caught:
        open_storage(uri)
    scheme = uri.split("://")[0]
    message = _one_line(caught.value)
    assert f"uses {scheme}://, which banditlake does not support" in message
    assert "s3://bucket/prefix" in message


@pytest.mark.parametrize(
    "endpoint",
    [
        "127.0.0.1:9000",
        "ftp://127.0.0.1:9000",
        "http://",
        "http://:9000",
        "http://[::1",
        "http://127.0.0.1:99999",
        "http://127.0.0.1:port",
        "http://127.0.0.1:9000/?x=1",
    ],
)
@pytest.mark.parametrize("variable", ["AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"])
def test_a_malformed_endpoint_is_one_line(endpoint: str, variable: str) -> None:
    with pytest.raises(LakeConfigError) as caught:
        open_storage("s3://bucket/lake", {variable: endpoint})
    assert _one_line(caught.value) == (
        f"{variable}={endpoint!r} must be an http:// or https:// URL with a host and an "
        "optional port, such as http://127.0.0.1:9000."
    )


def test_an_s3_uri_without_a_bucket_is_one_line() -> None:
    with pytest.raises(LakeConfigError) as caught:
        open_storage("s3:///lake", {})
    assert "names no bucket" in _one_line(caught.value)


# -- credentials and permissions: a moto server that enforces them -------------------------


@dataclass(frozen=True)
class AuthServer:
    endpoint_url: str
    bucket: str
    keys: dict[str, tuple[str, str]]
    """User name -> (access key id, secret)."""

    def environment(self, access_key: str, secret_key: str) -> dict[str, str]:
        return {
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_ACCESS_KEY_ID": access_key,
            "AWS_SECRET_ACCESS_KEY": secret_key,
            "AWS_REGION": REGION,
        }

    def storage(self, user: str, *, secret: str | None = None) -> LakeStorage:
        access_key, real_secret = self.keys[user]
        env = self.environment(access_key, real_secret if secret is None else secret)
        return open_storage(f"s3://{self.bucket}/lake", env)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _policy(*actions: str) -> str:
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": list(actions), "Resource": "*"}],
        }
    )


@pytest.fixture(scope="module")
def auth_server() -> Iterator[AuthServer]:
    """A moto server of its own (authentication is a process-wide moto setting)."""
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k != "INITIAL_NO_AUTH_ACTION_COUNT"}
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(300):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                assert process.poll() is None, "moto server exited"
                threading.Event().wait(0.05)
        # Set up while the server still accepts anything, then make it check every request.
        setup = {
            "endpoint_url": url,
            "aws_access_key_id": "setup",
            "aws_secret_access_key": "setup",
            "region_name": REGION,
        }
        iam = boto3.client("iam", **setup)
        bucket = "banditlake-auth"
        boto3.client("s3", **setup).create_bucket(Bucket=bucket)
        keys = {}
        policies = {
            "writer": _policy("s3:*"),
            "reader": _policy("s3:GetObject", "s3:ListBucket"),
        }
        for user, policy in policies.items():
            iam.create_user(UserName=user)
            iam.put_user_policy(UserName=user, PolicyName=f"{user}-lake", PolicyDocument=policy)
            key = iam.create_access_key(UserName=user)["AccessKey"]
            keys[user] = (key["AccessKeyId"], key["SecretAccessKey"])
        request = urllib.request.Request(
            f"{url}/moto-api/reset-auth",
            data=b"0",
            method="POST",
            headers={"Content-Type": "text/plain"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            assert json.load(response)["status"] == "ok"
        yield AuthServer(url, bucket, keys)
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_valid_credentials_pass_the_enforcing_server(auth_server: AuthServer) -> None:
    # The control: the server accepts a user allowed to write, so the refusals below
    # are about the credentials, not about the server.
    writer = auth_server.storage("writer")
    writer.check(writable=True)
    writer.write_bytes("hello.txt", b"hi")
    assert auth_server.storage("reader").read_bytes("hello.txt") == b"hi"
    assert writer.delete("hello.txt")


@pytest.mark.parametrize("writable", [False, True])
def test_a_wrong_secret_is_one_line_about_credentials(
    auth_server: AuthServer, writable: bool
) -> None:
    storage = auth_server.storage("writer", secret="not-the-secret")
    with pytest.raises(LakeConfigError) as caught:
        storage.check(writable=writable)
    assert _one_line(caught.value) == (
        f"The credentials for the lake at s3://{auth_server.bucket}/lake were refused by "
        f"{auth_server.endpoint_url} (SIGNATURE_DOES_NOT_MATCH); check AWS_ACCESS_KEY_ID, "
        "AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN."
    )


def test_an_unknown_access_key_is_about_credentials_not_the_bucket(
    auth_server: AuthServer,
) -> None:
    # The store answers "The AWS Access Key Id you provided does not exist in our
    # records": once taken for a missing bucket.
    storage = open_storage(
        f"s3://{auth_server.bucket}/lake",
        auth_server.environment("AKIAUNKNOWNUNKNOWN00", "whatever"),
    )
    with pytest.raises(LakeConfigError) as caught:
        storage.check(writable=False)
    message = _one_line(caught.value)
    assert "(INVALID_ACCESS_KEY_ID); check AWS_ACCESS_KEY_ID" in message
    assert "does not exist" not in message


def test_read_only_credentials_are_one_line_about_write_permission(
    auth_server: AuthServer,
) -> None:
    reader = auth_server.storage("reader")
    reader.check(writable=False)  # reading is allowed
    with pytest.raises(LakeConfigError) as caught:
        reader.check(writable=True)
    assert _one_line(caught.value) == (
        f"Access denied: the credentials may list the lake at s3://{auth_server.bucket}/lake "
        f"at {auth_server.endpoint_url} but have no permission to write to it "
        "(s3:PutObject and s3:DeleteObject)."
    )
    with pytest.raises(OSError, match="ACCESS_DENIED"):
        reader.write_bytes("x", b"x")
    assert reader.stats()["write"].errors == 2  # the probe and the write above
    assert auth_server.storage("writer").list_files() == []


def test_listing_a_prefix_while_it_comes_and_goes(storage: LakeStorage) -> None:
    # A partition is created by a writer's first flush and removed by retention while
    # others list it. pyarrow reports a directory that appears or vanishes mid-listing as
    # FileNotFoundError even with allow_not_found; the listing must be empty or whole.
    storage.write_bytes("t/keep/part-0.parquet", b"kept")
    stop = threading.Event()
    started = threading.Event()
    problems: list[str] = []

    def churn() -> None:
        try:
            while not stop.is_set():
                storage.write_bytes("t/a/b/part-1.parquet", b"x")
                if isinstance(storage, LocalStorage):
                    shutil.rmtree(storage.root / "t" / "a")
                    storage.forget_directories()
                else:
                    storage.delete("t/a/b/part-1.parquet")
                started.set()
        except Exception as exc:
            problems.append(f"churn: {type(exc).__name__}: {exc}")
        finally:
            started.set()

    thread = threading.Thread(target=churn)
    thread.start()
    try:
        assert started.wait(60)
        for _ in range(3000 if storage.is_local else 100):
            for prefix in ("t/a", "t/a/b"):
                listed = [f.path for f in storage.list_files(prefix)]
                # A local write's temp file may be caught on its way into place.
                paths = [p for p in listed if not p.rsplit("/", 1)[-1].startswith(TEMP_PREFIX)]
                assert paths in ([], ["t/a/b/part-1.parquet"]), listed
    finally:
        stop.set()
        thread.join(30)
    assert problems == []
    assert [f.path for f in storage.list_files("t/keep")] == ["t/keep/part-0.parquet"]
