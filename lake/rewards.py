"""Turning feedback into a reward: a number as sent, or a label scored against the prediction."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

__all__ = ["RewardRule", "reward_of"]

Metric = Literal["accuracy", "neg_abs_error", "neg_squared_error"]


@dataclass(frozen=True, slots=True)
class RewardRule:
    """How an experiment's feedback becomes a reward.

    ``kind`` is ``"binary"`` or ``"continuous"`` (the feedback carries the reward) or
    ``"label"`` (the reward is ``metric(label, prediction)``).
    """

    kind: Literal["binary", "continuous", "label"]
    metric: Metric | None = None


def _as_number(label: str) -> float | None:
    try:
        value = float(label)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def reward_of(
    rule: RewardRule, *, reward: float | None, label: str | None, prediction: float | None
) -> float | None:
    """The reward of one (prediction, feedback) pair, or ``None`` when it cannot be scored.

    ``accuracy`` is 1 when the label equals the predicted class (numerically when the
    label is a number, else as text), 0 otherwise; ``neg_abs_error`` is
    :math:`-|y - \\hat y|` and ``neg_squared_error`` is :math:`-(y - \\hat y)^2`.
    """
    if rule.kind != "label":
        return reward
    if label is None or prediction is None:
        return None
    number = _as_number(label)
    if rule.metric in (None, "accuracy"):
        if number is not None:
            return 1.0 if number == prediction else 0.0
        return 1.0 if label == repr(prediction) else 0.0
    if number is None:
        return None
    error = number - prediction
    return -abs(error) if rule.metric == "neg_abs_error" else -(error * error)
