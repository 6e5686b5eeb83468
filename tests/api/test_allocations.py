"""Allocation: current, manual put, history, promote and rollback."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from tests.api.helpers import create_experiment, error_code, start, upload


@pytest.fixture
def running(client: TestClient) -> TestClient:
    create_experiment(client, "e")
    for name in ("a", "b", "c"):
        upload(client, "e", name)
    start(client, "e")
    return client


def test_no_allocation_before_start(client: TestClient) -> None:
    create_experiment(client, "e")
    response = client.get("/v1/experiments/e/allocation")
    assert response.status_code == 404
    assert error_code(response) == "no_allocation"
    assert client.get("/v1/experiments/e/allocations").json() == []


def test_start_gives_equal_weights(running: TestClient) -> None:
    body = running.get("/v1/experiments/e/allocation").json()
    assert body["version"] == 1
    assert body["weights"] == pytest.approx({"a": 1 / 3, "b": 1 / 3, "c": 1 / 3})
    assert body["reason"].startswith("start")


def test_put_and_history(running: TestClient) -> None:
    response = running.put(
        "/v1/experiments/e/allocation", json={"weights": {"a": 0.7, "b": 0.3}, "reason": "ops call"}
    )
    assert response.status_code == 200
    assert response.json()["version"] == 2
    assert response.json()["weights"] == {"a": 0.7, "b": 0.3, "c": 0.0}
    history = running.get("/v1/experiments/e/allocations").json()
    assert [h["version"] for h in history] == [2, 1]
    assert history[0]["reason"] == "ops call"
    assert history[0]["author"] == "loopback"
    assert [h["version"] for h in running.get("/v1/experiments/e/allocations?limit=1").json()] == [
        2
    ]


@pytest.mark.parametrize(
    ("weights", "phrase"),
    [
        ({"a": 0.5, "b": 0.4}, "sum to 0.9"),
        ({"a": 0.5, "b": 0.6}, "sum to 1.1"),
        ({"a": 1.0, "zzz": 0.0}, "'zzz'"),
        ({"a": 1.2, "b": -0.2}, "-0.2"),
        ({}, "at least one"),
    ],
)
def test_put_rejects_bad_weights(
    running: TestClient, weights: dict[str, float], phrase: str
) -> None:
    response = running.put("/v1/experiments/e/allocation", json={"weights": weights})
    assert response.status_code == 422, response.text
    assert phrase in response.json()["error"]["message"]
    assert running.get("/v1/experiments/e/allocation").json()["version"] == 1


def test_put_rejects_inactive_variant(running: TestClient) -> None:
    running.patch("/v1/experiments/e/variants/c", json={"enabled": False})
    response = running.put("/v1/experiments/e/allocation", json={"weights": {"a": 0.5, "c": 0.5}})
    assert response.status_code == 422
    assert "'c'" in response.json()["error"]["message"]
    upload(running, "e", "sh", role="shadow")
    shadow = running.put("/v1/experiments/e/allocation", json={"weights": {"a": 0.5, "sh": 0.5}})
    assert shadow.status_code == 422


def test_non_finite_weight_is_422(running: TestClient) -> None:
    response = running.put(
        "/v1/experiments/e/allocation",
        content=b'{"weights": {"a": NaN, "b": 1.0}}',
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 422


def test_promote_and_rollback(running: TestClient) -> None:
    running.put("/v1/experiments/e/allocation", json={"weights": {"a": 0.2, "b": 0.3, "c": 0.5}})
    promoted = running.post("/v1/experiments/e/promote", json={"variant": "b"})
    assert promoted.status_code == 200
    assert promoted.json()["weights"] == {"a": 0.0, "b": 1.0, "c": 0.0}
    back = running.post("/v1/experiments/e/rollback")
    assert back.status_code == 200
    assert back.json()["version"] == 4
    assert back.json()["weights"] == pytest.approx({"a": 0.2, "b": 0.3, "c": 0.5})
    assert back.json()["reason"] == "rollback to version 2"
    unknown = running.post("/v1/experiments/e/promote", json={"variant": "zzz"})
    assert unknown.status_code == 409


def test_rollback_without_history_is_409(running: TestClient) -> None:
    response = running.post("/v1/experiments/e/rollback")
    assert response.status_code == 409
    assert error_code(response) == "nothing_to_roll_back"


def test_unknown_experiment_everywhere_is_404(client: TestClient) -> None:
    for method, path, body in [
        ("get", "/v1/experiments/x/allocation", None),
        ("put", "/v1/experiments/x/allocation", {"weights": {"a": 1.0}}),
        ("get", "/v1/experiments/x/allocations", None),
        ("post", "/v1/experiments/x/promote", {"variant": "a"}),
        ("post", "/v1/experiments/x/rollback", None),
    ]:
        response = client.request(method, path, json=body)
        assert response.status_code == 404, path
        assert error_code(response) == "experiment_not_found"


def test_stopped_experiment_allocation_is_frozen(running: TestClient) -> None:
    running.patch("/v1/experiments/e", json={"status": "stopped"})
    response = running.put("/v1/experiments/e/allocation", json={"weights": {"a": 1.0}})
    assert response.status_code == 409
