from __future__ import annotations

import pytest

from bandit import (
    CanaryConfig,
    EpsilonGreedyConfig,
    FixedConfig,
    PolicyConfig,
    ThompsonConfig,
    Ucb1Config,
    policy_from_dict,
    policy_to_dict,
)
from bandit.errors import InvalidInputError, InvalidPolicyError


@pytest.mark.parametrize(
    ("kind", "params", "expected"),
    [
        ("thompson", {}, ThompsonConfig()),
        (
            "thompson",
            {"kind": "thompson", "min_weight": 0.05, "burn_in": 200},
            ThompsonConfig(min_weight=0.05, burn_in=200),
        ),
        (
            "epsilon_greedy",
            {"epsilon": 0.2, "discount": 0.99},
            EpsilonGreedyConfig(epsilon=0.2, discount=0.99),
        ),
        ("ucb1", {"c": 2, "window": 24}, Ucb1Config(c=2.0, window=24)),
        ("fixed", {"weights": {"a": 0.25, "b": 0.75}}, FixedConfig({"a": 0.25, "b": 0.75})),
        (
            "canary",
            {"candidate": "v2", "control": "v1", "stages": [0.1, 1], "max_error_rate": 0.01},
            CanaryConfig("v2", "v1", stages=(0.1, 1.0), max_error_rate=0.01),
        ),
    ],
)
def test_parses_every_policy_kind(
    kind: str, params: dict[str, object], expected: PolicyConfig
) -> None:
    got = policy_from_dict(kind, params)
    assert got == expected
    assert got.kind == kind


@pytest.mark.parametrize(
    "config",
    [
        ThompsonConfig(min_weight=0.1, draws=500),
        EpsilonGreedyConfig(epsilon=0.05, window=3),
        Ucb1Config(c=0.5),
        FixedConfig({"x": 1.0}),
        CanaryConfig("b", "a", stages=(0.2, 0.6), max_p99_latency_ms=300.0),
    ],
)
def test_to_dict_round_trips(config: PolicyConfig) -> None:
    as_dict = policy_to_dict(config)
    assert as_dict["kind"] == config.kind
    assert policy_from_dict(str(as_dict["kind"]), as_dict) == config


ERRORS = [
    (
        "softmax",
        {},
        "Unknown policy kind 'softmax'; expected one of 'canary', 'epsilon_greedy', 'fixed', 'thompson', 'ucb1'.",
    ),
    (
        "thompson",
        {"eps": 0.1},
        "Policy 'thompson' has no parameter 'eps'; its parameters are burn_in, discount, draws, min_weight, window.",
    ),
    (
        "thompson",
        {"kind": "ucb1"},
        "The parameters name the policy kind 'ucb1', but 'thompson' was given.",
    ),
    (
        "epsilon_greedy",
        {"epsilon": "0.1"},
        "Parameter 'epsilon' of policy 'epsilon_greedy' must be a number, but '0.1' was given.",
    ),
    (
        "epsilon_greedy",
        {"epsilon": True},
        "Parameter 'epsilon' of policy 'epsilon_greedy' must be a number, but True was given.",
    ),
    ("epsilon_greedy", {"epsilon": 1.5}, "epsilon must be in [0, 1], but 1.5 was given."),
    (
        "thompson",
        {"burn_in": 10.5},
        "Parameter 'burn_in' of policy 'thompson' must be an integer, but 10.5 was given.",
    ),
    ("thompson", {"burn_in": -3}, "burn_in must be non-negative, but -3 was given."),
    ("thompson", {"min_weight": 1.5}, "min_weight must be in [0, 1], but 1.5 was given."),
    ("thompson", {"discount": 0}, "discount must be in (0, 1], but 0.0 was given."),
    ("thompson", {"window": 0}, "window must be a positive number of buckets, but 0 was given."),
    ("thompson", {"draws": 0}, "draws must be at least 1, but 0 was given."),
    (
        "thompson",
        {"min_weight": float("nan")},
        "Parameter 'min_weight' of policy 'thompson' must be finite, but nan was given.",
    ),
    ("ucb1", {"c": -1}, "c must be finite and non-negative, but -1.0 was given."),
    ("fixed", {}, "Policy 'fixed' needs the parameter 'weights'."),
    (
        "fixed",
        {"weights": [0.5, 0.5]},
        "Parameter 'weights' of policy 'fixed' must map arm names to numbers, but [0.5, 0.5] was given.",
    ),
    (
        "fixed",
        {"weights": {"a": 0.5, "b": 0.4}},
        "Fixed weights must sum to 1, but they sum to 0.9.",
    ),
    (
        "fixed",
        {"weights": {"a": -0.5, "b": 1.5}},
        "The fixed weight of arm 'a' must be finite and non-negative, but -0.5 was given.",
    ),
    ("fixed", {"weights": {}}, "weights must name at least one arm."),
    ("canary", {"candidate": "a"}, "Policy 'canary' needs the parameter 'control'."),
    (
        "canary",
        {"candidate": "a", "control": "a"},
        "The candidate and the control must be two different arms, but 'a' and 'a' were given.",
    ),
    (
        "canary",
        {"candidate": "a", "control": 7},
        "Parameter 'control' of policy 'canary' must be a string, but 7 was given.",
    ),
    (
        "canary",
        {"candidate": "a", "control": "b", "stages": [0.5, 0.2]},
        "stages must be strictly increasing shares in (0, 1], but (0.5, 0.2) was given.",
    ),
    (
        "canary",
        {"candidate": "a", "control": "b", "stages": "0.1,0.5"},
        "Parameter 'stages' of policy 'canary' must be a list of numbers, but '0.1,0.5' was given.",
    ),
    (
        "canary",
        {"candidate": "a", "control": "b", "alpha": 1},
        "alpha must be in (0, 1), but 1.0 was given.",
    ),
    (
        "canary",
        {"candidate": "a", "control": "b", "max_error_rate": 2},
        "max_error_rate must be in [0, 1], but 2.0 was given.",
    ),
]


@pytest.mark.parametrize(("kind", "params", "message"), ERRORS)
def test_invalid_policies_are_rejected_with_exact_messages(
    kind: str, params: dict[str, object], message: str
) -> None:
    with pytest.raises(InvalidPolicyError) as caught:
        policy_from_dict(kind, params)
    assert str(caught.value) == message
    assert isinstance(caught.value, InvalidInputError)
