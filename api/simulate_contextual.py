"""``banditlake simulate --contextual``: a supervised data set replayed as a contextual bandit.

Arms are the label's classes; at each round the policy sees the row's features,
chooses a class and learns only whether it was the label (reward 1) or not (0).
Every seed replays the rows in its own random order (:func:`bandit.replay.replay`),
and the figures are summarised over the seeds: cumulative reward, and regret
against the best fixed arm (always the most frequent class) and against the best
per-context choice (always the label, so ``rounds - cumulative reward``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = ["ContextualData", "is_replay_policy_list", "load_supervised", "run_contextual"]


class DataError(ValueError):
    """The data file cannot be replayed; the message names the problem."""


def is_replay_policy_list(value: object) -> bool:
    """Whether ``value`` lists replay policies, comma-separated (``--policy`` of a replay)."""
    from bandit.replay import REPLAY_POLICIES

    if not isinstance(value, str):
        return False
    parts = [part.strip() for part in value.split(",")]
    return bool(parts) and all(part in REPLAY_POLICIES for part in parts)


@dataclass(frozen=True, eq=False)
class ContextualData:
    """Features ``x`` of shape ``(T, d)``, each row's class index ``y`` of shape ``(T,)``."""

    x: NDArray[np.float64]
    y: NDArray[np.intp]
    features: tuple[str, ...]
    classes: tuple[str, ...]


def _read_table(path: Path) -> Any:
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    if not path.is_file():
        msg = f"--data {str(path)!r} is not a file"
        raise DataError(msg)
    suffix = path.suffix.lower()
    try:
        if suffix in (".parquet", ".pq"):
            return pq.read_table(path)
        if suffix == ".csv":
            return pacsv.read_csv(path)
    except (pa.ArrowInvalid, OSError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        msg = f"--data {str(path)!r} cannot be read: {first}"
        raise DataError(msg) from None
    msg = f"--data must be a .parquet or .csv file, but {str(path)!r} is neither"
    raise DataError(msg)


def load_supervised(path: Path, *, features: Sequence[str], label: str) -> ContextualData:
    """Read numeric ``features`` and the ``label`` column of a Parquet or CSV file.

    Raises DataError naming a missing column, a non-numeric feature, or the
    first row with a missing or non-finite value.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    table = _read_table(path)
    names = tuple(features)
    if not names:
        msg = "--features needs at least one column name"
        raise DataError(msg)
    if len(set(names)) != len(names):
        msg = f"--features names a column twice: {','.join(names)}"
        raise DataError(msg)
    if label in names:
        msg = f"the label {label!r} cannot also be a feature"
        raise DataError(msg)
    for name in (*names, label):
        if name not in table.column_names:
            msg = f"--data has no column {name!r}; its columns are {', '.join(table.column_names)}"
            raise DataError(msg)
    if table.num_rows < 2:
        msg = f"--data needs at least 2 rows to replay, but it has {table.num_rows}"
        raise DataError(msg)
    columns = []
    for name in names:
        column = table.column(name)
        if not (pa.types.is_integer(column.type) or pa.types.is_floating(column.type)):
            msg = f"feature column {name!r} must be numeric, but it holds {column.type}"
            raise DataError(msg)
        values = np.asarray(pc.fill_null(pc.cast(column, pa.float64()), math.nan))
        bad = np.flatnonzero(~np.isfinite(values))
        if bad.size:
            row = int(bad[0])
            msg = f"feature {name!r} is missing or not finite in row {row + 1} of the data"
            raise DataError(msg)
        columns.append(values)
    labels = table.column(label)
    nulls = np.asarray(labels.is_null())
    if nulls.any():
        msg = (
            f"the label {label!r} is missing in row {int(np.flatnonzero(nulls)[0]) + 1} of the data"
        )
        raise DataError(msg)
    as_text = np.asarray(pc.cast(labels, pa.string()).to_pylist(), dtype=object)
    classes, y = np.unique(as_text, return_inverse=True)
    if len(classes) < 2:
        msg = f"the label {label!r} has {len(classes)} class; a bandit needs at least 2 arms"
        raise DataError(msg)
    return ContextualData(
        np.column_stack(columns), y.astype(np.intp), names, tuple(str(c) for c in classes)
    )


def _summary(values: Sequence[float]) -> dict[str, float]:
    array = np.asarray(values, dtype=np.float64)
    p5, p50, p95 = np.percentile(array, [5, 50, 95])
    return {
        "mean": float(array.mean()),
        "p5": float(p5),
        "p50": float(p50),
        "p95": float(p95),
    }


def run_contextual(
    data: ContextualData,
    *,
    policies: Sequence[str],
    seeds: int,
    batch: int,
    ridge: float,
    exploration: float,
) -> dict[str, Any]:
    """Replay each policy over ``seeds`` random orders of the rows; the summary as a plain dict."""
    from bandit.contextual import LinearConfig
    from bandit.replay import classification_rewards, replay

    linear = LinearConfig(ridge=ridge, exploration=exploration, draws=1)
    rewards_all = classification_rewards(data.y, np.arange(len(data.classes)))
    rounds = int(data.y.shape[0])
    out: dict[str, Any] = {}
    for policy in policies:
        cumulative, fixed, context = [], [], []
        for seed in range(seeds):
            order = np.random.default_rng(seed).permutation(rounds)
            result = replay(
                data.x[order],
                rewards_all[order],
                policy=policy,  # type: ignore[arg-type]
                rng=np.random.default_rng([seed, 1]),
                batch=batch,
                linear=linear,
            )
            cumulative.append(result.cumulative_reward)
            fixed.append(result.regret_fixed)
            context.append(result.regret_context)
        out[policy] = {
            "cumulative_reward": _summary(cumulative),
            "average_reward": float(np.mean(cumulative)) / rounds,
            "regret_fixed": _summary(fixed),
            "regret_context": _summary(context),
        }
    return out
