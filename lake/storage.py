"""Where the lake's bytes live: a local directory or an S3 prefix, behind one interface.

Every lake operation (the writer, the readers, the aggregates, the janitor, compaction)
reaches its files through a :class:`LakeStorage` and names them by their path relative
to the lake root, the form the manifest stores. Two implementations share it:

``LocalStorage``
    A directory. A new file is written under a temp name in its destination directory,
    fsynced, and linked to its final name without replacing an existing file; then the
    directory is fsynced.
``ObjectStorage``
    An ``s3://bucket/prefix`` on any S3-compatible store (AWS S3, MinIO, Ceph, R2),
    configured by the standard variables ``AWS_ENDPOINT_URL`` (``http://`` allowed),
    ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN`` and
    ``AWS_REGION``. An upload is one PUT (or one multipart upload, completed at once), so
    an object is never visible half-written and no temp object is needed.

Both sit on ``pyarrow.fs``: pyarrow already reads and writes every Parquet file of the
lake, its S3 client is C++ (no GIL held during transfers) and it needs no extra package.
DuckDB reads S3 through an Arrow dataset on the same file system, because its own
``httpfs`` extension is downloaded at run time, which fails on a machine without
internet; polars reads it with its built-in object-store client, given the same
settings (:meth:`ObjectStorage.polars_options`).

Each storage counts its requests, errors, bytes and time per operation
(:meth:`LakeStorage.stats`), which ``/metrics`` exports.
"""

from __future__ import annotations

import os
import re
import secrets
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any, Final
from urllib.parse import urlsplit

import duckdb
import polars as pl
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from fsspec.implementations.arrow import ArrowFSWrapper

from lake.errors import LakeConfigError
from lake.layout import TEMP_PREFIX

__all__ = [
    "LakeStorage",
    "LocalStorage",
    "ObjectStorage",
    "OperationStats",
    "StoredFile",
    "check_uri",
    "fsync_dir",
    "open_storage",
]

S3_SCHEME: Final = "s3://"

# Timeouts of one S3 request: an unreachable endpoint must fail a start in seconds, not
# hang it; the retry strategy still rides out a brief blip.
_CONNECT_TIMEOUT_S: Final = 5.0
_REQUEST_TIMEOUT_S: Final = 30.0
_S3_ATTEMPTS: Final = 3
# Listings of a directory tree that changes under them, before giving up.
_LIST_ATTEMPTS: Final = 5


@dataclass(frozen=True, slots=True)
class StoredFile:
    """A file under the lake root, as listed by :meth:`LakeStorage.list_files`."""

    path: str
    """Relative to the lake root, POSIX separators."""
    size: int
    mtime: datetime | None


@dataclass(slots=True)
class OperationStats:
    """Counters of one kind of storage operation (``read``, ``write``, ``delete``...)."""

    requests: int = 0
    errors: int = 0
    bytes: int = 0
    seconds: float = 0.0


@dataclass(slots=True)
class _Counters:
    lock: threading.Lock = field(default_factory=threading.Lock)
    by_operation: dict[str, OperationStats] = field(default_factory=dict)

    @contextmanager
    def measure(self, operation: str) -> Iterator[list[int]]:
        # The body appends the bytes it moved; an exception counts as an error.
        moved: list[int] = []
        start = time.perf_counter()
        failed = False
        try:
            yield moved
        except BaseException as exc:
            # A missing file asked about is an answer, not a failure of the store.
            failed = not isinstance(exc, FileNotFoundError)
            raise
        finally:
            elapsed = time.perf_counter() - start
            with self.lock:
                stats = self.by_operation.setdefault(operation, OperationStats())
                stats.requests += 1
                stats.errors += failed
                stats.bytes += sum(moved)
                stats.seconds += elapsed


def _relative(path: str) -> str:
    clean = PurePosixPath(path.replace("\\", "/"))
    if clean.is_absolute() or ".." in clean.parts:
        msg = f"Lake path {path!r} must be relative to the lake root, without '..'."
        raise LakeConfigError(msg)
    return clean.as_posix()


class LakeStorage:
    """The lake root on a ``pyarrow.fs`` file system; paths are relative to the root.

    Use :func:`open_storage` to create one. Thread-safe.
    """

    kind: str = ""

    def __init__(self, uri: str, filesystem: pafs.FileSystem, base: str) -> None:
        self._uri = uri
        self._fs = filesystem
        self._base = base.rstrip("/")
        self._counters = _Counters()

    # -- naming ---------------------------------------------------------------------

    @property
    def uri(self) -> str:
        """The lake root: an absolute directory, or ``s3://bucket/prefix``."""
        return self._uri

    @property
    def filesystem(self) -> pafs.FileSystem:
        """The pyarrow file system the files live on."""
        return self._fs

    @property
    def is_local(self) -> bool:
        """True for a directory on this machine."""
        return isinstance(self._fs, pafs.LocalFileSystem)

    def location(self, path: str) -> str:
        """The path of ``path`` (relative to the root) on :attr:`filesystem`."""
        relative = _relative(path)
        return f"{self._base}/{relative}" if relative not in ("", ".") else self._base

    def url(self, path: str) -> str:
        """The address other engines open ``path`` by: a local path or ``s3://…``."""
        return self.location(path)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._uri!r})"

    # -- reading --------------------------------------------------------------------

    def exists(self, path: str) -> bool:
        """Tell whether a file exists at ``path``."""
        with self._counters.measure("head"):
            info = self._fs.get_file_info(self.location(path))
        return bool(info.type == pafs.FileType.File)

    def read_table(self, path: str, columns: Sequence[str] | None = None) -> pa.Table:
        """Read one Parquet file (raises FileNotFoundError when it is missing)."""
        with self._counters.measure("read") as moved:
            table = pq.read_table(
                self.location(path),
                columns=list(columns) if columns is not None else None,
                filesystem=self._fs,
            )
            moved.append(table.nbytes)
        return table

    def read_bytes(self, path: str) -> bytes:
        """Read a whole file (raises FileNotFoundError when it is missing)."""
        with (
            self._counters.measure("read") as moved,
            self._fs.open_input_stream(self.location(path)) as source,
        ):
            data = source.read()
            moved.append(len(data))
        return bytes(data)

    def list_files(self, prefix: str = "") -> list[StoredFile]:
        """Every file under ``prefix`` (relative to the root), recursively, by path."""
        selector = pafs.FileSelector(self.location(prefix), recursive=True, allow_not_found=True)
        with self._counters.measure("list"):
            for attempt in range(_LIST_ATTEMPTS):
                try:
                    infos = self._fs.get_file_info(selector)
                    break
                except FileNotFoundError:
                    # A directory under the prefix (or the prefix itself) appeared or
                    # vanished while it was listed (a writer's first flush, retention):
                    # pyarrow reports that even with allow_not_found. List it again.
                    if attempt + 1 == _LIST_ATTEMPTS:
                        raise
        out = []
        for info in infos:
            if info.type != pafs.FileType.File:
                continue
            relative = PurePosixPath(info.path).relative_to(self._base).as_posix()
            mtime = info.mtime
            if mtime is not None and mtime.tzinfo is None:
                mtime = mtime.replace(tzinfo=UTC)
            out.append(StoredFile(relative, int(info.size or 0), mtime))
        out.sort(key=lambda f: f.path)
        return out

    def duckdb_source(
        self,
        con: duckdb.DuckDBPyConnection,
        paths: Sequence[str],
        *,
        schema: pa.Schema | None = None,
    ) -> str:
        """A ``FROM`` item of ``con`` that reads the Parquet files at ``paths``.

        ``paths`` come from the manifest, never from a request. With ``schema`` (the
        table's), columns are matched by name across files and one missing from a file
        (written before the column was added) reads as NULL; a column that no file has
        may then be absent.
        """
        raise NotImplementedError

    def scan_polars(self, paths: Sequence[str], *, schema: pa.Schema | None = None) -> pl.LazyFrame:
        """A polars LazyFrame over the Parquet files at ``paths``.

        With ``schema``, the frame has exactly its columns: one missing from a file is
        null there (files written before a column was added).
        """
        raise NotImplementedError

    def attach_duckdb(self, con: duckdb.DuckDBPyConnection) -> None:
        """Let every cursor of ``con`` read :meth:`url` addresses in ``read_parquet``.

        For code that builds SQL text before it has a cursor (the dashboard). Slower on
        S3 than :meth:`duckdb_source` (reads pass through Python), so a caller that
        holds the connection should use that instead.
        """

    # -- writing --------------------------------------------------------------------

    def forget_directories(self) -> None:
        """Forget what is known to exist, so the next write checks again (after a failure)."""

    def write_new(
        self,
        path: str,
        table: pa.Table,
        *,
        compression: str = "zstd",
        row_group_size: int | None = None,
        fresh_name: bool = False,
    ) -> int:
        """Write ``table`` as a Parquet file at ``path``, whole or not at all.

        Raises FileExistsError, and changes nothing, when ``path`` exists. Returns the
        file's size in bytes. ``fresh_name`` says the caller made the name unique (it
        carries a random token): object storage then skips asking whether it exists,
        one request less per file; a local disk refuses to replace a file either way.
        """
        raise NotImplementedError

    def write_bytes(self, path: str, data: bytes) -> None:
        """Write (or replace) a small file whole: a model, a checkpoint, a probe."""
        raise NotImplementedError

    def delete(self, path: str) -> bool:
        """Delete the file at ``path``; False when it was not there."""
        with self._counters.measure("delete"):
            try:
                self._fs.delete_file(self.location(path))
            except FileNotFoundError:
                return False
        return True

    # -- checks and counters ----------------------------------------------------------

    def check(self, *, writable: bool = True) -> None:
        """Make sure the lake root can be listed (and written): one clear error if not.

        Raises
        ------
        LakeConfigError
            Naming the store and what is wrong: unreachable, missing bucket, refused
            credentials, no permission to write.
        """
        probe = f"{TEMP_PREFIX}probe-{secrets.token_hex(6)}"
        try:
            self._fs.get_file_info(pafs.FileSelector(self._base, allow_not_found=True))
            if writable:
                self.write_bytes(probe, b"banditlake write probe\n")
                self.delete(probe)
        except (OSError, pa.ArrowException) as exc:
            raise LakeConfigError(self._explain(exc, writable=writable)) from None

    def _explain(self, exc: BaseException, *, writable: bool) -> str:
        what = "written" if writable else "read"
        return f"The lake at {self._uri} cannot be {what}: {exc}"

    def stats(self) -> dict[str, OperationStats]:
        """Counters per operation since the storage was opened (copies)."""
        with self._counters.lock:
            return {
                name: OperationStats(s.requests, s.errors, s.bytes, s.seconds)
                for name, s in self._counters.by_operation.items()
            }


def fsync_dir(directory: Path) -> None:
    """Make a rename or a new entry in ``directory`` durable (best effort: some platforms
    cannot open a directory)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _move_no_clobber(source: Path, target: Path) -> None:
    """Move ``source`` to ``target`` atomically, raising FileExistsError if it exists."""
    try:
        # link() fails when the target exists, so a live file is never overwritten.
        os.link(source, target)
    except FileExistsError:
        raise
    except OSError:
        # File systems without hard links: check, then rename (racy only between two
        # processes misconfigured with the same writer id).
        if target.exists():
            raise FileExistsError(target) from None
        os.replace(source, target)
    else:
        source.unlink()


class LocalStorage(LakeStorage):
    """The lake in a directory of this machine."""

    kind = "local"

    def __init__(self, root: Path) -> None:
        root = Path(os.path.abspath(root))
        super().__init__(str(root), pafs.LocalFileSystem(), root.as_posix())
        self._root = root
        self._known_dirs: set[Path] = set()
        self._dirs_lock = threading.Lock()

    @property
    def root(self) -> Path:
        """The lake root directory."""
        return self._root

    def _ensure_dir(self, directory: Path) -> None:
        with self._dirs_lock:
            if directory in self._known_dirs:
                return
        missing = [d for d in (directory, *directory.parents) if not d.exists()]
        directory.mkdir(parents=True, exist_ok=True)
        # New directory entries are only durable once their parents are synced.
        for created in missing:
            fsync_dir(created.parent)
        with self._dirs_lock:
            self._known_dirs.add(directory)

    def forget_directories(self) -> None:
        """Check the directories again before the next write (after a failure)."""
        with self._dirs_lock:
            self._known_dirs.clear()

    def write_new(
        self,
        path: str,
        table: pa.Table,
        *,
        compression: str = "zstd",
        row_group_size: int | None = None,
        fresh_name: bool = False,
    ) -> int:
        final = Path(self.location(path))
        directory = final.parent
        with self._counters.measure("write") as moved:
            try:
                self._ensure_dir(directory)
            except OSError:
                self.forget_directories()
                raise
            if final.exists():
                raise FileExistsError(final)
            stem = final.name.removesuffix(".parquet")
            temp = directory / f"{TEMP_PREFIX}{stem}-{secrets.token_hex(4)}.parquet"
            try:
                with temp.open("xb") as sink:
                    pq.write_table(
                        table, sink, compression=compression, row_group_size=row_group_size
                    )
                    sink.flush()
                    os.fsync(sink.fileno())
                    size = sink.tell()
                _move_no_clobber(temp, final)
            except FileNotFoundError:
                # The directory vanished under us (a retention run, an operator).
                self.forget_directories()
                raise
            finally:
                temp.unlink(missing_ok=True)
            fsync_dir(directory)
            moved.append(size)
        return size

    def write_bytes(self, path: str, data: bytes) -> None:
        final = Path(self.location(path))
        with self._counters.measure("write") as moved:
            self._ensure_dir(final.parent)
            temp = final.parent / f"{TEMP_PREFIX}{final.name}-{secrets.token_hex(4)}"
            try:
                with temp.open("xb") as sink:
                    sink.write(data)
                    sink.flush()
                    os.fsync(sink.fileno())
                os.replace(temp, final)
            finally:
                temp.unlink(missing_ok=True)
            fsync_dir(final.parent)
            moved.append(len(data))

    def delete(self, path: str) -> bool:
        deleted = super().delete(path)
        if deleted:
            fsync_dir(Path(self.location(path)).parent)
        return deleted

    def duckdb_source(
        self,
        con: duckdb.DuckDBPyConnection,
        paths: Sequence[str],
        *,
        schema: pa.Schema | None = None,
    ) -> str:
        listed = ", ".join(_quote(self.location(p)) for p in paths)
        union = "" if schema is None else ", union_by_name = true"
        # hive_partitioning off: dt/hour are the flush time, not data; keep the schema.
        return f"read_parquet([{listed}], hive_partitioning = false{union})"

    def scan_polars(self, paths: Sequence[str], *, schema: pa.Schema | None = None) -> pl.LazyFrame:
        return pl.scan_parquet(
            [self.location(p) for p in paths], hive_partitioning=False, **_polars_schema(schema)
        )

    def _explain(self, exc: BaseException, *, writable: bool) -> str:
        what = "written" if writable else "read"
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        return f"The lake directory {self._uri} cannot be {what}: {reason}."


def _polars_schema(schema: pa.Schema | None) -> dict[str, Any]:
    """``scan_parquet`` options that give a scan exactly the columns of ``schema``."""
    if schema is None:
        return {}
    frame = pl.from_arrow(schema.empty_table())
    assert isinstance(frame, pl.DataFrame)  # a Table always converts to a DataFrame
    return {"schema": frame.schema, "missing_columns": "insert"}


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _valid_endpoint(endpoint: str) -> bool:
    try:
        parts = urlsplit(endpoint)
        parts.port  # noqa: B018  (raises ValueError for a port that is not 0 to 65535)
    except ValueError:  # such as an unclosed IPv6 bracket
        return False
    return (
        parts.scheme in ("http", "https")
        and bool(parts.hostname)
        and not parts.query
        and not parts.fragment
    )


@dataclass(frozen=True)
class S3Settings:
    """How to reach an S3-compatible store, read from the standard AWS variables."""

    endpoint_url: str | None
    region: str | None
    access_key: str | None
    secret_key: str | None
    session_token: str | None

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> S3Settings:
        env = os.environ if environ is None else environ
        variable = "AWS_ENDPOINT_URL_S3" if env.get("AWS_ENDPOINT_URL_S3") else "AWS_ENDPOINT_URL"
        endpoint = (env.get(variable) or "").strip() or None
        if endpoint is not None and not _valid_endpoint(endpoint):
            msg = (
                f"{variable}={endpoint!r} must be an http:// or https:// URL with a host "
                "and an optional port, such as http://127.0.0.1:9000."
            )
            raise LakeConfigError(msg)
        return cls(
            endpoint_url=endpoint,
            region=env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or None,
            access_key=env.get("AWS_ACCESS_KEY_ID") or None,
            secret_key=env.get("AWS_SECRET_ACCESS_KEY") or None,
            session_token=env.get("AWS_SESSION_TOKEN") or None,
        )

    def filesystem(self) -> pafs.S3FileSystem:
        options: dict[str, object] = {
            "connect_timeout": _CONNECT_TIMEOUT_S,
            "request_timeout": _REQUEST_TIMEOUT_S,
            "retry_strategy": pafs.AwsStandardS3RetryStrategy(max_attempts=_S3_ATTEMPTS),
            # An upload starts at its first write, not at open: one request less per
            # file (benchmarks/object_store_clients.py).
            "allow_delayed_open": True,
        }
        if self.region:
            options["region"] = self.region
        if self.access_key and self.secret_key:
            options.update(
                access_key=self.access_key,
                secret_key=self.secret_key,
                session_token=self.session_token,
            )
        if self.endpoint_url:
            parts = urlsplit(self.endpoint_url)
            options["endpoint_override"] = parts.netloc + parts.path.rstrip("/")
            options["scheme"] = parts.scheme
        return pafs.S3FileSystem(**options)

    def object_store_options(self) -> dict[str, str]:
        """The same settings for Rust ``object_store`` clients (polars, deltalake)."""
        out: dict[str, str] = {}
        if self.endpoint_url:
            out["aws_endpoint_url"] = self.endpoint_url
            if self.endpoint_url.startswith("http://"):
                out["aws_allow_http"] = "true"
        if self.region:
            out["aws_region"] = self.region
        if self.access_key and self.secret_key:
            out["aws_access_key_id"] = self.access_key
            out["aws_secret_access_key"] = self.secret_key
            if self.session_token:
                out["aws_session_token"] = self.session_token
        return out


class _S3Bridge(ArrowFSWrapper):  # type: ignore[misc]
    # pyarrow's S3 client seen by DuckDB as the file system of s3:// addresses.
    protocol = "s3"


class ObjectStorage(LakeStorage):
    """The lake under ``s3://bucket/prefix`` on an S3-compatible store."""

    kind = "s3"

    def __init__(self, uri: str, settings: S3Settings) -> None:
        bucket, _, prefix = uri.removeprefix(S3_SCHEME).partition("/")
        if not bucket:
            msg = f"The lake URI {uri!r} names no bucket; expected s3://bucket/prefix."
            raise LakeConfigError(msg)
        prefix = prefix.strip("/")
        base = f"{bucket}/{prefix}" if prefix else bucket
        super().__init__(f"{S3_SCHEME}{base}", settings.filesystem(), base)
        self._settings = settings
        self._bucket = bucket

    @property
    def settings(self) -> S3Settings:
        return self._settings

    def url(self, path: str) -> str:
        return f"{S3_SCHEME}{self.location(path)}"

    def read_table(self, path: str, columns: Sequence[str] | None = None) -> pa.Table:
        # One GET for the whole object, then Parquet from memory: the files read one by
        # one (the aggregates' new flush files) are small, and ranged reads of footer and
        # columns cost a request each (about twice the time, measured).
        with (
            self._counters.measure("read") as moved,
            self._fs.open_input_stream(self.location(path)) as source,
        ):
            data = source.read()
            moved.append(len(data))
        return pq.read_table(
            pa.BufferReader(data), columns=list(columns) if columns is not None else None
        )

    def polars_options(self) -> dict[str, str]:
        """``storage_options`` for polars and deltalake reading this store."""
        return self._settings.object_store_options()

    def write_new(
        self,
        path: str,
        table: pa.Table,
        *,
        compression: str = "zstd",
        row_group_size: int | None = None,
        fresh_name: bool = False,
    ) -> int:
        location = self.location(path)
        with self._counters.measure("write") as moved:
            # S3 has no portable put-if-absent: a name is checked first unless the
            # caller made it unique.
            if not fresh_name and self._fs.get_file_info(location).type != pafs.FileType.NotFound:
                raise FileExistsError(self.url(path))
            # One PUT (or one multipart upload, completed on close): the object appears
            # whole or not at all.
            with self._fs.open_output_stream(location) as sink:
                pq.write_table(table, sink, compression=compression, row_group_size=row_group_size)
                size = int(sink.tell())
            moved.append(size)
        return size

    def write_bytes(self, path: str, data: bytes) -> None:
        with self._counters.measure("write") as moved:
            with self._fs.open_output_stream(self.location(path)) as sink:
                sink.write(data)
            moved.append(len(data))

    def duckdb_source(
        self,
        con: duckdb.DuckDBPyConnection,
        paths: Sequence[str],
        *,
        schema: pa.Schema | None = None,
    ) -> str:
        # DuckDB scans the Arrow dataset (pushing columns and filters down) through
        # pyarrow's S3 client; the name is registered on this connection only. The dataset
        # takes the first file's schema (reading it finds a missing first file at once);
        # with ``schema`` that one replaces it, and a column missing from a file is null.
        name = f"lake_files_{secrets.token_hex(6)}"
        dataset = ds.dataset(
            [self.location(p) for p in paths], filesystem=self._fs, format="parquet"
        )
        if schema is not None:
            dataset = dataset.replace_schema(schema)
        con.register(name, dataset)
        return name

    def scan_polars(self, paths: Sequence[str], *, schema: pa.Schema | None = None) -> pl.LazyFrame:
        return pl.scan_parquet(
            [self.url(p) for p in paths],
            hive_partitioning=False,
            storage_options=self.polars_options(),
            **_polars_schema(schema),
        )

    def attach_duckdb(self, con: duckdb.DuckDBPyConnection) -> None:
        if not con.filesystem_is_registered("s3"):
            con.register_filesystem(_S3Bridge(self._fs))

    def check(self, *, writable: bool = True) -> None:
        """Make sure the bucket exists and can be listed (and written): one clear error.

        Listing first gives the store's own error code for refused credentials (a HEAD
        response has no body to carry it). A missing bucket lists as empty, so after an
        empty listing the bucket itself is asked about (HeadBucket); the write probe runs
        last.
        """
        try:
            listed = self._fs.get_file_info(pafs.FileSelector(self._base, allow_not_found=True))
            if not listed and not self._bucket_exists():
                raise LakeConfigError(self._missing_bucket())
        except (OSError, pa.ArrowException) as exc:
            raise LakeConfigError(self._explain(exc, writable=writable)) from None
        if not writable:
            return
        probe = f"{TEMP_PREFIX}probe-{secrets.token_hex(6)}"
        try:
            self.write_bytes(probe, b"banditlake write probe\n")
            self.delete(probe)
        except (OSError, pa.ArrowException) as exc:
            raise LakeConfigError(self._explain(exc, writable=True, listed=True)) from None

    def _bucket_exists(self) -> bool:
        try:
            info = self._fs.get_file_info(self._bucket)
            return bool(info.type != pafs.FileType.NotFound)
        except OSError as exc:
            # Some stores map HeadBucket to a permission of its own: the listing passed,
            # so leave the answer to the write probe (or to the first write).
            if "ACCESS_DENIED" in str(exc):
                return True
            raise

    def _endpoint(self) -> str:
        return self._settings.endpoint_url or "the default AWS endpoint"

    def _missing_bucket(self) -> str:
        return (
            f"Bucket {self._bucket!r} of the lake at {self._uri} does not exist at "
            f"{self._endpoint()}; create it first."
        )

    def _explain(self, exc: BaseException, *, writable: bool, listed: bool = False) -> str:
        text = str(exc)
        # pyarrow's messages carry the store's error as "AWS Error <CODE> during <op>";
        # matching on the code (not on words or digits anywhere in the text, such as a
        # request id) keeps each cause to its own sentence.
        found = _AWS_ERROR.search(text)
        code = found.group(1) if found else ""
        where = f"the lake at {self._uri}"
        endpoint = self._endpoint()
        if code in _CREDENTIAL_ERRORS:
            return (
                f"The credentials for {where} were refused by {endpoint} ({code}); check "
                "AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN."
            )
        if code == "NO_SUCH_BUCKET":
            return self._missing_bucket()
        if code == "ACCESS_DENIED":
            if writable and listed:
                return (
                    f"Access denied: the credentials may list {where} at {endpoint} but have "
                    "no permission to write to it (s3:PutObject and s3:DeleteObject)."
                )
            action = "write to" if writable else "read"
            return f"Access denied: the credentials may not {action} {where} at {endpoint}."
        if code == "NETWORK_CONNECTION" or "curlCode" in text or "Couldn't connect" in text:
            return f"The object store at {endpoint} for {where} cannot be reached."
        first = text.splitlines()[0] if text else type(exc).__name__
        return f"The object store at {endpoint} failed for {where}: {first}"


_AWS_ERROR: Final = re.compile(r"AWS Error ([A-Z_]+) during")
_CREDENTIAL_ERRORS: Final = frozenset(
    {
        "INVALID_ACCESS_KEY_ID",
        "SIGNATURE_DOES_NOT_MATCH",
        "INVALID_CLIENT_TOKEN_ID",
        "UNRECOGNIZED_CLIENT",
        "INVALID_SIGNATURE",
        "MISSING_AUTHENTICATION_TOKEN",
        "EXPIRED_TOKEN",
        "REQUEST_EXPIRED",
    }
)


def check_uri(uri: str, name: str = "The lake URI") -> None:
    """Refuse a URI no storage here can open, naming the setting (``name``).

    Raises
    ------
    LakeConfigError
        For a scheme other than a path, ``file://`` or ``s3://``, or an ``s3://`` without
        a bucket.
    """
    if uri.startswith(S3_SCHEME):
        if not uri.removeprefix(S3_SCHEME).split("/", 1)[0]:
            msg = f"{name}={uri!r} names no bucket; expected s3://bucket/prefix."
            raise LakeConfigError(msg)
        return
    if "://" in uri and not uri.startswith("file://"):
        scheme = uri.split("://", 1)[0]
        msg = (
            f"{name}={uri!r} uses {scheme}://, which banditlake does not support; use a "
            "local directory or s3://bucket/prefix (any S3-compatible store)."
        )
        raise LakeConfigError(msg)


def open_storage(
    uri: LakeStorage | str | Path, environ: Mapping[str, str] | None = None
) -> LakeStorage:
    """Open the lake root at ``uri``: a local directory, or ``s3://bucket/prefix``.

    Parameters
    ----------
    uri
        A directory path (made absolute) or an ``s3://`` URI.
    environ
        Where the ``AWS_*`` settings are read; ``os.environ`` by default.

    Raises
    ------
    LakeConfigError
        For a URI scheme other than a path or ``s3://``, or malformed AWS settings.
        Nothing is contacted here; :meth:`LakeStorage.check` does that.
    """
    if isinstance(uri, LakeStorage):
        return uri
    text = str(uri)
    check_uri(text)
    if text.startswith(S3_SCHEME):
        return ObjectStorage(text, S3Settings.from_environ(environ))
    return LocalStorage(Path(text.removeprefix("file://")).expanduser())
