"""Experiments: create, list, get, patch and the status machine."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from tests.api.helpers import create_experiment, error_code, start, upload
from tests.api.serving_support import flush
from tests.onnx_models import linear_model


def test_create_list_get(client: TestClient) -> None:
    created = create_experiment(
        client, "churn", description="two models", policy={"kind": "thompson"}, min_weight=0.05
    )
    assert created["status"] == "draft"
    assert created["reward"] == {"kind": "binary", "metric": None}
    assert created["min_weight"] == 0.05
    assert created["allocation_version"] is None
    listed = client.get("/v1/experiments").json()
    assert [e["name"] for e in listed] == ["churn"]
    one = client.get("/v1/experiments/churn").json()
    assert one["description"] == "two models"
    assert one["created_at"].endswith(("Z", "+00:00"))


def test_label_reward_defaults_to_accuracy(client: TestClient) -> None:
    created = create_experiment(client, "digits", reward={"kind": "label"})
    assert created["reward"] == {"kind": "label", "metric": "accuracy"}


def test_duplicate_name_is_409(client: TestClient) -> None:
    create_experiment(client, "dup")
    response = client.post("/v1/experiments", json={"name": "dup", "reward": {"kind": "binary"}})
    assert response.status_code == 409
    assert error_code(response) == "duplicate_name"
    assert "'dup'" in response.json()["error"]["message"]


def test_unknown_experiment_is_404(client: TestClient) -> None:
    for method, path in [
        ("get", "/v1/experiments/nope"),
        ("patch", "/v1/experiments/nope"),
    ]:
        response = client.request(method, path, json={} if method == "patch" else None)
        assert response.status_code == 404
        assert error_code(response) == "experiment_not_found"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "../etc", "reward": {"kind": "binary"}}, "name"),
        ({"name": "", "reward": {"kind": "binary"}}, "name"),
        ({"name": "x"}, "reward"),
        ({"name": "x", "reward": {"kind": "likes"}}, "reward.kind"),
        ({"name": "x", "reward": {"kind": "binary", "metric": "accuracy"}}, "reward"),
        ({"name": "x", "reward": {"kind": "binary"}, "policy": {"kind": "greedy"}}, "policy.kind"),
        ({"name": "x", "reward": {"kind": "binary"}, "min_weight": 1.5}, "min_weight"),
        (
            {"name": "x", "reward": {"kind": "binary"}, "reallocate_every_s": 0},
            "reallocate_every_s",
        ),
        (
            {"name": "x", "reward": {"kind": "binary"}, "guardrails": {"max_error_rate": 2}},
            "guardrails.max_error_rate",
        ),
        ({"name": "x", "reward": {"kind": "binary"}, "colour": "red"}, "colour"),
    ],
)
def test_create_rejects_bad_input_naming_the_field(
    client: TestClient, body: dict[str, object], field: str
) -> None:
    response = client.post("/v1/experiments", json=body)
    assert response.status_code == 422
    assert error_code(response) == "invalid_request"
    assert field in response.json()["error"]["message"]


def test_bad_policy_params_are_422(client: TestClient) -> None:
    response = client.post(
        "/v1/experiments",
        json={
            "name": "x",
            "reward": {"kind": "binary"},
            "policy": {"kind": "epsilon_greedy", "epsilon": 3},
        },
    )
    assert response.status_code == 422
    assert "epsilon" in response.json()["error"]["message"]


def test_malformed_json_is_422(client: TestClient) -> None:
    response = client.post(
        "/v1/experiments", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert response.status_code == 422


def test_patch_fields(client: TestClient) -> None:
    create_experiment(client, "p")
    response = client.patch(
        "/v1/experiments/p",
        json={
            "description": "new",
            "policy": {"kind": "epsilon_greedy", "epsilon": 0.2},
            "guardrails": {"max_error_rate": 0.05, "max_p99_latency_ms": 250},
        },
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["description"] == "new"
    assert body["policy"] == {"kind": "epsilon_greedy", "epsilon": 0.2}
    assert body["guardrails"] == {"max_error_rate": 0.05, "max_p99_latency_ms": 250}


def test_status_machine(client: TestClient) -> None:
    create_experiment(client, "s")
    no_arm = client.patch("/v1/experiments/s", json={"status": "running"})
    assert no_arm.status_code == 409
    assert error_code(no_arm) == "no_active_arm"
    for bad in ("paused", "stopped"):
        response = client.patch("/v1/experiments/s", json={"status": bad})
        assert response.status_code == 409, bad
        assert error_code(response) == "invalid_transition"
    upload(client, "s", "a")
    upload(client, "s", "b")
    start(client, "s")
    assert client.get("/v1/experiments/s").json()["allocation_version"] == 1
    for step in ("paused", "running", "paused", "stopped"):
        response = client.patch("/v1/experiments/s", json={"status": step})
        assert response.status_code == 200, response.text
        assert response.json()["status"] == step
    for bad in ("running", "paused", "draft"):
        response = client.patch("/v1/experiments/s", json={"status": bad})
        assert response.status_code == 409
        assert "'stopped'" in response.json()["error"]["message"]
    frozen = client.patch("/v1/experiments/s", json={"description": "late"})
    assert frozen.status_code == 409
    # Restarting the same status is a no-op, not a transition.
    assert client.patch("/v1/experiments/s", json={"status": "stopped"}).status_code == 200


def test_invalid_status_value_is_422(client: TestClient) -> None:
    create_experiment(client, "v")
    response = client.patch("/v1/experiments/v", json={"status": "done"})
    assert response.status_code == 422


@pytest.mark.parametrize(
    ("policy", "missing"),
    [
        ({"kind": "canary", "candidate": "ghost", "control": "a"}, "'ghost'"),
        ({"kind": "canary", "candidate": "b", "control": "shadow"}, "'shadow'"),
    ],
)
def test_patch_to_a_canary_needs_active_arms(
    client: TestClient, policy: dict[str, str], missing: str
) -> None:
    create_experiment(client, "c")
    upload(client, "c", "a")
    upload(client, "c", "b")
    upload(client, "c", "shadow", role="shadow")
    start(client, "c")
    response = client.patch("/v1/experiments/c", json={"policy": policy})
    assert response.status_code == 422, response.text
    assert error_code(response) == "canary_arms_missing"
    assert missing in response.json()["error"]["message"]
    assert client.get("/v1/experiments/c").json()["policy"] == {"kind": "thompson"}
    ok = {"kind": "canary", "candidate": "b", "control": "a"}
    assert client.patch("/v1/experiments/c", json={"policy": ok}).status_code == 200


@pytest.mark.parametrize(
    ("policy", "floor"),
    [
        ({"kind": "thompson"}, 0.02),
        ({"kind": "ucb1"}, 0.02),
        ({"kind": "epsilon_greedy", "epsilon": 0.1}, 0.02),
        ({"kind": "fixed", "weights": {"a": 0.5, "b": 0.5}}, 0.0),
        ({"kind": "canary", "candidate": "b", "control": "a"}, 0.0),
    ],
    ids=lambda value: value["kind"] if isinstance(value, dict) else str(value),
)
def test_default_floor_depends_on_the_policy(
    client: TestClient, policy: dict[str, object], floor: float
) -> None:
    created = create_experiment(client, "f", policy=policy)
    assert created["min_weight"] == floor
    # An explicit value, 0 included, is kept whatever the policy.
    explicit = create_experiment(client, "g", policy=policy, min_weight=0.0)
    assert explicit["min_weight"] == 0.0


def test_a_losing_arm_keeps_the_default_floor(client: TestClient) -> None:
    create_experiment(client, "lose")
    upload(client, "lose", "a", linear_model([1.0, 0.0, 0.0]))
    upload(client, "lose", "b", linear_model([0.0, 1.0, 0.0]))
    start(client, "lose")
    rows = [{"features": [1.0, 2.0, 3.0]}] * 300
    results = client.post("/v1/experiments/lose/predict/batch", json={"rows": rows}).json()
    items = [
        {"request_id": r["request_id"], "reward": 1.0 if r["variant"] == "b" else 0.0}
        for r in results["results"]
    ]
    assert client.post("/v1/feedback/batch", json={"items": items}).status_code == 202
    flush(client)
    response = client.post("/v1/experiments/lose/reallocate")
    assert response.status_code == 200, response.text
    weights = response.json()["weights"]
    # Without a floor Thompson sampling gives 'a' (never rewarded against always) about 0.
    assert weights["a"] == pytest.approx(0.02, abs=1e-3)
    assert "Every arm keeps at least 0.02 of traffic" in response.json()["reason"]
