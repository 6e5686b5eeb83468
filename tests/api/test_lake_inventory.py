"""``GET /v1/lake``: the lake's inventory per table, behind the metrics or admin token,
with numbers that match the manifest and the files on disk."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import func, insert, select, update

from api.settings import Settings
from lake.manifest import COMPACTION_WRITER_ID, lake_compactions, lake_files
from tests.api.helpers import error_code
from tests.api.serving_support import flush, running_experiment
from tests.conftest import make_client, make_settings


def _manifest(client: TestClient, table: str) -> dict[str, Any]:
    engine = client.app.state.engine  # type: ignore[attr-defined]
    live = lake_files.c.status == "live"
    with engine.connect() as conn:
        files, rows, size = conn.execute(
            select(
                func.count(),
                func.coalesce(func.sum(lake_files.c.rows), 0),
                func.sum(lake_files.c.bytes),
            ).where(live, lake_files.c.table_name == table)
        ).one()
        paths = list(
            conn.scalars(select(lake_files.c.path).where(live, lake_files.c.table_name == table))
        )
    return {"files": files, "rows": rows, "bytes": size or 0, "paths": paths}


def test_the_lake_needs_the_metrics_or_the_admin_token(tmp_path: Path, settings: Settings) -> None:
    tokens = make_settings(
        tmp_path / "home",
        settings.database_url,
        admin_token=SecretStr("admin-token-for-lake"),
        serve_token=SecretStr("serve-token-for-lake"),
        metrics_token=SecretStr("metrics-token-for-lake"),
    )
    with make_client(tokens) as client:
        missing = client.get("/v1/lake")
        assert missing.status_code == 401 and error_code(missing) == "missing_token"
        wrong = client.get("/v1/lake", headers={"Authorization": "Bearer not-a-token"})
        assert wrong.status_code == 401 and error_code(wrong) == "invalid_token"
        serve = client.get("/v1/lake", headers={"Authorization": "Bearer serve-token-for-lake"})
        assert serve.status_code == 403 and error_code(serve) == "wrong_role"
        for token in ("metrics-token-for-lake", "admin-token-for-lake"):
            response = client.get("/v1/lake", headers={"Authorization": f"Bearer {token}"})
            assert response.status_code == 200, response.text
            assert set(response.json()["tables"]) == {"predictions", "feedback"}


def test_a_remote_caller_without_a_token_is_refused(settings: Settings) -> None:
    with make_client(settings, client=("10.0.0.7", 50000)) as client:
        response = client.get("/v1/lake")
        assert response.status_code == 403 and error_code(response) == "loopback_only"


def test_an_empty_lake_counts_nothing(client: TestClient) -> None:
    body = client.get("/v1/lake").json()
    for table in ("predictions", "feedback"):
        assert body["tables"][table] == {
            "live_files": 0,
            "small_files": 0,
            "published_files": 0,
            "replaced_files": 0,
            "rows": 0,
            "published_rows": 0,
            "bytes": 0,
            "delta_version": None,
            "last_compaction_at": None,
            "compactions": {},
        }


def test_the_numbers_match_the_manifest_after_flushes(
    client: TestClient, settings: Settings
) -> None:
    running_experiment(client, "e")
    served = []
    for round_ in range(3):
        rows = [{"features": [float(i), float(round_), 1.0]} for i in range(7)]
        answer = client.post("/v1/experiments/e/predict/batch", json={"rows": rows})
        assert answer.status_code == 200, answer.text
        served += [r["request_id"] for r in answer.json()["results"]]
        flush(client)
    items = [{"request_id": r, "reward": 1} for r in served[:5]]
    assert client.post("/v1/feedback/batch", json={"items": items}).status_code == 202
    flush(client)

    body = client.get("/v1/lake").json()["tables"]
    predictions, feedback = body["predictions"], body["feedback"]
    assert predictions["rows"] == 21 and feedback["rows"] == 5
    for table, counted in body.items():
        manifest = _manifest(client, table)
        assert counted["live_files"] == manifest["files"] > 0
        assert counted["rows"] == manifest["rows"]
        assert counted["bytes"] == manifest["bytes"]
        # The bytes are those of the files the manifest lists.
        on_disk = sum((settings.lake_root / p).stat().st_size for p in manifest["paths"])
        assert counted["bytes"] == on_disk > 0
        # Nothing is compacted yet: every live file is a small one, nothing is published.
        assert counted["small_files"] == counted["live_files"]
        assert counted["published_files"] == counted["published_rows"] == 0
        assert counted["replaced_files"] == 0
        assert counted["delta_version"] is None and counted["last_compaction_at"] is None
        assert counted["compactions"] == {}
    assert predictions["live_files"] == 3


def test_published_replaced_files_and_compactions_are_reported(client: TestClient) -> None:
    running_experiment(client, "e")
    for round_ in range(2):
        rows = [{"features": [float(i), float(round_), 1.0]} for i in range(4)]
        assert (
            client.post("/v1/experiments/e/predict/batch", json={"rows": rows}).status_code == 200
        )
        flush(client)
    engine = client.app.state.engine  # type: ignore[attr-defined]
    finished = datetime(2026, 12, 2, 2, 10, 4, tzinfo=UTC)
    # A compaction as lake.compaction records one: the two flush files replaced by one
    # published file, committed as Delta version 0; an older attempt rolled back.
    with engine.begin() as conn:
        inputs = list(
            conn.scalars(select(lake_files.c.id).where(lake_files.c.table_name == "predictions"))
        )
        output = conn.execute(
            insert(lake_files).values(
                table_name="predictions",
                path="predictions/compacted-0.parquet",
                rows=8,
                bytes=4096,
                writer_id=COMPACTION_WRITER_ID,
                status="live",
                created_at=finished,
            )
        ).inserted_primary_key[0]
        conn.execute(
            update(lake_files)
            .where(lake_files.c.id.in_(inputs))
            .values(status="replaced", replaced_at=finished, replaced_by=output)
        )
        for status, version, path in (
            ("rolled_back", None, "predictions/compacted-x.parquet"),
            ("committed", 0, "predictions/compacted-0.parquet"),
        ):
            conn.execute(
                insert(lake_compactions).values(
                    table_name="predictions",
                    output_path=path,
                    inputs=inputs,
                    rows=8,
                    status=status,
                    delta_version=version,
                    output_id=output if version is not None else None,
                    started_at=finished - timedelta(seconds=2),
                    finished_at=finished,
                )
            )
    predictions = client.get("/v1/lake").json()["tables"]["predictions"]
    assert predictions == {
        "live_files": 1,
        "small_files": 0,
        "published_files": 1,
        "replaced_files": 2,
        "rows": 8,
        "published_rows": 8,
        "bytes": 4096,
        "delta_version": 0,
        "last_compaction_at": "2026-12-02T02:10:04Z",
        "compactions": {"committed": 1, "rolled_back": 1},
    }
