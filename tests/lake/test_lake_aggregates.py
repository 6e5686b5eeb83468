"""Incremental aggregates agree with a full recomputation over the decisions view."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import Engine

from lake.aggregates import LakeAggregator, latency_quantile
from lake.reader import open_lake
from lake.rewards import RewardRule, reward_of
from lake.writer import LakeWriter
from tests.lake.lake_support import T0, feedback, prediction

RULES = {"exp": RewardRule("continuous")}


def _full(engine: Engine, root: Path, lookback: timedelta) -> dict[str, tuple[int, float, float]]:
    with open_lake(engine, root, lookback=lookback) as lake:
        rows = (
            lake.duckdb()
            .execute(
                "SELECT variant, count(reward), coalesce(sum(reward), 0), "
                "coalesce(sum(reward * reward), 0) FROM decisions "
                "WHERE role = 'arm' AND status = 'ok' GROUP BY variant"
            )
            .fetchall()
        )
    return {v: (int(n), float(s), float(ss)) for v, n, s, ss in rows}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_incremental_equals_full_recomputation(engine: Engine, root: Path, seed: int) -> None:
    rng = np.random.default_rng(seed)
    lookback = timedelta(minutes=30)
    aggregator = LakeAggregator(engine, root, lookback=lookback)
    preds = LakeWriter(root, engine, table="predictions", flush_rows=10_000, flush_interval_s=3600)
    fbs = LakeWriter(root, engine, table="feedback", flush_rows=10_000, flush_interval_s=3600)
    ids = [f"r{i}" for i in range(600)]
    times = {rid: T0 + timedelta(seconds=5 * i) for i, rid in enumerate(ids)}
    order = rng.permutation(len(ids))
    read = 0
    for chunk in np.array_split(order, 6):
        for i in chunk:
            rid = ids[i]
            status = "error" if rng.random() < 0.05 else "ok"
            variant = "a" if rng.random() < 0.5 else "b"
            preds.append(prediction(rid, ts=times[rid], variant=variant, status=status))
            if rng.random() < 0.3:  # feedback lands before, with or after its prediction
                delay = timedelta(minutes=float(rng.choice([1, 10, 45])))
                fbs.append(feedback(rid, ts=times[rid] + delay, reward=float(rng.normal())))
            if rng.random() < 0.1:  # a retried delivery: counted once
                fbs.append(feedback(rid, ts=times[rid] + timedelta(minutes=2), reward=5.0))
        for writer in (fbs, preds) if rng.random() < 0.5 else (preds, fbs):
            writer.flush()
        read += aggregator.update(RULES)
    preds.close()
    fbs.close()
    aggregator.update(RULES)
    expected = _full(engine, root, lookback)
    totals = aggregator.totals("exp")
    for variant in ("a", "b"):
        mine = [t for k, t in totals.items() if k.variant == variant]
        n = sum(t.n for t in mine)
        assert n == expected[variant][0]
        assert sum(t.sum for t in mine) == pytest.approx(expected[variant][1], abs=1e-9)
        assert sum(t.sum_sq for t in mine) == pytest.approx(expected[variant][2], abs=1e-9)
    served = sum(t.served for t in totals.values())
    assert served == 600
    # Every row was read once: the aggregator never rescans old files.
    assert read <= preds.rows_written + fbs.rows_written


def test_an_update_reads_only_new_files(engine: Engine, root: Path) -> None:
    aggregator = LakeAggregator(engine, root, lookback=timedelta(hours=1))
    with LakeWriter(root, engine, table="predictions") as writer:
        for i in range(100):
            writer.append(prediction(f"old{i}"))
        writer.flush()
        assert aggregator.update(RULES) == 100
        assert aggregator.update(RULES) == 0
        for i in range(7):
            writer.append(prediction(f"new{i}"))
        writer.flush()
        assert aggregator.update(RULES) == 7
    assert aggregator.pending == 107


def test_ipw_sums_use_the_logged_propensity(engine: Engine, root: Path) -> None:
    aggregator = LakeAggregator(engine, root, lookback=timedelta(hours=1))
    with (
        LakeWriter(root, engine, table="predictions") as p,
        LakeWriter(root, engine, table="feedback") as f,
    ):
        for i, r in enumerate([1.0, 0.0, 1.0]):
            p.append(prediction(f"q{i}"))
            f.append(feedback(f"q{i}", reward=r))
    aggregator.update(RULES)
    (totals,) = aggregator.totals("exp").values()
    # propensity 0.25 in the fixture rows: w = 4
    assert (totals.n, totals.sum_w, totals.sum_wr, totals.sum_w2, totals.max_w) == (
        3,
        12.0,
        8.0,
        48.0,
        4.0,
    )
    ipw = totals.ipw(n_total=3)
    assert ipw.sum_w2r2 == 32.0


@pytest.mark.parametrize(
    ("rule", "label", "prediction", "expected"),
    [
        (RewardRule("label", "accuracy"), "3.0", 3.0, 1.0),
        (RewardRule("label", "accuracy"), "3", 2.0, 0.0),
        (RewardRule("label", "accuracy"), "cat", 1.0, 0.0),
        (RewardRule("label", "neg_abs_error"), "2.5", 1.0, -1.5),
        (RewardRule("label", "neg_squared_error"), "2.5", 1.0, -2.25),
        (RewardRule("label", "neg_abs_error"), "tall", 1.0, None),
        (RewardRule("label", "accuracy"), "1", None, None),
    ],
)
def test_label_rewards(
    rule: RewardRule, label: str, prediction: float | None, expected: float | None
) -> None:
    assert reward_of(rule, reward=None, label=label, prediction=prediction) == expected


def test_latency_quantile_is_within_a_bucket() -> None:
    rng = np.random.default_rng(3)
    latencies = rng.lognormal(mean=0.0, sigma=1.0, size=20_000)
    edges = 0.01 * 1.1 ** np.arange(1, 167)
    histogram = np.bincount(np.searchsorted(edges, latencies), minlength=166)[:166]
    for q in (0.5, 0.99):
        true = float(np.quantile(latencies, q))
        estimate = latency_quantile(histogram.astype(np.int64), q)
        assert estimate is not None
        assert true <= estimate <= true * 1.1 + 1e-9
    assert latency_quantile(np.zeros(166, dtype=np.int64), 0.5) is None
