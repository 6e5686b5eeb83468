"""One reward rule: :func:`reward_of`, :meth:`RewardRule.expr` and :meth:`RewardRule.sql`
agree on random feedback of every kind and metric."""

from __future__ import annotations

import math

import duckdb
import numpy as np
import polars as pl
import pytest

from lake.rewards import RewardRule, reward_of

RULES = [
    RewardRule("binary"),
    RewardRule("continuous"),
    RewardRule("label"),
    RewardRule("label", "accuracy"),
    RewardRule("label", "neg_abs_error"),
    RewardRule("label", "neg_squared_error"),
]

# Label spellings the three engines could read differently: padding, signs, exponents,
# non-finite words, digit separators, non-ASCII digits and spaces, words.
_ODD_LABELS = [
    "", " ", "cat", "3", "3.0", " 3 ", "\t2\n", "+3", "3.", ".5", "-0", "1e3", "1E-2", "00012",
    "nan", "NaN", "inf", "-inf", "Infinity", "+inf", "1e400", "1_0", "1__0", "\u0663",
    "\xa03", "3\xa0", "0x10", "1,5", "1.0.0", "TRUE", "1e", "- 3",
]  # fmt: skip


def _rows(rng: np.random.Generator, n: int) -> pl.DataFrame:
    """Random (reward, label, prediction) triples, with nulls and non-finite values."""
    predictions: list[float | None] = []
    labels: list[str | None] = []
    rewards: list[float | None] = []
    specials = [None, math.nan, math.inf, -math.inf]
    for _ in range(n):
        p = float(rng.integers(0, 4)) if rng.random() < 0.5 else float(rng.normal())
        prediction = specials[rng.integers(4)] if rng.random() < 0.1 else p
        choice = rng.random()
        label: str | None
        if choice < 0.1:
            label = None
        elif choice < 0.4:
            label = str(_ODD_LABELS[rng.integers(len(_ODD_LABELS))])
        elif choice < 0.6 and prediction is not None:
            label = repr(prediction)  # the predicted class, as a client echoes it
        elif choice < 0.8:
            label = str(int(rng.integers(0, 4)))
        else:
            label = f"{rng.normal():.{rng.integers(0, 6)}f}"
        reward = specials[rng.integers(4)] if rng.random() < 0.1 else float(rng.normal())
        predictions.append(prediction)
        labels.append(label)
        rewards.append(reward)
    return pl.DataFrame(
        {"reward": rewards, "label": labels, "prediction": predictions},
        schema={"reward": pl.Float64, "label": pl.String, "prediction": pl.Float64},
    )


def _python(rule: RewardRule, frame: pl.DataFrame) -> list[float | None]:
    out = []
    for reward, label, prediction in frame.iter_rows():
        value = reward_of(rule, reward=reward, label=label, prediction=prediction)
        out.append(value if value is not None and math.isfinite(value) else None)
    return out


def _same(a: list[float | None], b: list[float | None]) -> list[int]:
    return [i for i, (x, y) in enumerate(zip(a, b, strict=True)) if x != pytest.approx(y)]


@pytest.mark.parametrize("rule", RULES, ids=lambda r: f"{r.kind}-{r.metric}")
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_python_polars_and_sql_agree(rule: RewardRule, seed: int) -> None:
    frame = _rows(np.random.default_rng(seed), 2_000)
    expected = _python(rule, frame)
    polars = frame.select(rule.expr().alias("r"))["r"].to_list()
    with duckdb.connect() as con:
        con.register("frame", frame.with_row_index("i").to_arrow())
        sql = rule.sql(reward="f.reward", label="f.label", prediction="f.prediction")
        in_sql = [row[0] for row in con.execute(f"SELECT {sql} FROM frame f ORDER BY i").fetchall()]
    assert _same(expected, polars) == []
    assert _same(expected, in_sql) == []
    assert any(v is not None for v in expected)


@pytest.mark.parametrize(
    ("rule", "label", "prediction", "expected"),
    [
        (RewardRule("label", "accuracy"), "3.0", 3.0, 1.0),
        (RewardRule("label", "accuracy"), "3", 2.0, 0.0),
        (RewardRule("label", "accuracy"), "cat", 1.0, 0.0),
        (RewardRule("label", "accuracy"), "nan", math.nan, 1.0),
        (RewardRule("label", "accuracy"), "1_0", 10.0, 0.0),
        (RewardRule("label", "neg_abs_error"), "2.5", 1.0, -1.5),
        (RewardRule("label", "neg_abs_error"), " 2.5\n", 1.0, -1.5),
        (RewardRule("label", "neg_squared_error"), "2.5", 1.0, -2.25),
        (RewardRule("label", "neg_abs_error"), "1_0", 1.0, None),
        (RewardRule("label", "neg_abs_error"), "tall", 1.0, None),
        (RewardRule("label", "accuracy"), "1", None, None),
    ],
)
def test_label_rewards(
    rule: RewardRule, label: str, prediction: float | None, expected: float | None
) -> None:
    assert reward_of(rule, reward=None, label=label, prediction=prediction) == expected
