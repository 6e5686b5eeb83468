"""The writer ids a replica's processes used, kept on the replica's own disk.

Each serving process opens a ledger, ``<directory>/<pid>-<random>.ids``, holds an
exclusive ``flock`` on it for as long as it lives, and appends (fsynced) every writer id
it hands to a :class:`lake.writer.LakeWriter` before that writer writes a byte. The lock
is the liveness test: the kernel drops it when the process dies, however it dies. So at
the next start, a ledger whose lock can be taken belongs to a dead process, and the lake
files named after its writer ids are leftovers that no live writer will ever touch again
(:func:`lake.janitor.clean_up_dead_writers`); a ledger still locked belongs to a live
process (another worker of ``serve --workers N``, or a second process on the same home)
and is left alone.

A ledger is created under a temp name, locked, then renamed into place, so another
process never sees an unlocked ledger of a live process.
"""

from __future__ import annotations

import fcntl
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Final, TextIO

from lake.layout import default_writer_id, is_valid_writer_id
from lake.storage import fsync_dir

__all__ = ["WriterLedger", "dead_writer_ids"]

_SUFFIX: Final = ".ids"


class WriterLedger:
    """This process's ledger of writer ids; see the module docstring.

    Use :meth:`open` to create one and :meth:`close` when the writers are closed.
    """

    def __init__(self, path: Path, file: TextIO) -> None:
        self._path = path
        self._file = file

    @classmethod
    def open(cls, directory: Path) -> WriterLedger:
        """Create and lock a new ledger in ``directory`` (created when missing)."""
        directory.mkdir(parents=True, exist_ok=True)
        name = f"{os.getpid()}-{secrets.token_hex(4)}"
        temp = directory / f".{name}.tmp"
        file = temp.open("x", encoding="utf-8")
        try:
            fcntl.flock(file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            path = directory / f"{name}{_SUFFIX}"
            # The lock belongs to the open file, so it survives the rename.
            temp.rename(path)
            fsync_dir(directory)
        except BaseException:
            file.close()
            temp.unlink(missing_ok=True)
            raise
        return cls(path, file)

    @property
    def path(self) -> Path:
        return self._path

    @property
    def directory(self) -> Path:
        return self._path.parent

    def new_writer_id(self) -> str:
        """A new :func:`lake.layout.default_writer_id`, on disk before it is returned."""
        writer_id = default_writer_id()
        self._file.write(writer_id + "\n")
        self._file.flush()
        os.fsync(self._file.fileno())
        return writer_id

    def close(self) -> None:
        """Release the lock; the ledger stays, and the next start cleans up after it."""
        self._file.close()


@contextmanager
def dead_writer_ids(directory: Path) -> Iterator[list[str]]:
    """The writer ids of the dead processes whose ledgers are in ``directory``.

    Their ledgers stay locked by the caller during the block (so two processes starting
    at once do not both clean up after the same one) and are deleted when the block ends
    without an exception. A missing directory has no dead processes.

    Yields
    ------
    list[str]
        Writer ids, in the order they were recorded; malformed lines are skipped.
    """
    held: list[tuple[Path, TextIO]] = []
    ids: list[str] = []
    try:
        paths = sorted(directory.glob(f"*{_SUFFIX}")) if directory.is_dir() else []
        for path in paths:
            try:
                file = path.open("r", encoding="utf-8")
            except FileNotFoundError:
                continue  # another starting process cleaned it up meanwhile
            try:
                fcntl.flock(file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                file.close()  # a live process (or a concurrent start) holds it
                continue
            if not path.exists():
                file.close()  # deleted by the process that held it just before us
                continue
            held.append((path, file))
            ids.extend(line for line in file.read().split() if is_valid_writer_id(line))
        yield ids
        for path, _ in held:
            path.unlink(missing_ok=True)
        if held:
            fsync_dir(directory)
    finally:
        for _, held_file in held:
            held_file.close()
