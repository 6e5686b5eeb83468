"""The one mapping from domain errors to HTTP: lake errors are answered, never a 500."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from api.routes.dashboard import get_lake
from lake.errors import (
    LakeConfigError,
    LakeError,
    LakeReadError,
    LakeWriteError,
    RowConversionError,
)
from tests.api.helpers import create_experiment, error_code
from tests.api.serving_support import flush, running_experiment


class _BrokenLake:
    """Stands in for the lake a dashboard panel reads: opening it raises ``error``."""

    def __init__(self, error: LakeError) -> None:
        self.error = error

    def __call__(self) -> Iterator[None]:
        raise self.error
        yield


@pytest.mark.parametrize(
    ("error", "status", "code"),
    [
        (LakeWriteError("The lake directory /x is not writable."), 503, "lake_unavailable"),
        (LakeReadError("Lake file /x/p.parquet is missing."), 503, "lake_unavailable"),
        (LakeError("The lake failed."), 503, "lake_unavailable"),
        (LakeConfigError("A time series needs at least 1 hour."), 422, "invalid_request"),
        (RowConversionError("Row 3 does not fit the predictions schema."), 422, "invalid_request"),
    ],
)
def test_a_lake_error_surfacing_in_a_route_is_mapped(
    client: TestClient, error: LakeError, status: int, code: str
) -> None:
    create_experiment(client, "e")
    client.app.dependency_overrides[get_lake] = _BrokenLake(error)  # type: ignore[attr-defined]
    response = client.get("/dashboard/api/experiments/e/timeseries")
    assert response.status_code == status, response.text
    assert error_code(response) == code
    if status == 422:
        assert response.json()["error"]["message"] == str(error)
    else:
        # An I/O failure names no path to the caller.
        assert "/x" not in response.text


def test_a_lake_file_missing_on_disk_makes_the_report_503(client: TestClient) -> None:
    running_experiment(client)
    for _ in range(5):
        assert client.post("/v1/experiments/e/predict", json={"features": [1, 2, 3]}).is_success
    flush(client)
    settings = client.app.state.settings  # type: ignore[attr-defined]
    for path in settings.lake_root.rglob("*.parquet"):
        path.unlink()
    response = client.get("/v1/experiments/e/report")
    assert response.status_code == 503, response.text
    assert error_code(response) == "lake_unavailable"
    assert str(settings.lake_root) not in response.text
