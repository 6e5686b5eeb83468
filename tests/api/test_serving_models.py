"""Models in the serving path: what is checked at load and upload, and per-row batch errors."""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from api.serving.pool import VariantKey
from api.settings import Settings
from tests.api.helpers import create_experiment, error_code, start, upload
from tests.api.serving_support import flush, lake_rows, running_experiment
from tests.onnx_models import fragile_model


def test_first_request_runs_the_model_once(client: TestClient) -> None:
    # Whether a model runs inline or in a thread is measured when it loads, off the event
    # loop; the first request must not time extra model runs on the loop.
    running_experiment(client, weights={"a": 1.0, "b": 0.0})
    model = client.app.state.pool.get(VariantKey("e", "a"))  # type: ignore[attr-defined]
    calls = []
    real = model.session.run

    def counting(*args: Any, **kwargs: Any) -> Any:
        calls.append(threading.current_thread().name)
        return real(*args, **kwargs)

    model.session.run = counting
    response = client.post("/v1/experiments/e/predict", json={"features": [1, 2, 3]})
    assert response.status_code == 200, response.text
    assert response.json()["variant"] == "a"
    assert len(calls) == 1


def test_a_failing_row_fails_alone_in_a_batch(client: TestClient, settings: Settings) -> None:
    create_experiment(client, "f")
    upload(client, "f", "fragile", fragile_model())
    start(client, "f")
    rows = [{"features": [1, 0, 0]}, {"features": [7, 0, 0]}, {"features": [0, 0, 0]}]
    response = client.post("/v1/experiments/f/predict/batch", json={"rows": rows})
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [r["prediction"] for r in results] == [20.0, None, 10.0]
    assert [r.get("error", {}).get("code") for r in results] == [
        None,
        "input_rejected_by_model",
        None,
    ]
    # The answer and the lake agree row by row.
    flush(client)
    stored = dict(lake_rows(settings, "select request_id, status from predictions"))
    assert stored == {
        results[0]["request_id"]: "ok",
        results[1]["request_id"]: "rejected",
        results[2]["request_id"]: "ok",
    }


def _sklearn_classifier(*, zipmap: bool) -> bytes:
    from skl2onnx import to_onnx
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 3)).astype(np.float32)
    y = (x[:, 0] + x[:, 1] > 0).astype(np.int64)
    model = LogisticRegression().fit(x, y)
    options = {id(model): {"zipmap": zipmap}}
    return bytes(to_onnx(model, x[:1], options=options, target_opset=17).SerializeToString())


@pytest.mark.parametrize("output", [None, "probabilities"])
def test_zipmap_output_is_refused_at_upload(client: TestClient, output: str | None) -> None:
    create_experiment(client, "z")
    data = _sklearn_classifier(zipmap=True)
    chosen = "output_probability" if output else None
    response = client.post(
        "/v1/experiments/z/variants",
        data={"name": "lr", **({"output": chosen} if chosen else {})},
        files={"model": ("m.onnx", data, "application/octet-stream")},
    )
    if chosen is None:
        # The first output is the label tensor: usable, so the upload is accepted.
        assert response.status_code == 201, response.text
        assert response.json()["output"] == "output_label"
        return
    assert response.status_code == 422, response.text
    assert error_code(response) == "invalid_model_output"
    assert "zipmap" in response.json()["error"]["message"].lower()
    assert client.get("/v1/experiments/z/variants").json() == []


def test_classifier_exported_without_zipmap_serves_probabilities(client: TestClient) -> None:
    create_experiment(client, "z")
    upload(client, "z", "lr", _sklearn_classifier(zipmap=False), output="probabilities")
    start(client, "z")
    response = client.post("/v1/experiments/z/predict", json={"features": [2.0, 2.0, 0.0]})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["prediction"] == 1.0
    assert len(body["scores"]) == 2
    assert body["scores"][1] > 0.5
