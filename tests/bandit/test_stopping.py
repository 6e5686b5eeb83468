"""StoppingRule: the winner the reallocator promotes and the report names."""

from __future__ import annotations

import pytest

from bandit import StoppingRule
from bandit.errors import InvalidInputError

NAMES = ["a", "b", "c"]


@pytest.mark.parametrize(
    ("rule", "prob_best", "loss", "winner"),
    [
        (StoppingRule(), [0.02, 0.96, 0.02], [0.01, 0.0005, 0.02], "b"),
        (StoppingRule(), [0.02, 0.95, 0.03], [0.01, 0.001, 0.02], "b"),  # both bounds inclusive
        (StoppingRule(), [0.02, 0.94, 0.04], [0.01, 0.0005, 0.02], None),
        (StoppingRule(), [0.02, 0.96, 0.02], [0.01, 0.002, 0.02], None),
        (StoppingRule(prob_best=0.99), [0.0, 0.98, 0.02], [0.1, 0.0, 0.1], None),
        (StoppingRule(expected_loss=0.01), [0.0, 0.96, 0.04], [0.1, 0.005, 0.1], "b"),
        # Only the leader is considered, not an arm with a smaller loss.
        (StoppingRule(), [0.96, 0.04, 0.0], [0.002, 0.0, 0.5], None),
    ],
)
def test_the_leader_wins_when_both_thresholds_hold(
    rule: StoppingRule, prob_best: list[float], loss: list[float], winner: str | None
) -> None:
    assert rule.winner(NAMES, prob_best, loss) == winner


def test_one_arm_never_wins() -> None:
    assert StoppingRule().winner(["a"], [1.0], [0.0]) is None


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"prob_best": 0.5}, "prob_best must be in (0.5, 1), but 0.5 was given."),
        ({"prob_best": 1.0}, "prob_best must be in (0.5, 1), but 1.0 was given."),
        ({"expected_loss": -0.1}, "expected_loss must be non-negative, but -0.1 was given."),
    ],
)
def test_impossible_rules_are_rejected(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(InvalidInputError) as caught:
        StoppingRule(**kwargs)  # type: ignore[arg-type]
    assert str(caught.value) == message


def test_the_summaries_must_cover_every_arm() -> None:
    with pytest.raises(InvalidInputError, match="one entry per arm"):
        StoppingRule().winner(NAMES, [0.5, 0.5], [0.0, 0.0, 0.0])
