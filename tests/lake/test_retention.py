"""Retention: an experiment's rows older than its cutoff leave the manifest's live files,
the Delta tables (one commit of Remove and Add actions) and, after the grace period,
storage; every other row stays visible exactly once, through a crash at any step; on a
local directory and on S3 (moto), SQLite and PostgreSQL; and ``banditlake compact``
applies the store's retention."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from deltalake import DeltaTable
from sqlalchemy import Engine, create_engine, insert, select, update

from api.control.experiments import retention_cutoffs_of_store
from api.store.migrate import upgrade
from api.store.models import Experiment
from lake.compaction import compact, delta_storage_options, delta_uri, recover
from lake.errors import LakeConfigError
from lake.manifest import COMPACTION_WRITER_ID, lake_compactions, lake_files, live_files
from lake.reader import open_lake
from lake.retention import apply_retention, retention_cutoffs
from lake.storage import LakeStorage
from lake.writer import LakeWriter
from tests.lake.compaction_support import (  # noqa: F401
    assert_delta_matches_manifest,
    compacted_ids,
    compaction_statuses,
    delta_ids,
    engine_fixture,
    storage_fixture,
)
from tests.lake.lake_support import feedback, prediction
from tests.s3_server import s3_server  # noqa: F401

NOW = timedelta(0)
HOUR = timedelta(hours=1)
DAY0 = datetime(2025, 3, 1, tzinfo=UTC)
ALPHA, BETA, GAMMA = ("alpha", 1), ("beta", 2), ("gamma", 11)
# alpha's rows of days 0-2 expire; beta and gamma keep everything.
CUTOFF = DAY0 + timedelta(days=3)
CUTOFFS = {ALPHA[0]: (ALPHA[1], CUTOFF)}
TABLES = ("predictions", "feedback")

Row = tuple[str, datetime, str]  # request_id, ts, experiment ("" for feedback)


class Crash(BaseException):
    """A process dying at a step: not an Exception, so no in-process cleanup runs."""


def _rows(experiment: tuple[str, int], day: int, tag: str, n: int = 6) -> list[Any]:
    """``n`` predictions of one experiment on one day, 3 hours apart, and feedback for
    every other one (a minute later); request ids ``<experiment id>.<tag>-<i>``."""
    name, eid = experiment
    out: list[Any] = []
    for i in range(n):
        rid = f"{eid}.{tag}-{i}"
        ts = DAY0 + timedelta(days=day, hours=3 * i)
        out.append(
            prediction(rid, ts=ts, variant="ab"[i % 2], prediction=float(i))._replace(
                experiment=name
            )
        )
        if i % 2 == 0:
            out.append(feedback(rid, ts=ts + timedelta(minutes=1), reward=float(i % 3)))
    return out


def _write(storage: LakeStorage, engine: Engine, *groups: Iterable[Any]) -> None:
    """One flush file per group and table (a table without rows in a group gets none)."""
    preds = LakeWriter(storage, engine, table="predictions", flush_interval_s=3600)
    fbs = LakeWriter(storage, engine, table="feedback", flush_interval_s=3600)
    try:
        for group in groups:
            for row in group:
                (preds if hasattr(row, "experiment") else fbs).append(row)
            preds.flush()
            fbs.flush()
    finally:
        preds.close()
        fbs.close()


def _lake(storage: LakeStorage, engine: Engine) -> None:
    """Two experiments over six days: days 0-3 compacted (one published file per date,
    both experiments in each), days 4-5 flush files, plus a late flush file mixing
    expired alpha rows with kept beta rows, and old feedback of gamma (id 11, whose
    request ids start like alpha's id 1) and of no experiment."""
    _write(storage, engine, *[_rows(ALPHA, d, f"d{d}") + _rows(BETA, d, f"d{d}") for d in range(4)])
    compact(engine, storage, min_age=NOW, grace=HOUR)
    _write(
        storage,
        engine,
        *[_rows(ALPHA, d, f"d{d}") + _rows(BETA, d, f"d{d}") for d in (4, 5)],
        _rows(ALPHA, 1, "late") + _rows(BETA, 5, "late") + _rows(GAMMA, 0, "old"),
        [feedback("r-none", ts=DAY0)],
    )


def _snapshot(engine: Engine, storage: LakeStorage) -> dict[str, list[Row]]:
    """Every row ``open_lake`` reads, sorted, duplicates kept."""
    with open_lake(engine, storage) as lake:
        con = lake.duckdb()
        try:
            preds = con.sql("SELECT request_id, ts, experiment FROM predictions").fetchall()
            fbs = con.sql("SELECT request_id, ts, '' FROM feedback").fetchall()
        finally:
            con.close()
    norm = [
        [(r, t if t.tzinfo else t.replace(tzinfo=UTC), e) for r, t, e in rows]
        for rows in (preds, fbs)
    ]
    return {"predictions": sorted(norm[0]), "feedback": sorted(norm[1])}


def _expected(before: dict[str, list[Row]]) -> dict[str, list[Row]]:
    """The rows kept, computed independently: predictions by experiment name, feedback
    by request-id prefix."""
    name, eid = ALPHA
    return {
        "predictions": [r for r in before["predictions"] if not (r[2] == name and r[1] < CUTOFF)],
        "feedback": [
            r for r in before["feedback"] if not (r[0].startswith(f"{eid}.") and r[1] < CUTOFF)
        ],
    }


def _assert_delta_is_published(engine: Engine, storage: LakeStorage) -> None:
    for table in TABLES:
        assert delta_ids(storage, table) == compacted_ids(engine, storage, table)


def _replaced(engine: Engine) -> list[tuple[str, str, int | None]]:
    with engine.connect() as conn:
        return [
            (str(p), str(w), b)
            for p, w, b in conn.execute(
                select(lake_files.c.path, lake_files.c.writer_id, lake_files.c.replaced_by).where(
                    lake_files.c.status == "replaced"
                )
            )
        ]


def _log_actions(storage: LakeStorage, table: str, version: int) -> dict[str, set[str]]:
    text = storage.read_bytes(f"delta/{table}/_delta_log/{version:020d}.json").decode()
    out: dict[str, set[str]] = {"add": set(), "remove": set()}
    for line in text.splitlines():
        action = json.loads(line)
        for kind in out:
            if kind in action:
                out[kind].add(f"delta/{table}/{action[kind]['path']}")
    return out


def test_retention_drops_expired_rows_everywhere_and_nothing_else(
    engine: Engine, storage: LakeStorage
) -> None:
    _lake(storage, engine)
    before = _snapshot(engine, storage)
    expected = _expected(before)
    dropped = {t: len(before[t]) - len(expected[t]) for t in TABLES}
    assert dropped["predictions"] == 6 * 3 + 6 and dropped["feedback"] == 3 * 3 + 3
    published_before = {
        t: {e.path for e in live_files(engine, t) if e.writer_id == COMPACTION_WRITER_ID}
        for t in TABLES
    }
    versions_before = {t: _latest_version(storage, t) for t in TABLES}

    summary = apply_retention(engine, storage, CUTOFFS, grace=HOUR)

    assert _snapshot(engine, storage) == expected
    assert summary.rows_dropped == dropped
    # Days 0-2 published files and the late flush file, per table.
    assert summary.files_rewritten == 2 * 4 and summary.rewrites == 2
    rewrites = [
        e
        for t in TABLES
        for e in live_files(engine, t)
        if e.writer_id == COMPACTION_WRITER_ID and e.path not in published_before[t]
    ]
    assert summary.files_out == len(rewrites) > 0
    assert summary.rows_kept == sum(e.rows for e in rewrites) > 0
    assert summary.cutoffs == {"alpha": CUTOFF.isoformat()}
    _assert_delta_is_published(engine, storage)
    for table in TABLES:
        # One Delta commit removed the rewritten published files and added their rewrites.
        version = summary.delta_versions[table]
        assert version == versions_before[table] + 1
        actions = _log_actions(storage, table, version)
        rewritten = {p for p, w, _b in _replaced(engine) if w == COMPACTION_WRITER_ID}
        assert actions["remove"] == {p for p in rewritten if p.startswith(f"delta/{table}/")}
        assert actions["remove"] < published_before[table]
        live = {e.path for e in live_files(engine, table)}
        assert actions["add"] and actions["add"] <= live
        assert not actions["add"] & published_before[table]
    # Grace: the rewritten files are still there for readers of older snapshots.
    assert all(storage.exists(p) for p, _w, _b in _replaced(engine))

    # A second run has nothing to do; with no grace left, it deletes the replaced files.
    again = apply_retention(engine, storage, CUTOFFS, grace=NOW)
    assert (again.rewrites, again.files_rewritten, again.rows_dropped) == (
        0,
        0,
        {"predictions": 0, "feedback": 0},
    )
    assert again.delta_versions == {"predictions": None, "feedback": None}
    assert again.replaced_deleted == len(_replaced(engine)) > 0
    assert not any(storage.exists(p) for p, _w, _b in _replaced(engine))
    assert _snapshot(engine, storage) == expected
    assert_delta_matches_manifest(engine, storage)
    assert set(compaction_statuses(engine)) == {"committed"}

    # Later compaction and retention leave the kept rows as they are.
    compact(engine, storage, min_age=NOW, grace=NOW)
    apply_retention(engine, storage, CUTOFFS, grace=NOW)
    assert _snapshot(engine, storage) == expected
    assert_delta_matches_manifest(engine, storage)


def _latest_version(storage: LakeStorage, table: str) -> int:
    return int(
        DeltaTable(
            delta_uri(storage, table), storage_options=delta_storage_options(storage)
        ).version()
    )


@pytest.mark.parametrize("step", ["intent", "files", "delta", "recorded", "switch"])
def test_crash_at_each_step_is_recovered(engine: Engine, storage: LakeStorage, step: str) -> None:
    _lake(storage, engine)
    before = _snapshot(engine, storage)
    expected = _expected(before)

    def crash(name: str) -> None:
        if name == step:
            raise Crash(name)

    with pytest.raises(Crash):
        apply_retention(engine, storage, CUTOFFS, grace=HOUR, after_step=crash)
    # The manifest's readers see every row once: all of them until the switch (the
    # predictions are rewritten first; the crash stops the run before the feedback).
    seen = _snapshot(engine, storage)
    assert seen["predictions"] == (expected if step == "switch" else before)["predictions"]
    assert seen["feedback"] == before["feedback"]
    statuses = compaction_statuses(engine)
    assert "started" in statuses or step == "switch"

    # A run that does not take the unfinished rewrite for abandoned leaves it alone.
    fresh = apply_retention(engine, storage, {}, grace=HOUR)
    assert (fresh.recovered_committed, fresh.recovered_rolled_back) == (0, 0)
    assert compaction_statuses(engine) == statuses

    summary = apply_retention(engine, storage, CUTOFFS, grace=HOUR, recover_after=NOW)
    assert _snapshot(engine, storage) == expected
    _assert_delta_is_published(engine, storage)
    assert not {"started", "rolling_back"} & set(compaction_statuses(engine))
    if step in ("delta", "recorded"):
        # The Delta commit happened: the switch was completed, not redone.
        assert (summary.recovered_committed, summary.recovered_rolled_back) == (1, 0)
    elif step in ("intent", "files"):
        assert (summary.recovered_committed, summary.recovered_rolled_back) == (0, 1)
    # Either way the predictions are done once: the feedback by this run when the crash
    # came before it.
    assert summary.rows_dropped["predictions"] == (6 * 3 + 6 if step in ("intent", "files") else 0)
    final = apply_retention(engine, storage, CUTOFFS, grace=NOW)
    assert final.rewrites == 0
    assert_delta_matches_manifest(engine, storage)


@pytest.mark.parametrize("how", ["rolling_back", "input_gone"])
def test_rolling_back_a_delta_delete_adds_the_published_files_back(
    engine: Engine, storage: LakeStorage, how: str
) -> None:
    _lake(storage, engine)
    before = _snapshot(engine, storage)
    published = {t: compacted_ids(engine, storage, t) for t in TABLES}

    def crash(name: str) -> None:
        if name == "delta":
            raise Crash(name)

    with pytest.raises(Crash):
        apply_retention(
            engine, storage, CUTOFFS, grace=HOUR, after_step=crash, tables=["predictions"]
        )
    # Delta has the rewrite already, the manifest not yet.
    assert delta_ids(storage, "predictions") != published["predictions"]
    assert "1.d0-0" not in delta_ids(storage, "predictions")
    flush_input = next(
        e for e in live_files(engine, "predictions") if "late" in _ids_of(storage, e)
    )
    if how == "rolling_back":
        # A rollback that died before its Delta commit.
        with engine.begin() as conn:
            conn.execute(
                update(lake_compactions)
                .where(lake_compactions.c.status == "started")
                .values(status="rolling_back")
            )
    else:
        # One input is no longer live (as if replaced meanwhile): the switch cannot happen.
        with engine.begin() as conn:
            conn.execute(
                update(lake_files).where(lake_files.c.id == flush_input.id).values(status="x")
            )

    assert recover(engine, storage, older_than=NOW) == (0, 1)
    # The removed published files are back in Delta, the rewritten ones gone everywhere.
    assert delta_ids(storage, "predictions") == published["predictions"]
    assert_delta_matches_manifest(engine, storage)
    assert set(compaction_statuses(engine)) == {"committed", "rolled_back"}
    if how == "rolling_back":
        assert _snapshot(engine, storage) == before
        # The next run drops the rows after all.
        apply_retention(engine, storage, CUTOFFS, grace=NOW)
        assert _snapshot(engine, storage) == _expected(before)
        assert_delta_matches_manifest(engine, storage)


def _ids_of(storage: LakeStorage, entry: Any) -> str:
    return " ".join(
        storage.read_table(entry.path, columns=["request_id"])["request_id"].to_pylist()
    )


@pytest.mark.parametrize("step", [None, "intent", "delta"])
def test_a_rewrite_that_keeps_nothing_only_removes(
    engine: Engine, storage: LakeStorage, step: str | None
) -> None:
    """Every affected file holds only expired rows: no output, the Delta commit only
    removes, the switch only replaces (by nothing)."""
    _write(storage, engine, _rows(ALPHA, 0, "d0"), _rows(ALPHA, 1, "d1"))
    compact(engine, storage, min_age=NOW, grace=HOUR)
    _write(storage, engine, _rows(ALPHA, 2, "d2"), _rows(BETA, 5, "d5"))
    before = _snapshot(engine, storage)
    expected = _expected(before)
    assert expected["predictions"] == [r for r in before["predictions"] if r[2] == "beta"]

    def crash(name: str) -> None:
        if name == step:
            raise Crash(name)

    if step is not None:
        with pytest.raises(Crash):
            apply_retention(engine, storage, CUTOFFS, grace=HOUR, after_step=crash)
        assert _snapshot(engine, storage) == before
    summary = apply_retention(engine, storage, CUTOFFS, grace=HOUR, recover_after=NOW)

    assert _snapshot(engine, storage) == expected
    for table in TABLES:
        assert delta_ids(storage, table) == []
        assert compacted_ids(engine, storage, table) == []
    replaced = _replaced(engine)
    # Inputs replaced by nothing: no replaced_by (lake.manifest.files_as_of's contract).
    nothing = [p for p, _w, by in replaced if by is None]
    assert len(nothing) == 2 * 3  # per table: the two published files and the d2 flush file
    if step is None:
        assert summary.files_out == 0 and summary.rewrites == 2
    with engine.connect() as conn:
        paths = [p for (p,) in conn.execute(select(lake_compactions.c.output_path))]
    assert all(not storage.exists(p) for p in paths if "_no_output" in p)
    apply_retention(engine, storage, CUTOFFS, grace=NOW)
    assert not any(storage.exists(p) for p, _w, _b in _replaced(engine))
    assert_delta_matches_manifest(engine, storage)
    assert not {"started", "rolling_back"} & set(compaction_statuses(engine))


def test_cutoffs_from_retention_days() -> None:
    now = datetime(2025, 3, 10, 12, tzinfo=UTC)
    cutoffs = retention_cutoffs({"a": (1, 7), "b": (2, None)}, now)
    assert cutoffs == {"a": (1, datetime(2025, 3, 3, 12, tzinfo=UTC))}
    with pytest.raises(LakeConfigError):
        retention_cutoffs({"a": (1, 0)}, now)
    with pytest.raises(LakeConfigError):
        retention_cutoffs({"a": (1, 7)}, now.replace(tzinfo=None))


def test_naive_cutoff_is_refused(engine: Engine, storage: LakeStorage) -> None:
    with pytest.raises(LakeConfigError, match="timezone-aware"):
        apply_retention(engine, storage, {"a": (1, datetime(2025, 3, 1))}, grace=HOUR)


CLI = str(Path(sys.executable).with_name("banditlake"))


def _experiment(name: str, eid: int, status: str, days: int | None) -> dict[str, Any]:
    return {
        "id": eid,
        "name": name,
        "reward_kind": "binary",
        "policy": {"kind": "thompson"},
        "guardrails": {},
        "status": status,
        "retention_days": days,
    }


def test_compact_command_applies_the_stores_retention(tmp_path: Path, database_url: str) -> None:
    upgrade(database_url)
    engine = create_engine(database_url)
    with engine.begin() as conn:
        conn.execute(
            insert(Experiment),
            [
                _experiment("alpha", 1, "running", 5),
                _experiment("beta", 2, "stopped", None),
                _experiment("gamma", 11, "draft", 1),  # never served: not enforced
            ],
        )
    now = datetime.now(UTC)
    assert set(retention_cutoffs_of_store(engine, now)) == {"alpha"}
    lake = tmp_path / "lake"
    old, recent = now - timedelta(days=10), now - timedelta(days=1)
    writer = LakeWriter(lake, engine, table="predictions", flush_interval_s=3600)
    fbs = LakeWriter(lake, engine, table="feedback", flush_interval_s=3600)
    for name, eid in (ALPHA, BETA, GAMMA):
        for tag, ts in (("old", old), ("new", recent)):
            for i in range(4):
                rid = f"{eid}.{tag}-{i}"
                writer.append(prediction(rid, ts=ts)._replace(experiment=name))
                fbs.append(feedback(rid, ts=ts))
    writer.close()
    fbs.close()
    env = {
        **os.environ,
        "BANDITLAKE_HOME": str(tmp_path),
        "BANDITLAKE_DATABASE_URL": database_url,
        "BANDITLAKE_LAKE_URI": str(lake),
    }
    result = subprocess.run(
        [CLI, "compact", "--min-age", "0", "--grace", "0", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    body = json.loads(result.stdout)
    retention = body["retention"]
    assert retention["rows_dropped"] == {"predictions": 4, "feedback": 4}
    assert retention["files_rewritten"] == 2 and list(retention["cutoffs"]) == ["alpha"]
    # The one flush file of each table was rewritten: compaction found none left.
    assert body["files_in"] == 0
    assert all(e.writer_id == COMPACTION_WRITER_ID for t in TABLES for e in live_files(engine, t))
    with open_lake(engine, lake) as reader:
        con = reader.duckdb()
        ids = sorted(r for (r,) in con.sql("SELECT request_id FROM predictions").fetchall())
        fb = sorted(r for (r,) in con.sql("SELECT request_id FROM feedback").fetchall())
        con.close()
    kept = sorted(
        f"{eid}.{tag}-{i}"
        for _n, eid in (ALPHA, BETA, GAMMA)
        for tag in ("old", "new")
        for i in range(4)
        if not (eid == 1 and tag == "old")
    )
    assert ids == kept and fb == kept

    # The text summary names what retention did.
    text = subprocess.run(
        [CLI, "compact", "--min-age", "0", "--grace", "0"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert text.returncode == 0, text.stderr
    assert text.stdout.startswith("retention: 1 experiments, rewrote 0 files")
    engine.dispose()
