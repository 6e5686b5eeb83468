"""Removing what a crashed writer leaves behind.

A writer that dies between creating its temp file and renaming it leaves a ``.tmp-`` file
in a partition directory. Such files are never listed in the manifest, so readers never
see them; the janitor only reclaims their space.
"""

from __future__ import annotations

import logging
import os
from datetime import UTC, datetime
from pathlib import Path

from lake.layout import TEMP_PREFIX

__all__ = ["janitor"]

logger = logging.getLogger(__name__)


def janitor(root: Path | str, older_than_s: float = 3600.0) -> list[Path]:
    """Delete temp files under the lake root that were last modified long enough ago.

    Parameters
    ----------
    root
        Lake root directory; a missing root has nothing to clean.
    older_than_s
        Only files whose modification time is at least this many seconds old are
        removed. Keep it well above the longest flush, so a temp file that a live writer
        is still writing is never touched.

    Returns
    -------
    list[Path]
        The files removed.
    """
    cutoff = datetime.now(UTC).timestamp() - older_than_s
    removed: list[Path] = []
    for directory, _dirs, files in os.walk(root):
        for name in files:
            if not name.startswith(TEMP_PREFIX):
                continue
            path = Path(directory, name)
            try:
                if path.stat().st_mtime > cutoff:
                    continue
                path.unlink()
            except FileNotFoundError:
                # Renamed or removed by its writer meanwhile: nothing to do.
                continue
            except OSError as exc:
                logger.warning("Janitor could not remove %s: %s", path, exc)
                continue
            removed.append(path)
    if removed:
        logger.info("Janitor removed %d stale temp files under %s.", len(removed), root)
    return removed
