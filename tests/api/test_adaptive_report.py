"""The report's intervals and tests on an experiment whose allocation moved: the valid ones."""

from __future__ import annotations

import numpy as np
import pytest
from fastapi.testclient import TestClient

from api.settings import Settings
from bandit.adaptive import adaptive_intervals
from tests.api.helpers import create_experiment, start, upload
from tests.api.serving_support import lake_rows
from tests.api.test_reallocation import _traffic
from tests.onnx_models import linear_model


def _experiment(client: TestClient, name: str) -> None:
    create_experiment(client, name, policy={"kind": "thompson"})
    upload(client, name, "a", linear_model([1.0, 0.0, 0.0]))
    upload(client, name, "b", linear_model([0.0, 1.0, 0.0]))
    start(client, name)


def test_a_moved_allocation_gets_adaptive_intervals_computed_from_the_lake(
    client: TestClient, settings: Settings
) -> None:
    _experiment(client, "ad")
    rng = np.random.default_rng(4)
    rates = {"a": 0.2, "b": 0.3}
    _traffic(client, "ad", 1000, rates, rng)
    moved = client.put("/v1/experiments/ad/allocation", json={"weights": {"a": 0.8, "b": 0.2}})
    assert moved.status_code == 200, moved.text
    _traffic(client, "ad", 1000, rates, rng)
    report = client.get("/v1/experiments/ad/report").json()
    arms = [v for v in report["variants"] if v["role"] == "arm"]
    assert [v["interval_estimator"] for v in arms] == ["adaptive_aipw", "adaptive_aipw"]
    assert arms[1]["test"]["method"] == "adaptive_aipw"

    # The same numbers from the lake's rows, through the public row-level entry point.
    rows = lake_rows(
        settings,
        "select variant, allocation_version, propensity, reward from decisions "
        "where experiment = 'ad' and role = 'arm' and reward is not null",
    )
    expected = adaptive_intervals(
        reward=np.array([r[3] for r in rows]),
        action=np.array([0 if r[0] == "a" else 1 for r in rows]),
        pscore=np.array([r[2] for r in rows]),
        batch=np.array([r[1] for r in rows]),
        n_actions=2,
    )
    for v, est in zip(arms, expected.arms, strict=True):
        assert v["ci_low"] == pytest.approx(est.ci_low, abs=1e-9)
        assert v["ci_high"] == pytest.approx(est.ci_high, abs=1e-9)
    d = expected.differences[1]
    assert arms[1]["test"]["diff"] == pytest.approx(d.diff, abs=1e-9)
    assert arms[1]["test"]["p_value"] == pytest.approx(d.p_value, abs=1e-9)
    assert arms[1]["test"]["ci_low"] == pytest.approx(d.ci_low, abs=1e-9)


def test_a_fixed_split_keeps_the_classical_intervals(client: TestClient) -> None:
    _experiment(client, "fx")
    _traffic(client, "fx", 600, {"a": 0.2, "b": 0.3}, np.random.default_rng(5))
    report = client.get("/v1/experiments/fx/report").json()
    arms = [v for v in report["variants"] if v["role"] == "arm"]
    assert [v["interval_estimator"] for v in arms] == ["classical", "classical"]
    assert arms[1]["test"]["method"] != "adaptive_aipw"
