"""Feedback: rewards and labels, before the prediction is flushed, late, and twice."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from api.settings import Settings
from tests.api.helpers import create_experiment, error_code, start, upload
from tests.api.serving_support import flush, lake_rows, running_experiment
from tests.onnx_models import classifier_model, linear_model


def _predict(client: TestClient, experiment: str = "e", features: object = (1, 2, 3)) -> str:
    response = client.post(
        f"/v1/experiments/{experiment}/predict", json={"features": list(features)}
    )  # type: ignore[call-overload]
    assert response.status_code == 200, response.text
    return str(response.json()["request_id"])


def test_feedback_before_after_and_twice(client: TestClient, settings: Settings) -> None:
    running_experiment(client)
    early = _predict(client)
    # Feedback arrives while the prediction row is still in the writer's buffer.
    assert client.post("/v1/feedback", json={"request_id": early, "reward": 1}).status_code == 202
    flush(client)
    late = _predict(client)
    flush(client)
    assert client.post("/v1/feedback", json={"request_id": late, "reward": 0}).status_code == 202
    twice = _predict(client)
    answers = [
        client.post("/v1/feedback/batch", json={"items": [{"request_id": twice, "reward": r}]})
        for r in (1, 0)
    ]
    assert [a.status_code for a in answers] == [202, 202]
    assert [a.json() for a in answers] == [
        {"accepted": 1, "duplicates": 0},
        {"accepted": 0, "duplicates": 1},
    ]
    pending = _predict(client)
    flush(client)
    rows = dict(lake_rows(settings, "select request_id, reward from decisions"))
    assert rows == {early: 1.0, late: 0.0, twice: 1.0, pending: None}
    assert lake_rows(settings, "select count(*) from feedback") == [(3,)]
    assert lake_rows(settings, "select sum(reward) from decisions") == [(2.0,)]


@pytest.mark.parametrize(
    ("item", "status", "code"),
    [
        ({"request_id": "nope", "reward": 1}, 422, "invalid_request_id"),
        ({"request_id": "99." + "0" * 24, "reward": 1}, 422, "invalid_request_id"),
        ({"request_id": "{rid99}", "reward": 1}, 404, "experiment_not_found"),
        ({"reward": 1}, 422, "invalid_request"),
        ({"request_id": "{rid}", "reward": 0.5}, 422, "invalid_reward"),
        ({"request_id": "{rid}", "reward": 2}, 422, "invalid_reward"),
        ({"request_id": "{rid}", "reward": "1"}, 422, "invalid_request"),
        ({"request_id": "{rid}", "reward": True}, 422, "invalid_request"),
        ({"request_id": "{rid}"}, 422, "reward_expected"),
        ({"request_id": "{rid}", "label": 1}, 422, "reward_expected"),
        ({"request_id": "{rid}", "reward": 1, "colour": 3}, 422, "invalid_request"),
    ],
)
def test_bad_feedback_is_refused(
    client: TestClient, settings: Settings, item: dict[str, object], status: int, code: str
) -> None:
    running_experiment(client)
    rid = _predict(client)
    # A correctly signed id of an experiment that does not exist.
    rid99 = client.app.state.serving.request_ids.issue(99)  # type: ignore[attr-defined]
    body = {k: (rid if v == "{rid}" else rid99 if v == "{rid99}" else v) for k, v in item.items()}
    response = client.post("/v1/feedback", json=body)
    assert response.status_code == status, response.text
    assert error_code(response) == code
    batch = client.post(
        "/v1/feedback/batch", json={"items": [{"request_id": rid, "reward": 1}, body]}
    )
    assert batch.status_code == status
    flush(client)
    assert lake_rows(settings, "select count(*) from feedback") == [(0,)]


def test_non_finite_reward_is_422(client: TestClient) -> None:
    create_experiment(client, "c", reward={"kind": "continuous"})
    upload(client, "c", "a", linear_model([1.0, 1.0, 1.0]))
    start(client, "c")
    rid = _predict(client, "c")
    nan = client.post(
        "/v1/feedback",
        content=b'{"request_id": "' + rid.encode() + b'", "reward": NaN}',
        headers={"content-type": "application/json"},
    )
    assert nan.status_code == 422
    assert client.post("/v1/feedback", json={"request_id": rid, "reward": -3.25}).status_code == 202


def test_empty_and_oversize_feedback_batches(client: TestClient) -> None:
    assert error_code(client.post("/v1/feedback/batch", json={"items": []})) == "empty_batch"
    too_many = [{"request_id": "1." + "0" * 24, "reward": 1}] * 1025
    response = client.post("/v1/feedback/batch", json={"items": too_many})
    assert response.status_code == 422
    assert error_code(response) == "batch_too_large"


def test_label_feedback(client: TestClient, settings: Settings) -> None:
    create_experiment(client, "digits", reward={"kind": "label", "metric": "accuracy"})
    upload(client, "digits", "m", classifier_model([[1, 0], [0, 1]]))
    start(client, "digits")
    rid = _predict(client, "digits", (0.0, 3.0))
    wrong_kind = client.post("/v1/feedback", json={"request_id": rid, "reward": 1})
    assert wrong_kind.status_code == 422
    assert error_code(wrong_kind) == "label_expected"
    assert client.post("/v1/feedback", json={"request_id": rid, "label": 1}).status_code == 202
    rid2 = _predict(client, "digits", (5.0, 3.0))
    assert client.post("/v1/feedback", json={"request_id": rid2, "label": "cat"}).status_code == 202
    flush(client)
    rows = dict(lake_rows(settings, "select request_id, label from decisions"))
    assert rows == {rid: "1.0", rid2: "cat"}


def test_regression_label_must_be_numeric(client: TestClient) -> None:
    create_experiment(client, "reg", reward={"kind": "label", "metric": "neg_abs_error"})
    upload(client, "reg", "m", linear_model([1.0, 1.0, 1.0]))
    start(client, "reg")
    rid = _predict(client, "reg")
    response = client.post("/v1/feedback", json={"request_id": rid, "label": "tall"})
    assert response.status_code == 422
    assert error_code(response) == "invalid_label"
    assert client.post("/v1/feedback", json={"request_id": rid, "label": 5.5}).status_code == 202
