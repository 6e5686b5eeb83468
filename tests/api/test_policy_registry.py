"""A policy is one module: a toy registered here runs through the API like a built-in one."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pytest
from fastapi.testclient import TestClient

from bandit import Evidence, Policy, PolicyConfig, Proposal, register_policy, unregister_policy
from tests.api.helpers import create_experiment, error_code, start, upload
from tests.api.serving_support import flush
from tests.onnx_models import linear_model

# -- the toy policy: everything a new policy needs ------------------------------------


@dataclass(frozen=True)
class MeanShareConfig(PolicyConfig):
    """Weights proportional to each arm's mean reward to the power ``exponent``."""

    kind: ClassVar[str] = "mean_share"
    default_min_weight: ClassVar[float] = 0.0

    exponent: float = 1.0


def mean_share_decide(config: MeanShareConfig, evidence: Evidence) -> Proposal:
    powers = np.array([s.mean for s in evidence.stats]) ** config.exponent
    if powers.sum() <= 0:
        return Proposal(np.ones(len(evidence.names)), "Mean share: no reward yet, an even split.")
    leader = evidence.names[int(np.argmax(powers))]
    return Proposal(powers, f"Mean share to the power {config.exponent:g}: {leader!r} leads.")


MEAN_SHARE = Policy(MeanShareConfig, mean_share_decide)

# -- the tests ------------------------------------------------------------------------


@pytest.fixture
def mean_share() -> Iterator[None]:
    register_policy(MEAN_SHARE)
    yield
    unregister_policy(MeanShareConfig.kind)


def test_a_registered_policy_allocates_through_the_api(
    client: TestClient, mean_share: None
) -> None:
    policy = {"kind": "mean_share", "exponent": 2}
    created = create_experiment(client, "toy", policy=policy)
    assert created["policy"] == policy
    assert created["min_weight"] == 0.0  # the policy's own default floor
    upload(client, "toy", "a", linear_model([1.0, 0.0, 0.0]))
    upload(client, "toy", "b", linear_model([0.0, 1.0, 0.0]))
    start(client, "toy")
    rows = [{"features": [1.0, 2.0, 3.0]}] * 200
    results = client.post("/v1/experiments/toy/predict/batch", json={"rows": rows}).json()
    served = {"a": 0, "b": 0}
    rewarded = {"a": 0.0, "b": 0.0}
    items = []
    for r in results["results"]:
        variant = r["variant"]
        # 'b' always earns, 'a' every third time: means 1 and about 1/3.
        reward = 1.0 if variant == "b" or served[variant] % 3 == 0 else 0.0
        served[variant] += 1
        rewarded[variant] += reward
        items.append({"request_id": r["request_id"], "reward": reward})
    assert client.post("/v1/feedback/batch", json={"items": items}).status_code == 202
    flush(client)

    response = client.post("/v1/experiments/toy/reallocate")

    assert response.status_code == 200, response.text
    body = response.json()
    powers = {n: (rewarded[n] / served[n]) ** 2 for n in served}
    total = sum(powers.values())
    assert body["weights"] == pytest.approx({n: p / total for n, p in powers.items()}, abs=1e-12)
    assert body["reason"].startswith("Mean share to the power 2: 'b' leads.")
    assert body["stats"]["policy"] == "mean_share"
    assert body["stats"]["decision"] == "reweight"
    assert body["stats"]["counts"] == {n: float(served[n]) for n in served}


def test_a_bad_parameter_of_a_registered_policy_is_422(
    client: TestClient, mean_share: None
) -> None:
    response = client.post(
        "/v1/experiments",
        json={"name": "x", "reward": {"kind": "binary"}, "policy": {"kind": "mean_share", "p": 1}},
    )
    assert response.status_code == 422
    assert error_code(response) == "invalid_request"
    assert response.json()["error"]["message"] == (
        "Policy 'mean_share' has no parameter 'p'; its parameters are burn_in, discount, "
        "exponent, min_weight, window."
    )


def test_an_unregistered_policy_is_refused(client: TestClient) -> None:
    body = {"name": "x", "reward": {"kind": "binary"}, "policy": {"kind": "mean_share"}}
    response = client.post("/v1/experiments", json=body)
    assert response.status_code == 422
    assert "policy.kind" in response.json()["error"]["message"]
