"""The predict path: routing, stickiness, shadows, bad input, batching and the lake rows."""

from __future__ import annotations

import hashlib
import json
import math
import re
import time
from collections import Counter
from pathlib import Path
from typing import Literal

import numpy as np
import pytest
from fastapi.testclient import TestClient
from scipy import stats

from api.control import allocation_versions, experiments
from api.errors import InvalidRequestError
from api.routes.serving import _predict_json
from api.schemas import PredictOut
from api.serving.limits import check_batch_size
from api.serving.predict import Prediction
from api.serving.sessions import DeviceUnavailableError
from api.settings import Settings
from api.store.engine import make_engine, make_session_factory
from api.store.migrate import upgrade
from tests.api.helpers import create_experiment, error_code, start, upload
from tests.api.serving_support import W_A, W_B, flush, lake_rows, running_experiment
from tests.conftest import make_client, make_settings
from tests.onnx_models import classifier_model, fragile_model, linear_model


def _metric(client: TestClient, name: str, **labels: str) -> float:
    text = client.get("/metrics").text
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_predict_answers_with_the_chosen_variant(client: TestClient, settings: Settings) -> None:
    running_experiment(client)
    x = [0.3, -1.2, 2.0]
    response = client.post("/v1/experiments/e/predict", json={"features": x, "unit_id": "u-1"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert re.fullmatch(r"\d+\.[0-9a-f]{32}", body["request_id"])
    assert body["variant"] in ("a", "b")
    w, b = (W_A, 0.5) if body["variant"] == "a" else (W_B, -0.5)
    assert body["prediction"] == pytest.approx(float(np.dot(x, w) + b), rel=1e-6)
    assert body["propensity"] == pytest.approx(0.5)
    assert body["allocation_version"] == 1
    named = client.post(
        "/v1/experiments/e/predict", json={"features": {"f2": 2.0, "f0": 0.3, "f1": -1.2}}
    ).json()
    w, b = (W_A, 0.5) if named["variant"] == "a" else (W_B, -0.5)
    assert named["prediction"] == pytest.approx(float(np.dot(x, w) + b), rel=1e-6)
    flush(client)
    rows = lake_rows(
        settings,
        "select request_id, variant, role, propensity, unit_id, features['f1'], prediction, "
        "provider, status, model_sha256, allocation_version, experiment from predictions",
    )
    by_id = {r[0]: r for r in rows}
    first = by_id[body["request_id"]]
    assert first[1:5] == (body["variant"], "arm", 0.5, "u-1")
    assert first[5] == pytest.approx(-1.2)
    assert first[6] == pytest.approx(body["prediction"])
    served = linear_model(W_A, 0.5) if body["variant"] == "a" else linear_model(W_B, -0.5)
    sha256 = hashlib.sha256(served).hexdigest()
    assert first[7:11] == ("CPUExecutionProvider", "ok", sha256, 1)
    assert by_id[named["request_id"]][4] is None


def test_routing_follows_the_weights(client: TestClient) -> None:
    weights = {"a": 0.2, "b": 0.8}
    running_experiment(client, weights=weights)
    counts: Counter[str] = Counter()
    propensities: dict[str, set[float]] = {"a": set(), "b": set()}
    n = 20_000
    for _ in range(n // 1000):
        rows = [{"features": [1.0, 2.0, 3.0]}] * 1000
        response = client.post("/v1/experiments/e/predict/batch", json={"rows": rows})
        assert response.status_code == 200
        for result in response.json()["results"]:
            counts[result["variant"]] += 1
            propensities[result["variant"]].add(result["propensity"])
    for arm, p in weights.items():
        low, high = stats.binom.interval(0.99, n, p)
        assert low <= counts[arm] <= high, (arm, counts[arm], low, high)
        assert len(propensities[arm]) == 1
        assert propensities[arm].pop() == pytest.approx(p)


def test_sticky_assignment_is_stable_across_app_instances(tmp_path: Path, sqlite_url: str) -> None:
    upgrade(sqlite_url)
    settings = make_settings(tmp_path / "home", sqlite_url)
    units = [f"user-{i}" for i in range(300)]
    seen = []
    for _ in range(2):
        with make_client(settings) as client:
            if not seen:
                running_experiment(client, sticky=True, weights={"a": 0.3, "b": 0.7})
            results = [
                client.post(
                    "/v1/experiments/e/predict", json={"features": [1, 1, 1], "unit_id": u}
                ).json()
                for u in units
            ]
            again = client.post(
                "/v1/experiments/e/predict", json={"features": [1, 1, 1], "unit_id": units[0]}
            ).json()
            assert again["variant"] == results[0]["variant"]
            seen.append([r["variant"] for r in results])
            for r in results:
                assert r["propensity"] == pytest.approx(0.3 if r["variant"] == "a" else 0.7)
    assert seen[0] == seen[1]
    share_a = seen[0].count("a") / len(units)
    low, high = stats.binom.interval(0.999, len(units), 0.3)
    assert low / len(units) <= share_a <= high / len(units)


def test_shadow_never_answers_and_never_fails_the_request(
    client: TestClient, settings: Settings
) -> None:
    running_experiment(client, shadow=fragile_model())
    ok = client.post("/v1/experiments/e/predict", json={"features": [0.0, 0.0, 1.0]})
    broken = client.post("/v1/experiments/e/predict", json={"features": [5.0, 5.0, 5.0]})
    assert ok.status_code == broken.status_code == 200
    for response in (ok, broken):
        assert response.json()["variant"] in ("a", "b")
    batch = client.post(
        "/v1/experiments/e/predict/batch",
        json={"rows": [{"features": [9.0, 9.0, 9.0]} for _ in range(50)]},
    )
    assert batch.status_code == 200
    assert {r["variant"] for r in batch.json()["results"]} <= {"a", "b"}
    flush(client)
    shadow_rows = dict(
        lake_rows(
            settings,
            "select request_id, status || ':' || coalesce(cast(prediction as varchar), error) "
            "from predictions where role = 'shadow'",
        )
    )
    assert len(shadow_rows) == 52
    assert shadow_rows[ok.json()["request_id"]] == "ok:20.0"
    assert shadow_rows[broken.json()["request_id"]].startswith("error:")
    assert lake_rows(settings, "select count(*) from predictions where role = 'arm'") == [(52,)]


def test_row_the_model_cannot_take_is_logged_and_refused_with_422(
    client: TestClient, settings: Settings
) -> None:
    create_experiment(client, "f")
    upload(client, "f", "fragile", fragile_model())
    start(client, "f")
    good = client.post("/v1/experiments/f/predict", json={"features": [1, 0, 0]})
    assert good.status_code == 200
    assert good.json()["prediction"] == 20.0
    # The model fails on this row but still answers its reference input: the row is at
    # fault, so the client gets a 422 and the variant is not blamed.
    bad = client.post("/v1/experiments/f/predict", json={"features": [7, 0, 0]})
    assert bad.status_code == 422
    assert error_code(bad) == "input_rejected_by_model"
    request_id = bad.json()["error"]["details"]["request_id"]
    # Several rows in one micro-batch: the bad one must not fail its neighbours.
    mixed = client.post(
        "/v1/experiments/f/predict/batch",
        json={"rows": [{"features": [1, 0, 0]}, {"features": [0, 0, 0]}]},
    )
    assert mixed.status_code == 200
    assert [r["prediction"] for r in mixed.json()["results"]] == [20.0, 10.0]
    assert _metric(client, "banditlake_requests_total", variant="fragile", status="rejected") == 1
    assert _metric(client, "banditlake_requests_total", variant="fragile", status="error") == 0
    flush(client)
    rows = lake_rows(
        settings,
        f"select status, error, prediction from predictions where request_id = '{request_id}'",
    )
    assert len(rows) == 1
    assert rows[0][0] == "rejected"
    assert "Gather" in rows[0][1] or "out of" in rows[0][1]
    assert rows[0][2] is None


@pytest.mark.parametrize(
    ("body", "code", "phrase"),
    [
        ({"features": [1.0, 2.0]}, "wrong_feature_count", "has 2 values"),
        ({"features": [1.0, 2.0, 3.0, 4.0]}, "wrong_feature_count", "expects 3"),
        (
            {"features": [1.0, "x", 3.0]},
            "invalid_request",
            "features[1]: Input should be a valid number (got 'x')",
        ),
        (
            {"features": [1.0, None, 3.0]},
            "invalid_request",
            "features[1]: Input should be a valid number (got None)",
        ),
        (
            {"features": [1.0, True, 3.0]},
            "invalid_request",
            "features[1]: Input should be a valid number (got True)",
        ),
        ({"features": {"f0": 1, "f1": 2, "f2": 3, "height": 4}}, "unknown_feature", "'height'"),
        ({"features": {"f0": 1, "f1": 2}}, "missing_feature", "'f2'"),
        (
            {"features": {"f0": 1, "f1": "2", "f2": 3}},
            "invalid_request",
            "features.f1: Input should be a valid number (got '2')",
        ),
        ({"features": "1,2,3"}, "invalid_request", "features"),
        ({}, "invalid_request", "features"),
        ({"features": [1, 2, 3], "unit_id": ""}, "invalid_request", "unit_id"),
        ({"features": [1, 2, 3], "extra": 1}, "invalid_request", "extra"),
    ],
)
def test_bad_predict_input_is_422_and_reaches_no_model(
    client: TestClient, body: dict[str, object], code: str, phrase: str
) -> None:
    running_experiment(client)
    response = client.post("/v1/experiments/e/predict", json=body)
    assert response.status_code == 422, response.text
    assert error_code(response) == code
    assert phrase in response.json()["error"]["message"]
    assert _metric(client, "banditlake_batch_size_count") == 0
    assert _metric(client, "banditlake_requests_total") == 0


@pytest.mark.parametrize("literal", [b"NaN", b"Infinity", b"-Infinity", b"1e999"])
def test_non_finite_features_are_422(client: TestClient, literal: bytes) -> None:
    running_experiment(client)
    response = client.post(
        "/v1/experiments/e/predict",
        content=b'{"features": [1.0, ' + literal + b", 3.0]}",
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 422, response.text
    assert "features[1]" in response.json()["error"]["message"]
    assert _metric(client, "banditlake_batch_size_count") == 0


def test_bad_batches_are_rejected_whole(tmp_path: Path, sqlite_url: str) -> None:
    upgrade(sqlite_url)
    settings = make_settings(tmp_path / "home", sqlite_url, max_predict_batch_rows=10)
    with make_client(settings) as client:
        running_experiment(client)
        empty = client.post("/v1/experiments/e/predict/batch", json={"rows": []})
        assert empty.status_code == 422
        assert error_code(empty) == "empty_batch"
        big = client.post(
            "/v1/experiments/e/predict/batch", json={"rows": [{"features": [1, 2, 3]}] * 11}
        )
        assert big.status_code == 422
        assert error_code(big) == "batch_too_large"
        one_bad = client.post(
            "/v1/experiments/e/predict/batch",
            json={"rows": [{"features": [1, 2, 3]}, {"features": [1, 2]}]},
        )
        assert one_bad.status_code == 422
        assert "rows.1.features" in one_bad.json()["error"]["message"]
        assert _metric(client, "banditlake_batch_size_count") == 0
        assert _metric(client, "banditlake_requests_total") == 0
    assert lake_rows(settings, "select count(*) from predictions") == [(0,)]


def test_unknown_and_not_running_experiments(client: TestClient) -> None:
    missing = client.post("/v1/experiments/ghost/predict", json={"features": [1, 2, 3]})
    assert missing.status_code == 404
    assert error_code(missing) == "experiment_not_found"
    create_experiment(client, "d")
    upload(client, "d", "a")
    draft = client.post("/v1/experiments/d/predict", json={"features": [1, 2, 3]})
    assert draft.status_code == 409
    assert error_code(draft) == "experiment_not_running"
    start(client, "d")
    assert client.post("/v1/experiments/d/predict", json={"features": [1, 2, 3]}).status_code == 200
    client.patch("/v1/experiments/d", json={"status": "paused"})
    paused = client.post(
        "/v1/experiments/d/predict/batch", json={"rows": [{"features": [1, 2, 3]}]}
    )
    assert paused.status_code == 409
    assert "paused" in paused.json()["error"]["message"]


def test_micro_batching_groups_rows_and_keeps_their_order(tmp_path: Path, sqlite_url: str) -> None:
    upgrade(sqlite_url)
    settings = make_settings(tmp_path / "home", sqlite_url, max_batch_size=16)
    with make_client(settings) as client:
        create_experiment(client, "c")
        upload(client, "c", "only", classifier_model([[1, 0, 0], [0, 1, 0], [0, 0, 1]]))
        start(client, "c")
        rng = np.random.default_rng(7)
        x = rng.normal(size=(64, 3))
        response = client.post(
            "/v1/experiments/c/predict/batch", json={"rows": [{"features": r} for r in x.tolist()]}
        )
        assert response.status_code == 200
        results = response.json()["results"]
        assert [r["prediction"] for r in results] == x.argmax(axis=1).astype(float).tolist()
        for r, row in zip(results, x, strict=True):
            assert r["scores"] == pytest.approx(row.tolist(), rel=1e-6)
        calls = _metric(client, "banditlake_batch_size_count")
        rows = _metric(client, "banditlake_batch_size_sum")
        assert rows == 64
        assert calls <= 64 / 2, "concurrent rows were not gathered into shared model calls"


def test_new_allocation_versions_are_picked_up_without_restart(
    client: TestClient, settings: Settings
) -> None:
    running_experiment(client, weights={"a": 1.0, "b": 0.0})
    assert (
        client.post("/v1/experiments/e/predict", json={"features": [1, 2, 3]}).json()["variant"]
        == "a"
    )
    # Another process (the reallocator, the CLI) writes a version straight to the store.
    engine = make_engine(settings.database_url)
    with make_session_factory(engine)() as session:
        exp = experiments.get_experiment(session, "e")
        allocation_versions.record_allocation(
            session, exp, {"a": 0.0, "b": 1.0}, reason="t", author="t"
        )
        session.commit()
    engine.dispose()
    deadline = time.monotonic() + 5 * settings.allocation_refresh_ms / 1000
    seen = None
    while time.monotonic() < deadline:
        seen = client.post("/v1/experiments/e/predict", json={"features": [1, 2, 3]}).json()
        if seen["variant"] == "b":
            break
        time.sleep(0.05)
    assert seen is not None
    assert (seen["variant"], seen["allocation_version"], seen["propensity"]) == ("b", 3, 1.0)


def test_metrics_and_readiness_report_the_provider(client: TestClient) -> None:
    running_experiment(client)
    for _ in range(5):
        client.post("/v1/experiments/e/predict", json={"features": [1, 2, 3]})
    assert _metric(client, "banditlake_requests_total", experiment="e", status="ok") == 5
    assert _metric(client, "banditlake_request_latency_seconds_count", experiment="e") == 5
    assert _metric(client, "banditlake_variant_provider", provider="CPUExecutionProvider") == 2
    assert "banditlake_lake_queue_depth" in client.get("/metrics").text
    assert client.get("/readyz").json()["ready"] is True
    health = client.get("/v1/health").json()
    assert health["models"]["e/a"]["provider"] == "CPUExecutionProvider"
    variants = client.get("/v1/experiments/e/variants").json()
    assert {v["provider"] for v in variants} == {"CPUExecutionProvider"}


def test_cuda_without_gpu_fails_at_start(tmp_path: Path, sqlite_url: str) -> None:
    from api.serving.sessions import cuda_available

    if cuda_available():
        pytest.skip("this machine has a working CUDA provider; the refusal cannot be shown")
    upgrade(sqlite_url)
    settings = make_settings(tmp_path / "home", sqlite_url, device="cuda")
    with (
        pytest.raises(DeviceUnavailableError, match="BANDITLAKE_DEVICE=cuda"),
        make_client(settings),
    ):
        pass


def test_request_ids_are_unique(client: TestClient) -> None:
    running_experiment(client)
    response = client.post(
        "/v1/experiments/e/predict/batch", json={"rows": [{"features": [1, 2, 3]}] * 500}
    )
    ids = [r["request_id"] for r in response.json()["results"]]
    assert len(set(ids)) == 500
    assert all(math.isfinite(r["prediction"]) for r in response.json()["results"])


def test_non_finite_model_output_is_a_model_error(client: TestClient) -> None:
    create_experiment(client, "inf")
    upload(client, "inf", "huge", linear_model([3e38, 3e38, 3e38]))
    start(client, "inf")
    response = client.post("/v1/experiments/inf/predict", json={"features": [10, 10, 10]})
    # Non-finite for this row only (zeros still work): the row is refused, not the model.
    assert response.status_code == 422
    assert error_code(response) == "input_rejected_by_model"
    assert "non-finite" in response.json()["error"]["message"]
    fine = client.post("/v1/experiments/inf/predict", json={"features": [0, 0, 0]})
    assert fine.status_code == 200
    assert fine.json()["prediction"] == 0.0


def test_openapi_documents_the_serving_bodies(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    predict = spec["paths"]["/v1/experiments/{name}/predict"]["post"]
    assert predict["parameters"][0]["name"] == "name"
    body = predict["requestBody"]["content"]["application/json"]["schema"]
    assert "features" in body["properties"]
    assert "items" in str(spec["paths"]["/v1/feedback/batch"]["post"]["requestBody"])
    assert client.get("/docs").status_code == 200


def test_variant_uploaded_elsewhere_is_loaded_without_restart(
    tmp_path: Path, sqlite_url: str
) -> None:
    upgrade(sqlite_url)
    settings = make_settings(tmp_path / "home", sqlite_url)
    with make_client(settings) as first, make_client(settings) as second:
        running_experiment(first)
        upload(first, "e", "late", linear_model([0.0, 0.0, 1.0]))
        first.put("/v1/experiments/e/allocation", json={"weights": {"late": 1.0}})
        deadline = time.monotonic() + 10
        seen = None
        while time.monotonic() < deadline:
            seen = second.post("/v1/experiments/e/predict", json={"features": [1, 2, 3]}).json()
            if seen.get("variant") == "late":
                break
            time.sleep(0.1)
        assert seen is not None and seen["variant"] == "late"
        assert seen["prediction"] == 3.0
        late = next(
            v for v in second.get("/v1/experiments/e/variants").json() if v["name"] == "late"
        )
        assert late["provider"] == "CPUExecutionProvider"


@pytest.mark.parametrize("scores", [None, [0.25, 0.75]])
def test_predict_json_is_the_predict_out_schema(scores: list[float] | None) -> None:
    # The route encodes a Prediction by hand; it must stay exactly PredictOut's shape.
    result = Prediction("7.ab", 'v"1\\é', 2.5, scores, 0.1 + 0.2, 3)
    body = _predict_json(result)
    assert list(json.loads(body)) == list(PredictOut.model_fields)
    assert PredictOut.model_validate_json(body) == PredictOut(
        request_id="7.ab",
        variant='v"1\\é',
        prediction=2.5,
        scores=scores,
        propensity=0.1 + 0.2,
        allocation_version=3,
    )


@pytest.mark.parametrize(
    ("count", "field", "code", "message"),
    [
        (0, "rows", "empty_batch", "rows is empty; send at least one row."),
        (11, "rows", "batch_too_large", "rows has 11 items; at most 10 are accepted per request."),
        (0, "items", "empty_batch", "items is empty; send at least one item."),
        (
            11,
            "items",
            "batch_too_large",
            "items has 11 entries; at most 10 are accepted per request.",
        ),
    ],
)
def test_one_batch_size_rule_for_predict_and_feedback(
    count: int, field: Literal["rows", "items"], code: str, message: str
) -> None:
    check_batch_size(10, 10, field=field)
    with pytest.raises(InvalidRequestError) as caught:
        check_batch_size(count, 10, field=field)
    assert (caught.value.code, caught.value.message) == (code, message)
