"""Uploaded model files, kept by checksum where every replica can read them.

The store is ``BANDITLAKE_MODELS_URI``: a directory (the default, ``$BANDITLAKE_HOME/models``,
shared by replicas through a shared file system) or an ``s3://bucket/prefix`` reached
through :mod:`lake.storage`. A model is stored once, as ``<sha256>.onnx``.

ONNX Runtime loads a model from a local file, so a remote store is read through a cache
directory (``$BANDITLAKE_HOME/model-cache``): a file is fetched whole into a temp file,
its checksum checked, then renamed into place. Every file handed to the model pool has
been checked against the variant's checksum; the result is remembered per (path, size,
mtime), so a refresh does not hash a file again.

A variant whose file is missing, unreadable or bad on this replica is retried on later
refreshes with a doubling delay (:class:`Backoff`), so the replica recovers without a
restart once the store has the right file.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import tempfile
import threading
import time
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import pyarrow as pa

from api.errors import UnavailableError
from lake.storage import LakeStorage, LocalStorage, fsync_dir, open_storage

__all__ = [
    "Backoff",
    "ModelChecksumError",
    "ModelFileError",
    "ModelFileUnavailableError",
    "ModelStore",
]

log = logging.getLogger(__name__)

_SHA256: Final = re.compile(r"^[0-9a-f]{64}$")
_CHUNK: Final = 1 << 20


class ModelFileError(UnavailableError):
    """A variant's model file cannot be used on this replica now."""

    code = "model_file_unavailable"


class ModelFileUnavailableError(ModelFileError):
    """The file is not in the store, or the store cannot be reached.

    Says nothing about the variant: another replica may have it, and the file may appear
    later (an upload still replicating, a store briefly down).
    """

    def __init__(self, message: str, *, store_unreachable: bool = False) -> None:
        super().__init__(message)
        self.store_unreachable = store_unreachable


class ModelChecksumError(ModelFileError):
    """The file's bytes do not hash to the checksum recorded for the variant."""

    code = "model_checksum_mismatch"


@dataclass(slots=True)
class _Wait:
    delay: float
    next_attempt: float


class Backoff:
    """When to try again, per key: ``first_s`` after a failure, doubling up to ``max_s``."""

    def __init__(
        self,
        first_s: float = 1.0,
        max_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._first = first_s
        self._max = max_s
        self._clock = clock
        self._waits: dict[Hashable, _Wait] = {}
        self._lock = threading.Lock()

    def failed(self, key: Hashable) -> float:
        """Record a failed attempt; returns the delay before the next one."""
        with self._lock:
            wait = self._waits.get(key)
            delay = self._first if wait is None else min(wait.delay * 2, self._max)
            self._waits[key] = _Wait(delay, self._clock() + delay)
        return delay

    def succeeded(self, key: Hashable) -> None:
        with self._lock:
            self._waits.pop(key, None)

    def waiting(self, key: Hashable) -> bool:
        """Whether ``key`` failed and has not succeeded since."""
        return key in self._waits

    def due(self, key: Hashable) -> bool:
        """Whether ``key`` failed and its delay has passed (False when it never failed)."""
        wait = self._waits.get(key)
        return wait is not None and self._clock() >= wait.next_attempt

    def any_due(self) -> bool:
        now = self._clock()
        return any(now >= w.next_attempt for w in list(self._waits.values()))

    def retain(self, keys: Iterable[Hashable]) -> None:
        """Forget every key not in ``keys`` (variants deleted, disabled or stopped)."""
        keep = set(keys)
        with self._lock:
            self._waits = {k: w for k, w in self._waits.items() if k in keep}


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class ModelStore:
    """``<sha256>.onnx`` files in a local directory or an S3 prefix, read through a cache.

    Parameters
    ----------
    uri
        A directory, or ``s3://bucket/prefix`` (the ``AWS_*`` variables say how to reach it).
    cache_dir
        Where a remote store's files are kept on this machine; unused for a directory.
    environ
        Where the ``AWS_*`` settings are read; ``os.environ`` by default.

    Thread-safe: the upload route and the snapshot refresh use one instance.
    """

    def __init__(
        self,
        uri: str,
        cache_dir: Path,
        *,
        environ: Mapping[str, str] | None = None,
        backoff: Backoff | None = None,
    ) -> None:
        self._storage: LakeStorage = open_storage(uri, environ)
        self._local = isinstance(self._storage, LocalStorage)
        if isinstance(self._storage, LocalStorage):
            self._directory = self._storage.root
        else:
            self._directory = Path(os.path.abspath(cache_dir))
        self._verified: dict[Path, tuple[int, int, str]] = {}
        self._lock = threading.Lock()
        self.retries = backoff or Backoff()
        """Variants waiting for their file on this replica, and when to try again."""

    @property
    def uri(self) -> str:
        return self._storage.uri

    @property
    def storage(self) -> LakeStorage:
        """Where the model files are kept (its counters feed ``/metrics``)."""
        return self._storage

    @property
    def is_local(self) -> bool:
        """True when the store is a directory: its files are loaded where they lie."""
        return self._local

    @property
    def directory(self) -> Path:
        """The local directory of model files: the store itself, or the cache of a remote one.

        Uploads are spooled here, so storing one is a rename on the same file system.
        """
        return self._directory

    def __repr__(self) -> str:
        return f"ModelStore({self.uri!r})"

    # -- checksums --------------------------------------------------------------------

    def _digest(self, path: Path) -> str:
        """The file's sha256, hashed once per (path, size, mtime)."""
        before = path.stat()
        with self._lock:
            known = self._verified.get(path)
        if known is not None and known[:2] == (before.st_size, before.st_mtime_ns):
            return known[2]
        digest = hashlib.sha256()
        with path.open("rb") as fh:
            while chunk := fh.read(_CHUNK):
                digest.update(chunk)
        after = path.stat()
        found = digest.hexdigest()
        if (before.st_size, before.st_mtime_ns) == (after.st_size, after.st_mtime_ns):
            self._remember(path, found)
        return found

    def _remember(self, path: Path, sha256: str) -> None:
        stat = path.stat()
        with self._lock:
            self._verified[path] = (stat.st_size, stat.st_mtime_ns, sha256)

    def _forget(self, path: Path) -> None:
        with self._lock:
            self._verified.pop(path, None)

    @staticmethod
    def _name(sha256: str) -> str:
        if not _SHA256.match(sha256):
            msg = f"{sha256!r} is not a sha256 checksum (64 lowercase hex digits)."
            raise ModelChecksumError(msg)
        return f"{sha256}.onnx"

    # -- storing ----------------------------------------------------------------------

    def put(self, spooled: Path, sha256: str) -> Path:
        """Store an upload as ``<sha256>.onnx``; returns the checked local file to load.

        ``spooled`` must be a file in :attr:`directory` whose sha256 is ``sha256`` (the
        upload route hashes it while spooling). It is moved, not copied: into the store
        (a directory) or into the cache after its bytes were uploaded whole (S3). An
        existing file of that name is kept when its checksum is right and replaced when not.

        Raises
        ------
        ModelFileUnavailableError
            The remote store cannot be written now.
        """
        name = self._name(sha256)
        target = self._directory / name
        if not self._local:
            data = spooled.read_bytes()
            try:
                self._storage.write_bytes(name, data)
            except (OSError, pa.ArrowException) as exc:
                msg = f"The model store {self.uri} cannot be written now: {_first_line(exc)}"
                raise ModelFileUnavailableError(
                    msg.rstrip(".") + ".", store_unreachable=True
                ) from exc
        if target.exists():
            try:
                if self._digest(target) == sha256:
                    return target
            except OSError:
                pass
            log.warning("replacing %s: its checksum is not %s", target, sha256)
        # fsync first, so a crash never leaves a truncated model under a valid name.
        _fsync_file(spooled)
        os.replace(spooled, target)
        fsync_dir(target.parent)
        self._remember(target, sha256)
        return target

    # -- loading ----------------------------------------------------------------------

    def local_path(self, sha256: str, *, fetch: bool = True) -> Path:
        """A local file whose sha256 is ``sha256``, fetched from a remote store if need be.

        ``fetch=False`` uses the cache only (the store was just found unreachable).

        Raises
        ------
        ModelFileUnavailableError
            The file is not in the store, or the store cannot be reached.
        ModelChecksumError
            The store's file has other bytes than the variant's checksum says.
        """
        name = self._name(sha256)
        path = self._directory / name
        if self._local:
            return self._checked(path, sha256, where=f"the model store {self.uri}")
        if path.exists():
            try:
                return self._checked(path, sha256, where=f"the model cache {self._directory}")
            except ModelChecksumError as exc:
                # The cache is this machine's copy: fetch the store's again.
                log.warning("%s; fetching it again", exc)
                self._forget(path)
            except ModelFileUnavailableError:
                pass  # removed between the check and the hash: fetch it
        if not fetch:
            msg = (
                f"Model file {name} is not in the cache {self._directory} and the model "
                f"store {self.uri} could not be reached a moment ago."
            )
            raise ModelFileUnavailableError(msg, store_unreachable=True)
        return self._fetch(name, sha256)

    def _checked(self, path: Path, sha256: str, *, where: str) -> Path:
        try:
            found = self._digest(path)
        except FileNotFoundError:
            msg = f"Model file {path.name} (sha256 {sha256}) is missing from {where}."
            raise ModelFileUnavailableError(msg) from None
        except OSError as exc:
            msg = f"Model file {path.name} in {where} cannot be read: {_first_line(exc)}"
            raise ModelFileUnavailableError(msg.rstrip(".") + ".") from exc
        if found != sha256:
            size = path.stat().st_size
            msg = (
                f"Model file {path.name} in {where} has sha256 {found} ({size} bytes), not "
                f"{sha256} as recorded for the variant."
            )
            raise ModelChecksumError(msg)
        return path

    def _fetch(self, name: str, sha256: str) -> Path:
        try:
            data = self._storage.read_bytes(name)
        except FileNotFoundError:
            msg = f"Model file {name} (sha256 {sha256}) is missing from the model store {self.uri}."
            raise ModelFileUnavailableError(msg) from None
        except (OSError, pa.ArrowException) as exc:
            msg = f"The model store {self.uri} cannot be read for {name}: {_first_line(exc)}"
            raise ModelFileUnavailableError(msg.rstrip(".") + ".", store_unreachable=True) from exc
        found = hashlib.sha256(data).hexdigest()
        if found != sha256:
            msg = (
                f"Model file {name} in the model store {self.uri} has sha256 {found} "
                f"({len(data)} bytes), not {sha256} as recorded for the variant."
            )
            raise ModelChecksumError(msg)
        self._directory.mkdir(parents=True, exist_ok=True)
        fd, temp_name = tempfile.mkstemp(dir=self._directory, prefix=".fetch-", suffix=".onnx")
        temp = Path(temp_name)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            target = self._directory / name
            os.replace(temp, target)
        finally:
            temp.unlink(missing_ok=True)
        fsync_dir(self._directory)
        self._remember(target, sha256)
        log.info("fetched model %s from %s (%d bytes)", name, self.uri, len(data))
        return target
