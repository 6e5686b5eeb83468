from __future__ import annotations

import numpy as np
import pytest

from bandit import ArmHealth, CanaryConfig, ThompsonConfig
from bandit.allocation import Allocation, allocate
from bandit.stats import ArmStats

CONFIG = CanaryConfig("cand", "ctrl", max_error_rate=0.02, max_p99_latency_ms=250.0)
HEALTHY = {"cand": ArmHealth(requests=5000, errors=10, p99_latency_ms=120.0)}


def binary(successes: float, n: float) -> ArmStats:
    return ArmStats(n, successes, successes)


def step(
    control: ArmStats,
    candidate: ArmStats,
    previous: dict[str, float] | None,
    *,
    config: CanaryConfig = CONFIG,
    health: dict[str, ArmHealth] | None = None,
) -> Allocation:
    return allocate(
        [("ctrl", control), ("cand", candidate)],
        config,
        kind="binary",
        rng=np.random.default_rng(0),
        previous=previous,
        health=HEALTHY if health is None else health,
    )


def shares(candidate: float) -> dict[str, float]:
    return {"ctrl": 1 - candidate, "cand": candidate}


# Equal click-through at large n: non-inferior within 5% of the control's mean.
EQUAL = (binary(5000, 50_000), binary(5000, 50_000))


def test_the_first_allocation_starts_at_the_first_stage() -> None:
    got = step(ArmStats(), ArmStats(), None)
    assert got.weights == pytest.approx(shares(0.01))
    assert (got.decision, got.stage) == ("advance", 0.01)


def test_a_healthy_non_inferior_candidate_climbs_one_stage_per_allocation() -> None:
    seen = []
    previous = shares(0.01)
    for _ in range(6):
        got = step(*EQUAL, previous)
        seen.append((got.decision, got.stage))
        previous = got.weights
    assert seen == [
        ("advance", 0.05),
        ("advance", 0.25),
        ("advance", 0.5),
        ("advance", 1.0),
        ("hold", 1.0),
        ("hold", 1.0),
    ]
    assert "non-inferior to 'ctrl'" in step(*EQUAL, shares(0.05)).reason


def test_a_guardrail_breach_rolls_back_and_stays_rolled_back() -> None:
    sick = {"cand": ArmHealth(requests=5000, errors=400, p99_latency_ms=120.0)}
    got = step(*EQUAL, shares(0.25), health=sick)
    assert (got.decision, got.weights) == ("rollback", shares(0.0))
    assert got.reason == "Rolled back 'cand' to 0%: its error rate 0.08 exceeds the limit 0.02."
    after = step(*EQUAL, got.weights)
    assert (after.decision, after.weights) == ("hold", shares(0.0))
    slow = {"cand": ArmHealth(requests=5000, errors=0, p99_latency_ms=900.0)}
    assert step(*EQUAL, shares(0.25), health=slow).decision == "rollback"


def test_a_clearly_worse_candidate_rolls_back() -> None:
    got = step(binary(5000, 50_000), binary(4000, 50_000), shares(0.05))
    assert (got.decision, got.stage) == ("rollback", 0.0)
    assert "worse than 'ctrl' by more than the margin" in got.reason


def test_without_enough_evidence_the_stage_holds() -> None:
    few = step(binary(9, 90), binary(1, 10), shares(0.05))
    assert (few.decision, few.stage) == ("hold", 0.05)
    assert "each arm needs 100 rewarded requests" in few.reason
    # Enough data, but too noisy to show non-inferiority: hold, not rollback.
    noisy = step(binary(100, 1000), binary(95, 1000), shares(0.05))
    assert (noisy.decision, noisy.stage) == ("hold", 0.05)
    assert "is not shown yet" in noisy.reason


def test_unknown_guardrails_block_advancing_but_not_rollback() -> None:
    unseen = step(*EQUAL, shares(0.05), health={})
    assert (unseen.decision, unseen.stage) == ("hold", 0.05)
    worse = step(binary(5000, 50_000), binary(4000, 50_000), shares(0.05), health={})
    assert worse.decision == "rollback"


def test_the_stage_is_read_through_the_floor() -> None:
    config = CanaryConfig("cand", "ctrl", min_weight=0.02)
    first = step(*EQUAL, None, config=config)
    assert first.weights["cand"] == pytest.approx(0.02 + 0.96 * 0.01)
    second = step(*EQUAL, first.weights, config=config)
    assert second.stage == 0.05
    assert second.weights["cand"] == pytest.approx(0.02 + 0.96 * 0.05)


def test_other_arms_get_only_the_floor() -> None:
    config = CanaryConfig("cand", "ctrl", min_weight=0.05)
    got = allocate(
        [("ctrl", EQUAL[0]), ("cand", EQUAL[1]), ("other", ArmStats())],
        config,
        kind="binary",
        rng=np.random.default_rng(0),
        previous=None,
    )
    assert got.weights == pytest.approx(
        {"ctrl": 0.05 + 0.85 * 0.99, "cand": 0.05 + 0.85 * 0.01, "other": 0.05}
    )


def test_continuous_rewards_use_welch_non_inferiority() -> None:
    rng = np.random.default_rng(3)
    ctrl = ArmStats.from_rewards(rng.normal(10.0, 1.0, 5000).tolist())
    cand = ArmStats.from_rewards(rng.normal(10.0, 1.0, 5000).tolist())
    got = allocate(
        [("ctrl", ctrl), ("cand", cand)],
        CanaryConfig("cand", "ctrl"),
        kind="continuous",
        rng=rng,
        previous=shares(0.05),
    )
    assert got.decision == "advance"


@pytest.mark.parametrize(
    ("names", "weights", "stage", "reason"),
    [
        (
            ["a", "c"],
            {"a": 1.0, "c": 0.0},
            0.0,
            "The canary has ended: its candidate 'b' is no longer an active arm, so its "
            "control 'a' takes all traffic.",
        ),
        (
            ["b"],
            {"b": 1.0},
            1.0,
            "The canary has ended: its control 'a' is no longer an active arm, so its "
            "candidate 'b' takes all traffic.",
        ),
        (
            ["c", "d"],
            {"c": 0.5, "d": 0.5},
            0.0,
            "The canary has ended: neither its candidate 'b' nor its control 'a' is an "
            "active arm, so traffic is split evenly over 'c', 'd'.",
        ),
    ],
)
def test_a_canary_without_its_candidate_or_control_has_ended(
    names: list[str], weights: dict[str, float], stage: float, reason: str
) -> None:
    config = CanaryConfig("b", "a", stages=(0.5, 1.0))
    arms = [(name, ArmStats(200, 100.0, 100.0)) for name in names]
    for previous in (None, {"a": 0.5, "b": 0.5}, dict.fromkeys(names, 1 / len(names))):
        result = allocate(
            arms, config, kind="binary", rng=np.random.default_rng(0), previous=previous
        )
        assert result.weights == weights
        assert (result.decision, result.stage, result.reason) == ("ended", stage, reason)


def test_a_canary_starts_at_its_first_stage_and_needs_both_of_its_arms() -> None:
    config = CanaryConfig(candidate="new", control="old", stages=(0.05, 0.5, 1.0))
    weights, reason = config.start(["old", "new", "other"])
    assert weights == {"old": 0.95, "new": 0.05, "other": 0.0}
    assert reason == "start: canary stage 1, 0.05 of traffic to 'new'"
    assert config.arms_problem(["old", "new"], experiment="e") is None
    problem = config.arms_problem(["old", "other"], experiment="e")
    assert problem is not None and "'new'" in problem and "'e'" in problem
    assert config.arms_error_code == "canary_arms_missing"


def test_other_policies_start_evenly_and_take_any_arms() -> None:
    config = ThompsonConfig()
    weights, reason = config.start(["a", "b", "c", "d"])
    assert weights == {"a": 0.25, "b": 0.25, "c": 0.25, "d": 0.25}
    assert reason == "start: equal weights over the active arms"
    assert config.arms_problem(["a"], experiment="e") is None
