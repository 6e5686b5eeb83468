"""The dashboard's prediction-drift and data-quality panels, over a lake written here."""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from api.settings import Settings
from lake.schemas import PredictionRow
from tests.api.helpers import create_experiment, error_code, start, upload
from tests.api.serving_support import flush
from tests.conftest import make_client, make_settings
from tests.onnx_models import linear_model

API = "/dashboard/api/experiments"
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _rows(client: TestClient, name: str) -> None:
    """Two days of rows, one file a day; on day 2, b's predictions move up by one, f1 is
    missing from every fourth row and f2 leaves day 1's range in every tenth; batch rows
    (left out) would move a's."""
    service = client.app.state.serving  # type: ignore[attr-defined]
    rng = np.random.default_rng(8)
    for day in range(2):
        for i in range(600):
            ts = T0 + timedelta(days=day, seconds=120 * i)
            variant = "ab"[i % 2]
            features = {"f0": float(rng.normal()), "f2": (i % 100) / 100}
            if not (day == 1 and i % 4 == 0):
                features["f1"] = float(rng.normal())
            if day == 1 and i % 10 == 0:
                features["f2"] = 5.0
            shift = 1.0 if day == 1 and variant == "b" else 0.0
            for mode, moved in (("online", 0.0), ("batch", 3.0)) if day else (("online", 0.0),):
                service.predictions.append(
                    PredictionRow(
                        f"{name}-{day}-{i}-{mode}", ts, name, variant, "arm", 1, 0.5, None,
                        features, float(rng.normal() + shift + moved), None, 1.0, "0" * 64,
                        "CPUExecutionProvider", "ok", None, mode,  # type: ignore[arg-type]
                    )
                )  # fmt: skip
        flush(client)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, Settings]]:
    from api.store.migrate import upgrade

    home = tmp_path_factory.mktemp("quality")
    url = f"sqlite:///{home / 'store.db'}"
    upgrade(url)
    settings = make_settings(home / "home", url, reallocate=False)
    with make_client(settings) as client:
        create_experiment(client, "q")
        upload(client, "q", "a", linear_model([1.0, 0.0, 0.0]))
        upload(client, "q", "b", linear_model([0.0, 1.0, 0.0]))
        start(client, "q")
        _rows(client, "q")
        create_experiment(client, "empty")
        yield client, settings


def test_prediction_drift_flags_the_variant_that_moved(lab: tuple[TestClient, Settings]) -> None:
    client, _ = lab
    body = client.get(f"{API}/q/prediction-drift").json()
    assert body["threshold"] == 0.2 and body["min_rows"] == 250 and body["hours"] == 24
    by_name = {v["name"]: v for v in body["variants"]}
    assert list(by_name) == ["a", "b"] and body["drifted"] == ["b"]
    assert by_name["b"]["psi"] > 0.5 and by_name["b"]["drifted"]
    # a's batch rows, three standard deviations off, are not its served predictions.
    assert by_name["a"]["psi"] < 0.2 and not by_name["a"]["drifted"]
    for v in by_name.values():
        assert (v["reference_rows"], v["current_rows"]) == (300, 300)
        assert sum(v["reference_share"]) == pytest.approx(1.0)
        assert len(v["current_share"]) == len(v["cuts"]) + 1
    assert by_name["b"]["current_mean"] - by_name["b"]["reference_mean"] == pytest.approx(
        1.0, abs=0.25
    )
    # The same windows as feature drift.
    drift = client.get(f"{API}/q/drift").json()
    assert body["reference"]["start"] == drift["reference"]["start"] == "2026-01-01T00:00:00Z"
    assert body["current"]["end"] == drift["current"]["end"]


def test_data_quality_counts_missing_out_of_range_and_refused_values(
    lab: tuple[TestClient, Settings],
) -> None:
    client, _ = lab
    for literal in (b"NaN", b"Infinity", b"1e999"):
        refused = client.post(
            "/v1/experiments/q/predict",
            content=b'{"features": [1.0, ' + literal + b", 3.0]}",
            headers={"content-type": "application/json"},
        )
        assert refused.status_code == 422
    batch = client.post(
        "/v1/experiments/q/predict/batch",
        content=b'{"rows": [{"features": {"f0": 1, "f1": 2, "f2": NaN}}, '
        b'{"features": {"f0": -Infinity, "f1": 2, "f2": 3, "nope": NaN}}]}',
        headers={"content-type": "application/json"},
    )
    assert batch.status_code == 422
    # Unknown experiments and names that are not features mint no series.
    client.post(
        "/v1/experiments/ghost/predict",
        content=b'{"features": [NaN]}',
        headers={"content-type": "application/json"},
    )
    body = client.get(f"{API}/q/quality").json()
    assert body["variant"] is None and body["min_rows"] == 100
    f0, f1, f2 = body["features"]
    assert [f["name"] for f in body["features"]] == ["f0", "f1", "f2"]
    assert f1["current_missing_share"] == 0.25 and f1["current_missing"] == 150
    assert f1["reference_missing_share"] == 0.0
    assert f2["out_of_range"] == 60 and f2["out_of_range_share"] == pytest.approx(0.1)
    assert (f2["low"], f2["high"]) == (0.0, 0.99)
    assert f0["current_missing_share"] == 0.0 and f0["current_values"] == 600
    assert body["current"]["rows"] == 600
    refused = [f["rejected_nonfinite"] for f in (f0, f1, f2)]
    assert refused == [1, 3, 1]
    metrics = client.get("/metrics").text
    series = 'banditlake_features_rejected_total{experiment="q",feature="f1",reason="non_finite"}'
    assert f"{series} 3.0" in metrics
    assert "ghost" not in metrics and 'feature="nope"' not in metrics
    # Every fourth row is one of a's (even rows): a misses f1 in half its rows, b never.
    for variant, missing in (("a", 150), ("b", 0)):
        one = client.get(f"{API}/q/quality", params={"variant": variant}).json()
        assert one["variant"] == variant and one["current"]["rows"] == 300
        assert one["features"][1]["current_missing"] == missing


def test_an_experiment_without_traffic_has_empty_panels(lab: tuple[TestClient, Settings]) -> None:
    client, _ = lab
    drift = client.get(f"{API}/empty/prediction-drift").json()
    assert drift["variants"] == [] and drift["reference"] is None and drift["drifted"] == []
    quality = client.get(f"{API}/empty/quality").json()
    assert quality["features"] == [] and quality["current"] is None


@pytest.mark.parametrize(
    ("path", "params", "status", "code"),
    [
        ("nope/prediction-drift", {}, 404, "experiment_not_found"),
        ("nope/quality", {}, 404, "experiment_not_found"),
        ("q/quality", {"variant": "zz"}, 404, "variant_not_found"),
        ("q/quality", {"variant": "v" * 65}, 422, "invalid_request"),
        ("q/quality", {"hours": 0}, 422, "invalid_request"),
        ("q/prediction-drift", {"hours": 24 * 91}, 422, "invalid_request"),
    ],
)
def test_bad_requests_are_named(
    lab: tuple[TestClient, Settings], path: str, params: dict[str, Any], status: int, code: str
) -> None:
    client, _ = lab
    response = client.get(f"{API}/{path}", params=params)
    assert response.status_code == status, response.text
    assert error_code(response) == code


def test_the_page_has_both_panels(lab: tuple[TestClient, Settings]) -> None:
    client, _ = lab
    page = client.get("/dashboard").text
    assert 'id="panel-prediction-drift"' in page and 'id="panel-quality"' in page
    script = client.get("/dashboard/static/dashboard/quality.js")
    assert script.status_code == 200 and "drawQuality" in script.text


def test_redacted_features_are_listed_but_not_measured(tmp_path: Any, sqlite_url: str) -> None:
    from api.store.migrate import upgrade

    upgrade(sqlite_url)
    settings = make_settings(tmp_path / "home", sqlite_url, reallocate=False)
    with make_client(settings) as client:
        create_experiment(client, "r")
        upload(client, "r", "a", linear_model([1.0, 1.0]))
        response = client.patch("/v1/experiments/r", json={"redaction": {"drop": ["f1"]}})
        assert response.status_code == 200, response.text
        start(client, "r")
        for i in range(4):
            assert client.post("/v1/experiments/r/predict", json={"features": [i, 1]}).status_code == 200  # fmt: skip
        flush(client)
        body = client.get(f"{API}/r/quality").json()
    f0, f1 = body["features"]
    assert f1["redacted"] == "drop" and f1["current_missing_share"] is None
    assert f0["redacted"] is None and f0["current_missing_share"] == 0.0
    assert math.isclose(body["current"]["rows"] + body["reference"]["rows"], 4)
