"""Helpers for the serving tests: a running experiment and lake read-back."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from api.settings import Settings
from lake.reader import open_lake
from tests.api.helpers import create_experiment, start, upload
from tests.onnx_models import linear_model

W_A = [1.0, 2.0, 3.0]
W_B = [-1.0, 0.5, 2.0]


def running_experiment(
    client: TestClient,
    name: str = "e",
    *,
    weights: dict[str, float] | None = None,
    shadow: bytes | None = None,
    **body: Any,
) -> None:
    create_experiment(client, name, **body)
    upload(client, name, "a", linear_model(W_A, 0.5))
    upload(client, name, "b", linear_model(W_B, -0.5))
    if shadow is not None:
        upload(client, name, "sh", shadow, role="shadow")
    start(client, name)
    if weights is not None:
        response = client.put(f"/v1/experiments/{name}/allocation", json={"weights": weights})
        assert response.status_code == 200, response.text


def flush(client: TestClient) -> None:
    """Wait for shadow calls in flight, then write every buffered row to the lake."""
    service = client.app.state.serving  # type: ignore[attr-defined]
    assert client.portal is not None
    client.portal.call(service.drain)
    service.predictions.flush()
    service.feedback_writer.flush()


def lake_rows(settings: Settings, sql: str) -> list[tuple[Any, ...]]:
    with open_lake(settings.database_url, settings.lake_root) as lake:
        return list(lake.duckdb().execute(sql).fetchall())
