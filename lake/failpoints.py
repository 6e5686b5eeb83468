"""Named points on the write path where a test can have the process killed.

The crash tests (``tests/api/test_crash_recovery.py``) start ``banditlake serve`` with
``BANDITLAKE_FAILPOINTS=name[@n],...``; the ``n``-th time (default: the first) the
process reaches ``failpoint(name)`` it sends itself SIGKILL, exactly as a crash there
would leave things. With ``BANDITLAKE_FAILPOINTS_MARK=path`` it first writes that file
(whole, by rename), so a test knows the point was reached even in a child process (the
reallocator). With ``BANDITLAKE_FAILPOINTS`` unset (always, in production) a failpoint
is one test of an empty dict.

Points: ``log.before_fsync`` (a durable-log batch written, not yet fsynced),
``log.before_release`` (rows published, their log segments not yet deleted),
``publish.after_file`` (a Parquet file in place, not yet in the manifest),
``publish.after_register`` (the manifest row committed), ``compaction.after_files``,
``compaction.after_delta`` and ``compaction.after_recorded`` (compacted files written,
the Delta commit made, its version recorded; none of it yet live in the manifest).
"""

from __future__ import annotations

import os
import signal
import threading
from functools import cache
from typing import Final

__all__ = ["failpoint"]


def _parse(spec: str) -> dict[str, int]:
    armed: dict[str, int] = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        name, _, nth = item.partition("@")
        armed[name] = int(nth) if nth.isdigit() and int(nth) > 0 else 1
    return armed


_HITS: dict[str, int] = {}
_LOCK: Final = threading.Lock()


@cache
def _armed() -> dict[str, int]:
    # Read at the first failpoint, not at import: a process forked after the import
    # (the crash tests' fork server) sees its own environment.
    return _parse(os.environ.get("BANDITLAKE_FAILPOINTS", ""))


def failpoint(name: str) -> None:
    """Kill this process with SIGKILL if ``name`` is armed and this is its chosen hit."""
    armed = _armed()
    if not armed or name not in armed:
        return
    with _LOCK:
        _HITS[name] = _HITS.get(name, 0) + 1
        if _HITS[name] >= armed[name]:
            mark = os.environ.get("BANDITLAKE_FAILPOINTS_MARK")
            if mark:
                # Written aside and renamed into place: a test that sees the mark exist
                # reads it whole (an open-then-write was once read empty in between).
                partial = f"{mark}.{os.getpid()}.tmp"
                with open(partial, "w") as file:
                    file.write(f"{name} {os.getpid()}\n")
                os.replace(partial, mark)
            os.kill(os.getpid(), signal.SIGKILL)
