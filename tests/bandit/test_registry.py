"""The policy registry, and parameters parsed by their configuration's type annotations."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pytest

from bandit import (
    Evidence,
    Policy,
    PolicyConfig,
    Proposal,
    allocate,
    get_policy,
    policy_from_dict,
    policy_kinds,
    policy_to_dict,
    register_policy,
    unregister_policy,
)
from bandit.config import default_min_weight, required_parameters
from bandit.errors import InvalidPolicyError
from bandit.stats import ArmStats


@dataclass(frozen=True)
class EveryTypeConfig(PolicyConfig):
    """One parameter of each annotation policies may use."""

    kind: ClassVar[str] = "every_type"

    label: str
    scale: float = 1.0
    rounds: int = 1
    verbose: bool = False
    cap: float | None = None
    steps: tuple[float, ...] = (0.5, 1.0)
    shares: Mapping[str, float] | None = None


def first_arm(config: EveryTypeConfig, evidence: Evidence) -> Proposal:
    distribution = np.zeros(len(evidence.names))
    distribution[0] = 1.0
    return Proposal(distribution, f"{config.label}: all to {evidence.names[0]!r}.")


@pytest.fixture
def every_type() -> Iterator[None]:
    register_policy(Policy(EveryTypeConfig, first_arm))
    yield
    unregister_policy(EveryTypeConfig.kind)


def test_the_built_in_policies_are_registered_in_the_order_the_api_lists_them() -> None:
    assert policy_kinds() == ("thompson", "epsilon_greedy", "ucb1", "fixed", "canary")
    assert {k: default_min_weight(k) for k in policy_kinds()} == {
        "thompson": 0.02,
        "epsilon_greedy": 0.02,
        "ucb1": 0.02,
        "fixed": 0.0,
        "canary": 0.0,
    }
    assert required_parameters("canary") == {"candidate", "control"}
    assert required_parameters("thompson") == frozenset()


def test_a_registered_policy_parses_allocates_and_round_trips(every_type: None) -> None:
    assert get_policy("every_type").kind == "every_type"
    params = {
        "label": "toy",
        "scale": 2,
        "rounds": 3,
        "verbose": True,
        "cap": None,
        "steps": [0.25, 1],
        "shares": {"a": 1},
        "min_weight": 0.1,
    }
    config = policy_from_dict("every_type", params)
    assert config == EveryTypeConfig(
        "toy",
        scale=2.0,
        rounds=3,
        verbose=True,
        steps=(0.25, 1.0),
        shares={"a": 1.0},
        min_weight=0.1,
    )
    assert policy_from_dict("every_type", policy_to_dict(config)) == config
    got = allocate(
        [("a", ArmStats()), ("b", ArmStats())], config, kind="binary", rng=np.random.default_rng(0)
    )
    assert got.weights == pytest.approx({"a": 0.9, "b": 0.1})
    assert got.reason == "toy: all to 'a'. Every arm keeps at least 0.1 of traffic."
    assert (got.policy, got.decision) == ("every_type", "reweight")


@pytest.mark.parametrize(
    ("params", "message"),
    [
        (
            {"label": "x", "rounds": 1.5},
            "Parameter 'rounds' of policy 'every_type' must be an integer, but 1.5 was given.",
        ),
        (
            {"label": "x", "verbose": 1},
            "Parameter 'verbose' of policy 'every_type' must be true or false, but 1 was given.",
        ),
        (
            {"label": "x", "cap": "high"},
            "Parameter 'cap' of policy 'every_type' must be a number, but 'high' was given.",
        ),
        (
            {"label": "x", "steps": 0.5},
            "Parameter 'steps' of policy 'every_type' must be a list of numbers, "
            "but 0.5 was given.",
        ),
        (
            {"label": "x", "shares": [1.0]},
            "Parameter 'shares' of policy 'every_type' must map arm names to numbers, "
            "but [1.0] was given.",
        ),
        ({}, "Policy 'every_type' needs the parameter 'label'."),
    ],
)
def test_parameters_are_checked_by_their_annotation(
    every_type: None, params: dict[str, object], message: str
) -> None:
    with pytest.raises(InvalidPolicyError) as caught:
        policy_from_dict("every_type", params)
    assert str(caught.value) == message


def test_unregistering_makes_the_kind_unknown(every_type: None) -> None:
    unregister_policy("every_type")
    with pytest.raises(InvalidPolicyError, match="Unknown policy kind 'every_type'"):
        policy_from_dict("every_type", {"label": "x"})


def test_a_kind_is_registered_once(every_type: None) -> None:
    with pytest.raises(ValueError, match="already registered"):
        register_policy(Policy(EveryTypeConfig, first_arm))
    register_policy(Policy(EveryTypeConfig, first_arm), replace=True)


@dataclass(frozen=True)
class UnparsableConfig(PolicyConfig):
    kind: ClassVar[str] = "unparsable"

    matrix: list[list[float]] | None = None


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (UnparsableConfig, "Parameter 'matrix' of policy 'unparsable' has the annotation"),
        (dict, "must be a PolicyConfig dataclass"),
    ],
)
def test_a_configuration_that_cannot_be_parsed_is_refused(config: type, message: str) -> None:
    with pytest.raises(TypeError, match=message):
        register_policy(Policy(config, first_arm))
    assert "unparsable" not in policy_kinds()
