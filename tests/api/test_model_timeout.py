"""The model timeout: a slow variant answers 503 ``model_timeout`` and cannot starve others.

The slow model is real ONNX Runtime work: a Loop of 128 x 128 MatMuls whose trip count is
``20 + max(x)``. On the all-zero load-time input it takes a millisecond or two (so it loads
fast and runs in a thread, not on the event loop); on ``x = 400000`` it would take tens of
seconds on any CPU, so a request with that input is stuck until the timeout stops it.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import onnx
import pytest
from fastapi.testclient import TestClient
from onnx import TensorProto, helper, numpy_helper

from api.serving.pool import VariantKey
from api.settings import Settings
from api.store.migrate import upgrade
from tests.api.helpers import create_experiment, error_code, start, upload
from tests.api.serving_support import flush, lake_rows
from tests.conftest import make_client, make_settings
from tests.onnx_models import linear_model

STUCK = [400_000.0, 0.0, 0.0]
"""An input the slow model takes far longer than any timeout here to answer."""
QUICK = [0.0, 0.0, 0.0]


def slow_model(d: int = 3, size: int = 128) -> bytes:
    """``y = sum(x) * sum(S @ W^(20 + max(x)))`` with ``S`` the identity, ``x: [N, d]``.

    ``W`` is orthogonal, so the product stays finite however many times it is applied.
    """
    rng = np.random.default_rng(0)
    w = np.linalg.qr(rng.normal(size=(size, size)))[0].astype(np.float32)
    body = helper.make_graph(
        [
            helper.make_node("MatMul", ["s_in", "w"], ["s_out"]),
            helper.make_node("Identity", ["cond_in"], ["cond_out"]),
        ],
        "step",
        [
            helper.make_tensor_value_info("i", TensorProto.INT64, []),
            helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
            helper.make_tensor_value_info("s_in", TensorProto.FLOAT, [size, size]),
        ],
        [
            helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
            helper.make_tensor_value_info("s_out", TensorProto.FLOAT, [size, size]),
        ],
    )
    graph = helper.make_graph(
        [
            helper.make_node("ReduceMax", ["x"], ["m"], keepdims=0),
            helper.make_node("Cast", ["m"], ["mi"], to=TensorProto.INT64),
            helper.make_node("Add", ["mi", "base"], ["trips"]),
            helper.make_node("Loop", ["trips", "true", "s0"], ["s"], body=body),
            helper.make_node("ReduceSum", ["s"], ["total"], keepdims=0),
            helper.make_node("Mul", ["x", "total"], ["xt"]),
            helper.make_node("ReduceSum", ["xt", "axis"], ["y"], keepdims=1),
        ],
        "slow",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", d])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 1])],
        initializer=[
            numpy_helper.from_array(w, "w"),
            numpy_helper.from_array(np.eye(size, dtype=np.float32), "s0"),
            numpy_helper.from_array(np.asarray(20, dtype=np.int64), "base"),
            numpy_helper.from_array(np.asarray(True), "true"),
            numpy_helper.from_array(np.asarray([1], dtype=np.int64), "axis"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return bytes(model.SerializeToString())


def _metric(client: TestClient, name: str, **labels: str) -> float:
    total = 0.0
    for line in client.get("/metrics").text.splitlines():
        if not line.startswith((name + "{", name + " ")):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def _client(tmp_path: Path, sqlite_url: str, **overrides: object) -> TestClient:
    upgrade(sqlite_url)
    return make_client(make_settings(tmp_path / "home", sqlite_url, **overrides))


def _threaded(client: TestClient, experiment: str, variant: str) -> bool:
    """Whether the variant runs in a thread: only there can a timeout stop a call."""
    pool = client.app.state.pool  # type: ignore[attr-defined]
    model = pool.get(VariantKey(experiment, variant))
    return model is not None and not model.inline


@pytest.fixture
def settings(tmp_path: Path, sqlite_url: str) -> Settings:
    upgrade(sqlite_url)
    return make_settings(tmp_path / "home", sqlite_url, model_timeout_ms=100)


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with make_client(settings) as c:
        create_experiment(c, "slow")
        upload(c, "slow", "crawl", slow_model())
        start(c, "slow")
        create_experiment(c, "quick")
        upload(c, "quick", "brisk", slow_model())
        start(c, "quick")
        assert _threaded(c, "slow", "crawl")
        assert _threaded(c, "quick", "brisk")
        yield c


def test_a_call_past_the_timeout_answers_503_model_timeout(
    client: TestClient, settings: Settings
) -> None:
    response = client.post("/v1/experiments/slow/predict", json={"features": STUCK})
    assert response.status_code == 503, response.text
    assert error_code(response) == "model_timeout"
    error = response.json()["error"]
    assert error["message"] == (
        "Variant 'crawl' of 'slow' did not answer within its timeout of 100 ms; "
        "the request was abandoned."
    )
    flush(client)
    rows = lake_rows(
        settings,
        "select variant, status, error, latency_ms, prediction from predictions "
        f"where request_id = '{error['details']['request_id']}'",
    )
    assert len(rows) == 1
    variant, status, text, latency_ms, prediction = rows[0]
    assert (variant, status, prediction) == ("crawl", "error", None)
    assert text == "timed out: the model did not answer within 100 ms"
    # The row's latency is the time the request waited: at least the timeout.
    assert latency_ms >= 100


def test_the_timeout_counts_against_the_slow_variant_only(client: TestClient) -> None:
    for _ in range(2):
        stuck = client.post("/v1/experiments/slow/predict", json={"features": STUCK})
        assert stuck.status_code == 503, stuck.text
        fine = client.post("/v1/experiments/quick/predict", json={"features": QUICK})
        assert fine.status_code == 200, fine.text
    requests = "banditlake_requests_total"
    latency = "banditlake_request_latency_seconds"
    assert _metric(client, requests, variant="crawl", role="arm", status="error") == 2
    assert _metric(client, requests, variant="crawl", role="arm", status="ok") == 0
    assert _metric(client, f"{latency}_count", variant="crawl") == 2
    assert _metric(client, f"{latency}_sum", variant="crawl") >= 0.2
    assert _metric(client, requests, variant="brisk", role="arm", status="error") == 0
    assert _metric(client, requests, variant="brisk", role="arm", status="ok") == 2
    assert _metric(client, f"{latency}_count", variant="brisk") == 2


def test_the_variant_answers_again_right_after_a_timeout(client: TestClient) -> None:
    # The abandoned run is stopped, so the next call does not queue behind it; had it run
    # on to the end, this call would time out as well.
    assert client.post("/v1/experiments/slow/predict", json={"features": STUCK}).status_code == 503
    response = client.post("/v1/experiments/slow/predict", json={"features": [1.0, 0.0, 0.0]})
    assert response.status_code == 200, response.text
    assert math.isfinite(response.json()["prediction"])


def test_a_timed_out_shadow_is_its_own_error(client: TestClient, settings: Settings) -> None:
    create_experiment(client, "mixed")
    upload(client, "mixed", "lin", linear_model([1.0, 1.0, 1.0]))
    upload(client, "mixed", "lag", slow_model(), role="shadow")
    start(client, "mixed")
    # The shadow is stuck on this input; the arm, a linear model, is not.
    response = client.post("/v1/experiments/mixed/predict", json={"features": STUCK})
    assert response.status_code == 200, response.text
    assert response.json()["prediction"] == 400_000.0
    flush(client)
    rows = lake_rows(settings, "select variant, role, status, error from predictions order by role")
    assert rows == [
        ("lin", "arm", "ok", None),
        ("lag", "shadow", "error", "timed out: the model did not answer within 100 ms"),
    ]
    requests = "banditlake_requests_total"
    assert _metric(client, requests, variant="lag", role="shadow", status="error") == 1
    assert _metric(client, requests, variant="lin", role="arm", status="ok") == 1
    assert _metric(client, requests, variant="lin", role="arm", status="error") == 0


@pytest.mark.parametrize("microbatch", [False, True])
def test_a_stuck_variant_does_not_hold_other_variants_threads(
    tmp_path: Path, sqlite_url: str, microbatch: bool
) -> None:
    # Eight requests stuck at once: unbatched, eight calls of one variant; micro-batched
    # (one call per variant at a time), the arms of four experiments. One thread pool of
    # four for all variants would be full, and the quick experiment's calls would wait
    # until the stuck ones time out; they must answer while those are still waiting.
    slow = ["slow"] if not microbatch else [f"slow{i}" for i in range(4)]
    with _client(tmp_path, sqlite_url, model_timeout_ms=1000, microbatch=microbatch) as client:
        for name in [*slow, "quick"]:
            create_experiment(client, name)
            upload(client, name, "crawl" if name != "quick" else "brisk", slow_model())
            start(client, name)
        assert _threaded(client, "quick", "brisk")

        stuck: list[httpx.Response] = []

        def send_stuck(experiment: str) -> None:
            path = f"/v1/experiments/{experiment}/predict"
            stuck.append(client.post(path, json={"features": STUCK}))

        threads = [
            threading.Thread(target=send_stuck, args=(slow[i % len(slow)],)) for i in range(8)
        ]
        for thread in threads:
            thread.start()
        # Time for the stuck requests to reach their models before the quick ones are sent.
        time.sleep(0.3)
        quick = [
            client.post("/v1/experiments/quick/predict", json={"features": QUICK}) for _ in range(3)
        ]
        still_stuck = sum(thread.is_alive() for thread in threads)
        for thread in threads:
            thread.join()

    assert [r.status_code for r in quick] == [200, 200, 200]
    assert still_stuck == 8, "the quick experiment waited for the stuck variants' threads"
    assert sorted(error_code(r) for r in stuck) == ["model_timeout"] * 8


def test_a_model_answering_nan_is_a_503_model_error(tmp_path: Path, sqlite_url: str) -> None:
    upgrade(sqlite_url)
    settings = make_settings(tmp_path / "home", sqlite_url)
    with make_client(settings) as client:
        create_experiment(client, "nan")
        # NaN weights: NaN for every input, the all-zero reference input included, so the
        # model is failing (an error), not refusing this row (a 422).
        upload(client, "nan", "broken", linear_model([math.nan] * 3))
        start(client, "nan")
        response = client.post("/v1/experiments/nan/predict", json={"features": [1, 2, 3]})
        assert response.status_code == 503, response.text
        assert error_code(response) == "model_error"
        message = response.json()["error"]["message"]
        assert message == (
            "Variant 'broken' of 'nan' failed to predict: ValueError: the model returned a "
            "non-finite output (nan, None)."
        )
        flush(client)
        rows = lake_rows(settings, "select status, error, prediction from predictions")
    assert len(rows) == 1
    status, text, prediction = rows[0]
    assert (status, prediction) == ("error", None)
    assert "non-finite" in text
