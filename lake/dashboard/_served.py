"""The rows served online or by the stream consumer, over files with or without ``mode``.

Prediction drift and data quality look at the traffic the service answered as it came:
batch scoring (``banditlake score``) runs whole tables through the variants, a different
population, so its rows are left out. Files written before the ``mode`` column existed
hold online rows only; DuckDB's ``union_by_name`` fills the column with NULL for them, and
a typed empty row unioned by name supplies it when no file of the list has it at all.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from lake.dashboard._files import quote
from lake.manifest import FileEntry
from lake.reader import Lake

__all__ = ["SERVED_MODES", "served"]

SERVED_MODES: Final = ("online", "stream")
"""The ``mode`` values drift and quality read; a missing ``mode`` reads as ``"online"``."""


# The columns drift and quality read, with their DuckDB types, for an empty file list.
_TYPES: Final = {
    "experiment": "VARCHAR",
    "variant": "VARCHAR",
    "role": "VARCHAR",
    "ts": "TIMESTAMPTZ",
    "status": "VARCHAR",
    "prediction": "DOUBLE",
    "features": "MAP(VARCHAR, DOUBLE)",
}


def served(lake: Lake, files: Sequence[FileEntry], columns: Sequence[str]) -> str:
    """A ``FROM`` item over ``files``: ``columns`` of the online and stream rows.

    ``files`` come from the manifest and ``columns`` from this package, never from a
    request; both are quoted into the SQL text.
    """
    if not files:
        typed = ", ".join(f"CAST(NULL AS {_TYPES[c]}) AS {c}" for c in columns)
        return f"(SELECT {typed} WHERE false)"
    listed = ", ".join(quote(lake.storage.url(f.path)) for f in files)
    wanted = ", ".join(quote(c) for c in (*columns, "mode"))
    modes = ", ".join(quote(m) for m in SERVED_MODES)
    return (
        "(SELECT * EXCLUDE (mode) FROM ("
        "(SELECT CAST(NULL AS VARCHAR) AS mode WHERE false) UNION ALL BY NAME "
        f"(SELECT COLUMNS(lambda c: c IN ({wanted})) FROM read_parquet([{listed}], "
        "hive_partitioning = false, union_by_name = true))"
        f") WHERE coalesce(mode, 'online') IN ({modes}))"
    )
