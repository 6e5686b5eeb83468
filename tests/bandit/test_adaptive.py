"""Adaptive-valid estimators against references where they must coincide."""

from __future__ import annotations

import numpy as np
import pytest
from statsmodels.stats.proportion import proportion_confint
from statsmodels.stats.weightstats import DescrStatsW

from bandit.adaptive import BatchStats, adaptive_intervals, intervals_from_batches
from bandit.errors import InvalidInputError
from bandit.ipw import IpwStats, aipw_difference, aipw_estimate


def _rows(
    rng: np.random.Generator, batches: int, size: int, e: list[float]
) -> dict[str, np.ndarray]:
    k = len(e)
    action = rng.choice(k, size=batches * size, p=e)
    reward = rng.normal(1.0 + 0.1 * action, 1.0)
    batch = np.repeat(np.arange(batches), size)
    pscore = np.asarray(e)[action]
    return {"reward": reward, "action": action, "pscore": pscore, "batch": batch}


def _strata(rows: dict[str, np.ndarray], arm: int, e: float) -> list[tuple[IpwStats, float]]:
    """IpwStats per batch with its predictable q: the arm's mean over earlier batches."""
    out = []
    seen_n = seen_s = 0.0
    w = 1.0 / e
    for b in np.unique(rows["batch"]):
        in_b = rows["batch"] == b
        r = rows["reward"][in_b & (rows["action"] == arm)]
        stats = IpwStats(
            float(in_b.sum()),
            float(len(r)),
            w * len(r),
            w * r.sum(),
            w * w * len(r),
            w * w * r.sum(),
            w * w * (r * r).sum(),
            w,
        )
        out.append((stats, seen_s / seen_n if seen_n else 0.0))
        seen_n += len(r)
        seen_s += r.sum()
    return out


def test_on_a_fixed_split_the_weighted_aipw_is_the_plain_aipw() -> None:
    e = [0.5, 0.3, 0.2]
    rows = _rows(np.random.default_rng(3), batches=6, size=500, e=e)
    result = adaptive_intervals(**rows, n_actions=3, kind="continuous")
    for arm in range(3):
        reference = aipw_estimate(_strata(rows, arm, e[arm]))
        assert result.arms[arm].value == pytest.approx(reference.value, abs=1e-9)
        assert result.arms[arm].std_error == pytest.approx(reference.std_error, abs=1e-9)
        assert result.arms[arm].ci_low == pytest.approx(reference.ci_low, abs=1e-9)
    for arm in (1, 2):
        reference_d = aipw_difference(_strata(rows, 0, e[0]), _strata(rows, arm, e[arm]))
        d = result.differences[arm]
        assert d.diff == pytest.approx(reference_d.diff, abs=1e-9)
        assert d.std_error == pytest.approx(reference_d.std_error, abs=1e-9)
        assert d.p_value == pytest.approx(reference_d.p_value, abs=1e-9)


def test_one_arm_served_everything_gives_wilsons_interval() -> None:
    stats = BatchStats.from_arrays(
        n_total=[400], n=[[400]], sum_r=[[37]], sum_r2=[[37]], propensity=[[1.0]]
    )
    est = intervals_from_batches(stats, kind="binary").arms[0]
    low, high = proportion_confint(37, 400, alpha=0.05, method="wilson")
    assert est.value == pytest.approx(37 / 400, abs=1e-12)
    assert (est.ci_low, est.ci_high) == (
        pytest.approx(low, abs=1e-9),
        pytest.approx(high, abs=1e-9),
    )


def test_batched_ols_on_one_batch_is_the_classical_z_interval() -> None:
    rng = np.random.default_rng(5)
    x = rng.normal(2.0, 1.5, 300)
    stats = BatchStats.from_arrays(
        n_total=[300], n=[[300]], sum_r=[[x.sum()]], sum_r2=[[(x * x).sum()]], propensity=[[1.0]]
    )
    est = intervals_from_batches(stats, estimator="batched_ols").arms[0]
    low, high = DescrStatsW(x).zconfint_mean(alpha=0.05)
    assert est.value == pytest.approx(x.mean(), abs=1e-9)
    assert (est.ci_low, est.ci_high) == (
        pytest.approx(low, abs=1e-9),
        pytest.approx(high, abs=1e-9),
    )


def test_rows_and_sums_give_the_same_answer() -> None:
    rng = np.random.default_rng(9)
    rows = _rows(rng, batches=4, size=300, e=[0.6, 0.4])
    rows["reward"] = (rng.random(len(rows["reward"])) < 0.2).astype(float)
    from_rows = adaptive_intervals(**rows, n_actions=2)  # binary, detected
    n = np.zeros((4, 2))
    s = np.zeros((4, 2))
    for b, a, r in zip(rows["batch"], rows["action"], rows["reward"], strict=True):
        n[b, a] += 1
        s[b, a] += r
    stats = BatchStats.from_arrays(
        n_total=n.sum(axis=1), n=n, sum_r=s, sum_r2=s, propensity=np.tile([0.6, 0.4], (4, 1))
    )
    from_sums = intervals_from_batches(stats, kind="binary")
    for mine, theirs in zip(from_rows.arms, from_sums.arms, strict=True):
        assert mine.value == pytest.approx(theirs.value, abs=1e-12)
        assert mine.ci_low == pytest.approx(theirs.ci_low, abs=1e-12)
        assert mine.ci_high == pytest.approx(theirs.ci_high, abs=1e-12)
    assert from_rows.differences[1].p_value == pytest.approx(
        from_sums.differences[1].p_value, abs=1e-12
    )
    d = from_rows.differences[1]
    assert d.ci_low <= d.diff <= d.ci_high
    # The score interval and its test agree: 0 is outside exactly when p < alpha.
    assert (d.ci_low > 0 or d.ci_high < 0) == (d.p_value < 0.05)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"pscore": [0.5, 0.0]}, "pscore must be in (0, 1]"),
        ({"action": [0, 2]}, "action must be an integer in [0, 2)"),
        ({"reward": [1.0, float("nan")]}, "reward must be finite"),
        ({"batch": [0]}, "1-d arrays of one length"),
        ({"alpha": 1.5}, "alpha must be in (0, 1)"),
        ({"estimator": "ols"}, "estimator must be one of"),
        ({"control": 5}, "control must be an arm index"),
    ],
)
def test_bad_input_is_named(change: dict[str, object], message: str) -> None:
    args: dict[str, object] = {
        "reward": [1.0, 0.0],
        "action": [0, 1],
        "pscore": [0.5, 0.5],
        "batch": [0, 0],
        "n_actions": 2,
    }
    args.update(change)
    with pytest.raises(
        InvalidInputError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")
    ):
        adaptive_intervals(**args)  # type: ignore[arg-type]
