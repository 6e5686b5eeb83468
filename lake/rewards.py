"""Turning feedback into a reward: a number as sent, or a label scored against the prediction.

The rule is defined once, by :class:`RewardRule`, and rendered three ways: per pair in
Python (:func:`reward_of`, for notebooks), as a polars expression (:meth:`RewardRule.expr`,
for the incremental aggregates) and as DuckDB SQL (:meth:`RewardRule.sql`, for the
dashboard's time series). ``tests/lake/test_lake_rewards.py`` checks the three against
each other on random feedback of every kind and metric.

A label is a number when it is ASCII text that Python's ``float`` reads (surrounding
whitespace allowed, no ``_`` digit separators): the one syntax that Python, polars and
DuckDB all read alike.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import polars as pl

__all__ = ["RewardRule", "reward_of"]

Metric = Literal["accuracy", "neg_abs_error", "neg_squared_error"]

# Non-finite predictions print like this in Python's repr, DuckDB and (but for NaN) polars.
_NON_FINITE_TEXT = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}


@dataclass(frozen=True, slots=True)
class RewardRule:
    """How an experiment's feedback becomes a reward.

    ``kind`` is ``"binary"`` or ``"continuous"`` (the feedback carries the reward) or
    ``"label"`` (the reward is ``metric(label, prediction)``).
    """

    kind: Literal["binary", "continuous", "label"]
    metric: Metric | None = None

    def sql(
        self, *, reward: str = "reward", label: str = "label", prediction: str = "prediction"
    ) -> str:
        """A DuckDB expression of the reward over the named columns (SQL text, quoted by the
        caller), ``NULL`` where :func:`reward_of` gives ``None`` or a non-finite number."""
        if self.kind != "label":
            return f"CASE WHEN isfinite({reward}) THEN {reward} END"
        number = f"TRY_CAST(CASE WHEN NOT contains({label}, '_') THEN {label} END AS DOUBLE)"
        if self.metric in (None, "accuracy"):
            text = " ".join(
                f"WHEN {label} = '{t}' THEN {_sql_is(prediction, v)}"
                for t, v in _NON_FINITE_TEXT.items()
            )
            return (
                f"CASE WHEN {label} IS NULL OR {prediction} IS NULL THEN NULL "
                f"WHEN isfinite({number}) THEN CAST({number} = {prediction} AS DOUBLE) "
                f"ELSE CASE {text} ELSE 0.0 END END"
            )
        error = f"({number} - {prediction})"
        score = f"-abs({error})" if self.metric == "neg_abs_error" else f"-({error} * {error})"
        return f"CASE WHEN isfinite({score}) THEN {score} END"

    def expr(
        self, *, reward: str = "reward", label: str = "label", prediction: str = "prediction"
    ) -> pl.Expr:
        """The same reward as a polars expression over the named columns (null where
        :meth:`sql` gives ``NULL``)."""
        if self.kind != "label":
            value = pl.col(reward)
            return pl.when(value.is_finite()).then(value)
        text, predicted = pl.col(label), pl.col(prediction)
        number = pl.when(
            text.str.contains(r"^[\x00-\x7f]*$") & ~text.str.contains("_", literal=True)
        ).then(text.str.strip_chars().cast(pl.Float64, strict=False))
        if self.metric in (None, "accuracy"):
            by_text = pl.lit(0.0)
            for t, v in _NON_FINITE_TEXT.items():
                same = predicted.is_nan() if math.isnan(v) else predicted == v
                by_text = pl.when(text == t).then(same.cast(pl.Float64)).otherwise(by_text)
            return (
                pl.when(text.is_null() | predicted.is_null())
                .then(None)
                .when(number.is_finite())
                .then((number == predicted).cast(pl.Float64))
                .otherwise(by_text)
            )
        error = number - predicted
        score = -error.abs() if self.metric == "neg_abs_error" else -(error * error)
        return pl.when(score.is_finite()).then(score)


def _sql_is(column: str, value: float) -> str:
    if math.isnan(value):
        return f"CAST(isnan({column}) AS DOUBLE)"
    return f"CAST({column} = {'-' if value < 0 else ''}'inf'::DOUBLE AS DOUBLE)"


def _as_number(label: str) -> float | None:
    if "_" in label or not label.isascii():
        return None
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
