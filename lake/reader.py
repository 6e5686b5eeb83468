"""Reading the lake: DuckDB views and polars LazyFrames over a manifest snapshot.

A ``Lake`` takes the list of live files from the manifest once (``refresh`` takes it
again) and passes it explicitly to ``read_parquet([...])`` or ``pl.scan_parquet([...])``.
It never globs a directory, because a compactor may be swapping files in it; the manifest
swaps them in one transaction, so a snapshot never holds a row twice or misses one.

Three relations are offered, under the same names in DuckDB and polars:

``predictions``
    Every prediction row (``PREDICTIONS_SCHEMA``), arms and shadows, ok and failed, of
    every ``mode`` (a file written before that column existed reads as ``"online"``).
``feedback``
    Every feedback row as received (``FEEDBACK_SCHEMA``), duplicates included.
``decisions``
    ``predictions`` left-joined to each request's first feedback (earliest ``ts``, ties
    broken by ``idempotency_key``), adding ``feedback_ts``, ``reward`` and ``label``. So a
    request's feedback counts once however often it was delivered, and a prediction
    without feedback (or whose feedback came after the lookback) has NULL ``reward``,
    ``label`` and ``feedback_ts``: pending, not a zero reward. A shadow row gets the
    feedback of the request it shadowed; keep ``role = 'arm'`` for bandit rewards.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from pathlib import Path
from typing import Final, Literal

import duckdb
import polars as pl
import pyarrow as pa
from duckdb import DuckDBPyConnection
from sqlalchemy import Engine, create_engine

from lake.errors import LakeConfigError
from lake.manifest import FileEntry, live_files
from lake.modes import READ_SCHEMA, duckdb_select, polars_frame
from lake.schemas import SCHEMAS, TABLES, TableName
from lake.storage import LakeStorage, open_storage

__all__ = ["VIEWS", "Lake", "ViewName", "open_lake"]

logger = logging.getLogger(__name__)

ViewName = Literal["predictions", "feedback", "decisions"]
"""Name of a relation a ``Lake`` offers."""

VIEWS: Final[tuple[ViewName, ...]] = ("predictions", "feedback", "decisions")

_FEEDBACK_COLUMNS: Final = ("feedback_ts", "reward", "label")


def _duckdb_type(type_: pa.DataType) -> str:
    if pa.types.is_string(type_):
        return "VARCHAR"
    if pa.types.is_int32(type_):
        return "INTEGER"
    if pa.types.is_int64(type_):
        return "BIGINT"
    if pa.types.is_float64(type_):
        return "DOUBLE"
    if pa.types.is_timestamp(type_) and type_.unit == "us":
        return "TIMESTAMPTZ" if type_.tz is not None else "TIMESTAMP"
    if pa.types.is_map(type_):
        return f"MAP({_duckdb_type(type_.key_type)}, {_duckdb_type(type_.item_type)})"
    if pa.types.is_list(type_):
        return f"{_duckdb_type(type_.value_type)}[]"
    msg = f"Arrow type {type_} has no DuckDB equivalent in the lake reader."
    raise LakeConfigError(msg)


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _empty_select(schema: pa.Schema) -> str:
    # Typed NULLs with no rows: the view has the real columns before any file exists.
    columns = ", ".join(
        f"CAST(NULL AS {_duckdb_type(field.type)}) AS {field.name}" for field in schema
    )
    return f"SELECT {columns} WHERE false"


def _empty_frame(schema: pa.Schema) -> pl.LazyFrame:
    frame = pl.from_arrow(schema.empty_table())
    assert isinstance(frame, pl.DataFrame)  # a Table always converts to a DataFrame
    return frame.lazy()


class Lake:
    """A read-only view of the lake through a snapshot of the manifest.

    Use ``open_lake`` to create one. Not thread-safe for ``refresh``; each ``duckdb()``
    connection is independent and may be used from its own thread.

    Parameters
    ----------
    engine
        Engine of the SQL store holding the manifest.
    root
        The lake root: a :class:`lake.storage.LakeStorage`, a directory or an
        ``s3://bucket/prefix`` URI.
    lookback
        Latest feedback counted in ``decisions``, after the prediction's ``ts``; ``None``
        counts feedback whenever it came.
    owns_engine
        Dispose of ``engine`` on ``close``.
    """

    def __init__(
        self,
        engine: Engine,
        root: LakeStorage | Path | str,
        *,
        lookback: timedelta | None = None,
        owns_engine: bool = False,
    ) -> None:
        if lookback is not None and lookback < timedelta(0):
            msg = f"The feedback lookback must not be negative, but is {lookback}."
            raise LakeConfigError(msg)
        self._engine = engine
        self._storage = open_storage(root)
        self._lookback = lookback
        self._owns_engine = owns_engine
        self._files: dict[TableName, list[FileEntry]] = {}
        self.refresh()

    @property
    def storage(self) -> LakeStorage:
        """Where the lake's files are."""
        return self._storage

    @property
    def uri(self) -> str:
        """The lake root: a directory or ``s3://bucket/prefix``."""
        return self._storage.uri

    @property
    def engine(self) -> Engine:
        """Engine of the SQL store holding the manifest."""
        return self._engine

    def refresh(self) -> None:
        """Take a new snapshot of the manifest's live files.

        Connections and frames created before keep reading the old snapshot.

        Listed files that are missing in storage (possible only after a manifest commit
        whose acknowledgement was lost) are left out with a warning, so one lost file
        does not make the whole lake unreadable. A local lake checks each file; on
        object storage that would cost a request per file, so a missing object shows as
        a read error instead.
        """
        snapshot: dict[TableName, list[FileEntry]] = {}
        for table in TABLES:
            present = []
            for entry in live_files(self._engine, table):
                if not self._storage.is_local or self._storage.exists(entry.path):
                    present.append(entry)
                else:
                    logger.warning("Lake file %s is in the manifest but not on disk.", entry.path)
            snapshot[table] = present
        self._files = snapshot

    def files(self, table: TableName) -> list[FileEntry]:
        """Return the live files of ``table`` in the current snapshot, in id order.

        Parameters
        ----------
        table
            ``"predictions"`` or ``"feedback"``.

        Returns
        -------
        list[FileEntry]
        """
        return list(self._files[self._check_table(table)])

    def paths(self, table: TableName) -> list[str]:
        """Return the addresses of the live files of ``table``, in id order.

        Absolute local paths, or ``s3://`` URLs on object storage: for other engines
        (Spark, Trino, pyarrow.dataset) that read the same files.

        Parameters
        ----------
        table
            ``"predictions"`` or ``"feedback"``.

        Returns
        -------
        list[str]
        """
        return [self._storage.url(entry.path) for entry in self.files(table)]

    def duckdb(self) -> duckdb.DuckDBPyConnection:
        """Return a new in-memory DuckDB connection with the lake's views.

        The connection is in-memory, so no ``.duckdb`` file is ever shared between
        processes; its session time zone is UTC. Close it when done.

        Returns
        -------
        duckdb.DuckDBPyConnection
            With the views ``predictions``, ``feedback`` and ``decisions``; they exist,
            empty and with the right columns, even before any file is written.
            ``features`` is a ``MAP(VARCHAR, DOUBLE)``: ``features['x']`` is NULL where
            ``x`` is absent.

        Examples
        --------
        >>> con = lake.duckdb()  # doctest: +SKIP
        >>> con.sql("SELECT variant, avg(reward) FROM decisions GROUP BY ALL").fetchall()
        """
        con = duckdb.connect(":memory:")
        try:
            con.execute("SET TimeZone = 'UTC'")
            for table in TABLES:
                con.execute(f"CREATE VIEW {table} AS {self._source_sql(con, table)}")
            con.execute(f"CREATE VIEW decisions AS {self._decisions_sql()}")
        except BaseException:
            con.close()
            raise
        return con

    def scan(self, table: ViewName) -> pl.LazyFrame:
        """Return a polars LazyFrame of ``predictions``, ``feedback`` or ``decisions``.

        Parameters
        ----------
        table
            Relation name; ``decisions`` is computed exactly as the DuckDB view.

        Returns
        -------
        pl.LazyFrame
            Same columns as the DuckDB view; ``features`` is a polars ``Map``, read by
            name with ``pl.col("features").map.get("x")``.

        Raises
        ------
        LakeConfigError
            When ``table`` is not one of the three names.
        """
        if table == "decisions":
            return self._decisions_frame()
        if table not in VIEWS:
            msg = f"Relation {table!r} is not in the lake; expected one of {list(VIEWS)}."
            raise LakeConfigError(msg)
        name = self._check_table(table)
        files = self.files(name)
        if not files:
            return _empty_frame(SCHEMAS[name])
        paths = [entry.path for entry in files]
        if name == "predictions":
            return polars_frame(self._storage.scan_polars(paths, schema=READ_SCHEMA))
        return self._storage.scan_polars(paths)

    def close(self) -> None:
        """Dispose of the engine if the lake created it."""
        if self._owns_engine:
            self._engine.dispose()

    def __enter__(self) -> Lake:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _check_table(self, table: str) -> TableName:
        for name in TABLES:
            if table == name:
                return name
        msg = f"Table {table!r} is not in the lake; expected one of {list(TABLES)}."
        raise LakeConfigError(msg)

    def _source_sql(self, con: DuckDBPyConnection, table: TableName) -> str:
        files = self.files(table)
        if not files:
            return _empty_select(SCHEMAS[table])
        paths = [entry.path for entry in files]
        if table == "predictions":
            source = self._storage.duckdb_source(con, paths, schema=READ_SCHEMA)
            return duckdb_select(source, _empty_select(SCHEMAS[table]))
        source = self._storage.duckdb_source(con, paths)
        return f"SELECT * FROM {source}"

    def _decisions_sql(self) -> str:
        within = ""
        if self._lookback is not None:
            micros = self._lookback // timedelta(microseconds=1)
            within = f" AND f.ts <= p.ts + INTERVAL '{micros} microseconds'"
        return (
            "SELECT p.*, f.ts AS feedback_ts, f.reward, f.label "
            "FROM predictions AS p LEFT JOIN ("
            "SELECT request_id, ts, reward, label FROM feedback "
            "QUALIFY row_number() OVER (PARTITION BY request_id ORDER BY ts, idempotency_key) = 1"
            f") AS f ON f.request_id = p.request_id{within}"
        )

    def _decisions_frame(self) -> pl.LazyFrame:
        first_feedback = (
            self.scan("feedback")
            .group_by("request_id")
            .agg(
                pl.col("ts", "reward", "label").sort_by("ts", "idempotency_key").first(),
            )
            .rename({"ts": "feedback_ts"})
        )
        decisions = self.scan("predictions").join(first_feedback, on="request_id", how="left")
        if self._lookback is not None:
            counted = pl.col("feedback_ts") <= pl.col("ts") + self._lookback
            decisions = decisions.with_columns(
                pl.when(counted).then(pl.col(name)).otherwise(None).alias(name)
                for name in _FEEDBACK_COLUMNS
            )
        return decisions


def open_lake(
    database: str | Engine,
    lake_root: LakeStorage | Path | str,
    *,
    lookback: timedelta | None = None,
) -> Lake:
    """Open the lake for reading.

    Parameters
    ----------
    database
        The SQL store holding the manifest: a SQLAlchemy URL (the lake then owns the
        engine it creates and disposes of it on ``close``) or an existing engine.
    lake_root
        The lake root: a directory, an ``s3://bucket/prefix`` URI (reached with the
        standard ``AWS_*`` variables) or a :class:`lake.storage.LakeStorage`.
    lookback
        Latest feedback counted in ``decisions``, after the prediction's ``ts``;
        ``None`` (default) counts feedback whenever it came.

    Returns
    -------
    Lake
        Holding a snapshot of the manifest taken now.

    Examples
    --------
    >>> with open_lake("sqlite:///var/banditlake.db", "var/lake") as lake:  # doctest: +SKIP
    ...     rewards = lake.scan("decisions").filter(pl.col("role") == "arm").collect()
    """
    if isinstance(database, Engine):
        return Lake(database, lake_root, lookback=lookback)
    engine = create_engine(database)
    try:
        return Lake(engine, lake_root, lookback=lookback, owns_engine=True)
    except BaseException:
        engine.dispose()
        raise
