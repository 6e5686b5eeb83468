"""Removing what a crashed writer leaves behind.

A writer that dies between creating its temp file and moving it into place leaves a
``.tmp-`` file in a partition directory (a local lake only: an object-storage upload
appears whole or not at all, but a start-up probe of the store that died half-way may
leave its ``.tmp-probe-`` object). Such files are never listed in the manifest, so
readers never see them; the janitor only reclaims their space.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath

import pyarrow as pa

from lake.layout import TEMP_PREFIX
from lake.storage import LakeStorage, open_storage

__all__ = ["janitor"]

logger = logging.getLogger(__name__)


def janitor(root: LakeStorage | Path | str, older_than_s: float = 3600.0) -> list[str]:
    """Delete temp files under the lake root that were last modified long enough ago.

    Parameters
    ----------
    root
        The lake root (a storage, a directory or an ``s3://`` URI); a missing root has
        nothing to clean.
    older_than_s
        Only files whose modification time is at least this many seconds old are
        removed. Keep it well above the longest flush, so a temp file that a live writer
        is still writing is never touched.

    Returns
    -------
    list[str]
        The files removed, relative to the lake root.
    """
    storage = open_storage(root)
    cutoff = datetime.now(UTC).timestamp() - older_than_s
    removed: list[str] = []
    for stored in storage.list_files():
        if not PurePosixPath(stored.path).name.startswith(TEMP_PREFIX):
            continue
        if stored.mtime is not None and stored.mtime.timestamp() > cutoff:
            continue
        try:
            if storage.delete(stored.path):
                removed.append(stored.path)
        except (OSError, pa.ArrowException) as exc:
            logger.warning("Janitor could not remove %s: %s", stored.path, exc)
    if removed:
        logger.info("Janitor removed %d stale temp files under %s.", len(removed), storage.uri)
    return removed
