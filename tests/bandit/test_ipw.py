from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from bandit.errors import InvalidInputError, InvalidStatsError
from bandit.frequentist import mean_interval, z_test
from bandit.ipw import IpwStats, aipw_difference, aipw_estimate, ipw_difference, ipw_estimate
from bandit.stats import ArmStats

Z = stats.norm.isf(0.025)


def logged_rows(seed: int, n: int = 3000) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Requests served by a changing two-arm allocation: chosen arm, its propensity, reward."""
    rng = np.random.default_rng(seed)
    share_of_arm1 = np.repeat([0.5, 0.3, 0.1, 0.8], n // 4)
    arm = (rng.random(n) < share_of_arm1).astype(int)
    propensity = np.where(arm == 1, share_of_arm1, 1 - share_of_arm1)
    reward = rng.normal(np.where(arm == 1, 2.0, 1.0), 1.5)
    return arm, propensity, reward


def test_ipw_matches_the_row_level_computation() -> None:
    arm, propensity, reward = logged_rows(1)
    n_total = arm.size
    routed = arm == 1
    stats_1 = IpwStats.from_rows(
        n_total=n_total, rewards=reward[routed].tolist(), propensities=propensity[routed].tolist()
    )
    got = ipw_estimate(stats_1, alpha=0.05)
    y = np.where(routed, reward / propensity, 0.0)
    se = y.std(ddof=1) / math.sqrt(n_total)
    w = 1 / propensity[routed]
    np.testing.assert_allclose(
        [got.value, got.std_error, got.ci_low, got.ci_high, got.ess, got.max_weight],
        [y.mean(), se, y.mean() - Z * se, y.mean() + Z * se, w.sum() ** 2 / (w**2).sum(), w.max()],
        rtol=1e-9,
    )
    assert (got.n, got.n_total) == (routed.sum(), n_total)


def test_aipw_matches_the_row_level_scores() -> None:
    arm, propensity, reward = logged_rows(2)
    strata = np.repeat(np.arange(4), arm.size // 4)
    q = [0.0, 1.7, 2.1, 1.9]
    pieces = []
    for s in range(4):
        rows = (strata == s) & (arm == 1)
        stats_s = IpwStats.from_rows(
            n_total=int((strata == s).sum()),
            rewards=reward[rows].tolist(),
            propensities=propensity[rows].tolist(),
        )
        pieces.append((stats_s, q[s]))
    got = aipw_estimate(pieces, alpha=0.1)
    q_row = np.array(q)[strata]
    score = q_row + np.where(arm == 1, (reward - q_row) / propensity, 0.0)
    se = score.std(ddof=1) / math.sqrt(score.size)
    z = stats.norm.isf(0.05)
    np.testing.assert_allclose(
        [got.value, got.std_error, got.ci_low, got.ci_high],
        [score.mean(), se, score.mean() - z * se, score.mean() + z * se],
        rtol=1e-9,
    )


def test_differences_match_the_row_level_scores() -> None:
    arm, propensity, reward = logged_rows(4)
    strata = np.repeat(np.arange(4), arm.size // 4)
    q = {0: [0.9, 1.1, 1.0, 0.8], 1: [2.2, 1.8, 2.0, 1.9]}
    pieces: dict[int, list[tuple[IpwStats, float]]] = {0: [], 1: []}
    for a in (0, 1):
        for s in range(4):
            rows = (strata == s) & (arm == a)
            stats_s = IpwStats.from_rows(
                n_total=int((strata == s).sum()),
                rewards=reward[rows].tolist(),
                propensities=propensity[rows].tolist(),
            )
            pieces[a].append((stats_s, q[a][s]))
    got = aipw_difference(pieces[0], pieces[1])

    def scores(a: int, q_row: np.ndarray) -> np.ndarray:
        return q_row + np.where(arm == a, (reward - q_row) / propensity, 0.0)

    d = scores(1, np.array(q[1])[strata]) - scores(0, np.array(q[0])[strata])
    se = d.std(ddof=1) / math.sqrt(d.size)
    z = d.mean() / se
    np.testing.assert_allclose(
        [got.diff, got.std_error, got.ci_low, got.ci_high, got.statistic, got.p_value],
        [d.mean(), se, d.mean() - Z * se, d.mean() + Z * se, z, 2 * stats.norm.sf(abs(z))],
        rtol=1e-9,
    )
    plain = ipw_difference(
        sum((p for p, _ in pieces[0]), IpwStats()), sum((p for p, _ in pieces[1]), IpwStats())
    )
    d0 = scores(1, np.zeros(arm.size)) - scores(0, np.zeros(arm.size))
    assert plain.diff == pytest.approx(d0.mean(), rel=1e-9)
    assert plain.std_error == pytest.approx(d0.std(ddof=1) / math.sqrt(d0.size), rel=1e-9)


def test_degenerate_differences_are_defined() -> None:
    empty = ipw_difference(IpwStats(n_total=10), IpwStats(n_total=10, n=3, sum_w=6.0, max_w=2.0))
    assert (empty.diff, empty.p_value, empty.ci_low, empty.ci_high) == (
        0.0,
        1.0,
        -math.inf,
        math.inf,
    )
    with pytest.raises(InvalidInputError) as caught:
        ipw_difference(IpwStats(n_total=10), IpwStats(n_total=11))
    assert str(caught.value) == (
        "Paired strata must count the same requests, but n_total is 10 for the control "
        "and 11 for the treatment."
    )


def test_sums_from_separate_files_add_up() -> None:
    arm, propensity, reward = logged_rows(3)
    routed = arm == 1
    whole = IpwStats.from_rows(
        n_total=arm.size, rewards=reward[routed].tolist(), propensities=propensity[routed].tolist()
    )
    half = arm.size // 2
    parts = [slice(0, half), slice(half, None)]
    pieces = [
        IpwStats.from_rows(
            n_total=arm[p].size,
            rewards=reward[p][routed[p]].tolist(),
            propensities=propensity[p][routed[p]].tolist(),
        )
        for p in parts
    ]
    combined = pieces[0] + pieces[1]
    for name in ("n_total", "n", "sum_w", "sum_wr", "sum_w2", "sum_w2r", "sum_w2r2", "max_w"):
        assert getattr(combined, name) == pytest.approx(getattr(whole, name), rel=1e-12)


def test_without_rows_for_the_arm_the_value_is_unidentified() -> None:
    for estimate in (
        ipw_estimate(IpwStats()),
        ipw_estimate(IpwStats(n_total=500)),
        aipw_estimate([(IpwStats(n_total=500), 0.3)]),
        aipw_estimate([]),
    ):
        assert (estimate.value, estimate.ci_low, estimate.ci_high) == (0.0, -math.inf, math.inf)
        assert estimate.std_error == math.inf
        assert estimate.ess == 0.0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"n_total": 2, "n": 3, "max_w": 2.0},
            "IpwStats.n (3 rows routed to the arm) cannot exceed n_total (2 rows in all).",
        ),
        (
            {"n_total": 5, "n": 1, "max_w": 0.5},
            "Inverse propensities are at least 1, but IpwStats.max_w is 0.5.",
        ),
        ({"sum_w2": -1.0}, "IpwStats.sum_w2 must be non-negative, but -1.0 was given."),
        ({"sum_wr": math.inf}, "IpwStats.sum_wr must be finite, but inf was given."),
    ],
)
def test_impossible_sums_are_rejected(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(InvalidStatsError) as caught:
        IpwStats(**kwargs)
    assert str(caught.value) == message


def test_bad_rows_are_rejected() -> None:
    with pytest.raises(InvalidInputError) as caught:
        IpwStats.from_rows(n_total=3, rewards=[1.0], propensities=[0.0])
    assert str(caught.value) == "Every propensity must be in (0, 1], but 0.0 was given."
    with pytest.raises(InvalidInputError) as caught:
        aipw_estimate([(IpwStats(), math.nan)])
    assert str(caught.value) == "Every outcome estimate q must be finite, but nan was given."


def multinomial_rows(rng: np.random.Generator, size: int, weights: np.ndarray) -> np.ndarray:
    """One multinomial draw per row of ``weights``, as a chain of conditional binomials."""
    counts = np.zeros(weights.shape, dtype=np.int64)
    left = np.full(weights.shape[0], size)
    mass = np.ones(weights.shape[0])
    for j in range(weights.shape[1] - 1):
        p = np.clip(weights[:, j] / np.maximum(mass, 1e-300), 0.0, 1.0)
        counts[:, j] = rng.binomial(left, p)
        left -= counts[:, j]
        mass -= weights[:, j]
    counts[:, -1] = left
    return counts


def thompson_experiments(
    mu: tuple[float, ...], *, batches: int, size: int, floor: float, experiments: int, seed: int
) -> tuple[np.ndarray, np.ndarray, list[list[IpwStats]]]:
    """Batched Thompson sampling on Bernoulli arms, many experiments at once.

    Each batch's weights are P(best) estimated from 100 posterior draws,
    mixed with the floor; the weight actually used is the logged propensity.
    Returns per experiment and arm the count, the successes and the IPW sums.
    """
    rng = np.random.default_rng(seed)
    m, k = experiments, len(mu)
    means = np.array(mu)
    n, s = np.zeros((m, k)), np.zeros((m, k))
    sum_w, sum_wr, sum_w2, sum_w2r, sum_w2r2 = (np.zeros((m, k)) for _ in range(5))
    max_w = np.zeros((m, k))
    for _ in range(batches):
        draws = rng.beta(1 + s[:, :, None], 1 + n[:, :, None] - s[:, :, None], size=(m, k, 100))
        best = draws.argmax(axis=1)
        p_best = np.stack([(best == j).mean(axis=1) for j in range(k)], axis=1)
        weights = floor + (1 - k * floor) * p_best
        weights /= weights.sum(axis=1, keepdims=True)
        counts = multinomial_rows(rng, size, weights)
        successes = rng.binomial(counts, means)
        w = 1 / weights
        sum_w += counts * w
        sum_wr += successes * w
        sum_w2 += counts * w**2
        sum_w2r += successes * w**2
        sum_w2r2 += successes * w**2
        max_w = np.where(counts > 0, np.maximum(max_w, w), max_w)
        n += counts
        s += successes
    total = batches * size
    ipw = [
        [
            IpwStats(
                total,
                n[i, j],
                sum_w[i, j],
                sum_wr[i, j],
                sum_w2[i, j],
                sum_w2r[i, j],
                sum_w2r2[i, j],
                max_w[i, j],
            )
            for j in range(k)
        ]
        for i in range(m)
    ]
    return n, s, ipw


@pytest.mark.slow
def test_ipw_intervals_keep_coverage_on_thompson_data_where_naive_intervals_lose_it() -> None:
    mu = (0.3, 0.3)
    n, s, ipw = thompson_experiments(
        mu, batches=100, size=20, floor=0.01, experiments=2000, seed=11
    )
    hits = {"naive arm": 0, "ipw arm": 0, "naive diff": 0, "ipw diff": 0}
    experiments = n.shape[0]
    for i in range(experiments):
        arms = [ArmStats(n[i, j], s[i, j], s[i, j]) for j in range(2)]
        for j, true_mean in enumerate(mu):
            naive = mean_interval(arms[j], kind="binary")
            estimate = ipw_estimate(ipw[i][j])
            hits["naive arm"] += naive.low <= true_mean <= naive.high
            hits["ipw arm"] += estimate.ci_low <= true_mean <= estimate.ci_high
        naive_diff = z_test(arms[0], arms[1])
        ipw_diff = ipw_difference(ipw[i][0], ipw[i][1])
        hits["naive diff"] += naive_diff.ci_low <= 0.0 <= naive_diff.ci_high
        hits["ipw diff"] += ipw_diff.ci_low <= 0.0 <= ipw_diff.ci_high
    coverage = {
        key: value / (2 * experiments if "arm" in key else experiments)
        for key, value in hits.items()
    }
    print(
        "\nThompson-collected data (2 equal arms, 100 batches of 20, floor 0.01), coverage of "
        "95% intervals over 2,000 experiments: "
        + ", ".join(f"{key} {value:.3f}" for key, value in coverage.items())
    )
    assert coverage["ipw arm"] >= 0.935
    assert coverage["naive arm"] < coverage["ipw arm"] - 0.01
    assert coverage["ipw diff"] >= 0.935
    assert coverage["naive diff"] <= 0.90
