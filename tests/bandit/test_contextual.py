"""Linear contextual policies: closed-form ridge fits, Monte-Carlo propensities, bad input."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import stats as sps

from bandit.contextual import (
    LinearConfig,
    LinearModel,
    LinearStats,
    Standardizer,
    arm_probabilities,
    context_matrix,
    decide,
    decide_batch,
    fit_linear,
)
from bandit.errors import InvalidInputError

FEATURES = ("age", "tenure", "spend", "visits")


def _data(seed: int, n: int = 300) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(loc=[40.0, 3.0, 120.0, 7.0], scale=[12.0, 2.0, 60.0, 3.0], size=(n, 4))
    y = 0.02 * x[:, 0] - 0.3 * x[:, 1] + 0.01 * x[:, 2] + rng.normal(size=n)
    return x, y


def _ridge_reference(z: np.ndarray, y: np.ndarray, ridge: float) -> np.ndarray:
    """Ridge by least squares on the augmented system [Z; √λ I] θ ≈ [y; 0] (another algorithm)."""
    dim = z.shape[1]
    augmented = np.vstack([z, math.sqrt(ridge) * np.eye(dim)])
    target = np.concatenate([y, np.zeros(dim)])
    theta, *_ = np.linalg.lstsq(augmented, target, rcond=None)
    return theta


@pytest.mark.parametrize("kind", ["lints", "linucb"])
@pytest.mark.parametrize("ridge", [0.1, 1.0, 25.0])
def test_fit_is_the_closed_form_ridge_solution(kind: str, ridge: float) -> None:
    x, y = _data(1)
    standardizer = Standardizer.fit(FEATURES, x[:50])
    z = standardizer.design(x)
    arm0, arm1 = slice(0, 180), slice(180, None)
    stats = [LinearStats.from_rows(z[arm0], y[arm0]), LinearStats.from_rows(z[arm1], y[arm1])]
    config = LinearConfig(kind=kind, ridge=ridge)  # type: ignore[arg-type]
    model = fit_linear(stats, arms=["a", "b"], standardizer=standardizer, config=config)

    for k, rows in enumerate((arm0, arm1)):
        expected = _ridge_reference(z[rows], y[rows], ridge)
        np.testing.assert_allclose(model.theta[k], expected, rtol=1e-9, atol=1e-9)
        precision = ridge * np.eye(5) + z[rows].T @ z[rows]
        covariance = model.factor[k] @ model.factor[k].T
        np.testing.assert_allclose(covariance @ precision, np.eye(5), atol=1e-9)
    np.testing.assert_array_equal(model.counts, [180, 120])


def test_standardised_design_matches_the_formula() -> None:
    x, _ = _data(2, n=40)
    standardizer = Standardizer.fit(FEATURES, x)
    z = standardizer.design(x)
    np.testing.assert_allclose(z[:, 0], 1.0)
    np.testing.assert_allclose(z[:, 1:], (x - x.mean(axis=0)) / x.std(axis=0), atol=1e-12)


def test_a_constant_feature_gets_scale_one() -> None:
    x = np.column_stack([np.full(10, 5.0), np.arange(10.0)])
    standardizer = Standardizer.fit(["constant", "ramp"], x)
    assert standardizer.scales[0] == 1.0
    assert standardizer.means[0] == 5.0


def test_batched_fold_equals_a_one_shot_fit() -> None:
    x, y = _data(3, n=1000)
    standardizer = Standardizer.fit(FEATURES, x[:100])
    z = standardizer.design(x)
    arm = np.random.default_rng(0).integers(0, 3, size=len(y))
    config = LinearConfig(ridge=2.0)

    one_shot = [LinearStats.from_rows(z[arm == k], y[arm == k]) for k in range(3)]
    folded = [LinearStats.zeros(standardizer.dim) for _ in range(3)]
    for batch in np.array_split(np.arange(len(y)), 7):
        for k in range(3):
            rows = batch[arm[batch] == k]
            folded[k] = folded[k] + LinearStats.from_rows(z[rows], y[rows])

    arms = ["a", "b", "c"]
    a = fit_linear(one_shot, arms=arms, standardizer=standardizer, config=config)
    b = fit_linear(folded, arms=arms, standardizer=standardizer, config=config)
    np.testing.assert_allclose(b.theta, a.theta, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(b.factor, a.factor, rtol=1e-9, atol=1e-9)
    for one, fold in zip(one_shot, folded, strict=True):
        assert fold.n == one.n
        assert fold.sum_sq == pytest.approx(one.sum_sq, rel=1e-12)


def test_without_data_the_posterior_is_the_prior() -> None:
    standardizer = Standardizer.identity(FEATURES)
    config = LinearConfig(ridge=4.0)
    stats = [LinearStats.zeros(5), LinearStats.zeros(5)]
    model = fit_linear(stats, arms=["a", "b"], standardizer=standardizer, config=config)
    np.testing.assert_array_equal(model.theta, 0.0)
    np.testing.assert_allclose(model.factor[0] @ model.factor[0].T, np.eye(5) / 4.0, atol=1e-15)


def test_model_version_round_trips_through_json() -> None:
    x, y = _data(4)
    standardizer = Standardizer.fit(FEATURES, x)
    z = standardizer.design(x)
    stats = [LinearStats.from_rows(z[::2], y[::2]), LinearStats.from_rows(z[1::2], y[1::2])]
    config = LinearConfig(kind="linucb", exploration=0.7, epsilon=0.1)
    model = fit_linear(stats, arms=["a", "b"], standardizer=standardizer, config=config)

    restored = LinearModel.from_dict(json.loads(json.dumps(model.to_dict())))
    np.testing.assert_array_equal(restored.theta, model.theta)
    np.testing.assert_array_equal(restored.factor, model.factor)
    assert restored.standardizer == model.standardizer
    assert restored.config == model.config
    assert restored.arms == ("a", "b")
    first = decide_batch(model, x[:20], np.random.default_rng(5))
    again = decide_batch(restored, x[:20], np.random.default_rng(5))
    np.testing.assert_array_equal(first[0], again[0])

    stats_back = LinearStats.from_dict(json.loads(json.dumps(stats[0].to_dict())))
    np.testing.assert_array_equal(stats_back.xtx, stats[0].xtx)
    assert stats_back.n == stats[0].n


def _two_arm_model(
    mu1: float, sd0: float, sd1: float, *, draws: int, epsilon: float = 0.0
) -> LinearModel:
    """Context x = 0 gives z = (1, 0): arm scores N(0, sd0²) and N(mu1, sd1²), independent.

    Pure Thompson sampling (``epsilon = 0``) unless asked, so the exact answer is Φ's.
    """
    theta = np.array([[0.0, 0.0], [mu1, 0.0]])
    factor = np.array([np.diag([sd0, 1.0]), np.diag([sd1, 1.0])])
    return LinearModel(
        ("a", "b"),
        Standardizer.identity(["x"]),
        LinearConfig(kind="lints", exploration=1.0, draws=draws, epsilon=epsilon),
        theta,
        factor,
    )


@pytest.mark.parametrize(
    ("mu1", "sd0", "sd1"), [(0.3, 0.5, 0.8), (-0.2, 1.0, 0.1), (1.5, 0.6, 0.6)]
)
def test_monte_carlo_propensity_is_within_its_stated_error(
    mu1: float, sd0: float, sd1: float
) -> None:
    draws = 2000
    model = _two_arm_model(mu1, sd0, sd1, draws=draws)
    exact = float(sps.norm.cdf(mu1 / math.sqrt(sd0**2 + sd1**2)))
    standard_error = math.sqrt(exact * (1 - exact) / draws)
    rng = np.random.default_rng(11)

    contexts = np.zeros((400, 1))
    probs = arm_probabilities(model, contexts, rng)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0)
    # Each row's estimate within 4.5 standard errors (400 rows: a miss has probability ~3e-3),
    # and their mean within 4.5 standard errors of the mean.
    assert np.all(np.abs(probs[:, 1] - exact) <= 4.5 * standard_error + 1e-12)
    assert abs(probs[:, 1].mean() - exact) <= 4.5 * standard_error / math.sqrt(400)

    arms, propensity = decide_batch(model, contexts, rng)
    assert np.all(propensity >= 1 / draws)
    expected = np.where(arms == 1, exact, 1 - exact)
    assert np.all(np.abs(propensity - expected) <= 4.5 * standard_error + 1e-12)
    # The chosen arm follows Thompson sampling's probability.
    assert abs((arms == 1).mean() - exact) <= 4.5 * math.sqrt(exact * (1 - exact) / 400)


def test_propensity_is_never_zero_even_for_a_hopeless_arm() -> None:
    model = _two_arm_model(-40.0, 0.1, 0.1, draws=50)
    arms, propensity = decide_batch(model, np.zeros((100, 1)), np.random.default_rng(0))
    assert np.all(arms == 0)
    assert np.all(propensity == 1.0)
    # With the default epsilon the hopeless arm keeps epsilon / K in every round.
    default = _two_arm_model(-40.0, 0.1, 0.1, draws=50, epsilon=0.02)
    assert default.config.mixing == LinearConfig(draws=50).mixing == 0.02
    probs = arm_probabilities(default, np.zeros((100, 1)), np.random.default_rng(0))
    np.testing.assert_allclose(probs, [[0.99, 0.01]] * 100)


def test_large_scores_keep_their_differences() -> None:
    model = LinearModel(
        ("a", "b"),
        Standardizer.identity(["x"]),
        LinearConfig(draws=100, epsilon=0.0),
        np.array([[1e9, 0.0], [1e9 + 1.0, 0.0]]),
        np.array([np.diag([0.01, 1.0]), np.diag([0.01, 1.0])]),
    )
    arms, propensity = decide_batch(model, np.zeros((50, 1)), np.random.default_rng(0))
    assert np.all(arms == 1)
    assert np.all(propensity == 1.0)


def test_lints_epsilon_mixes_in_uniform_exploration() -> None:
    model = _two_arm_model(-40.0, 0.1, 0.1, draws=50)
    mixed = LinearModel(
        model.arms,
        model.standardizer,
        LinearConfig(kind="lints", draws=50, epsilon=0.2),
        model.theta,
        model.factor,
    )
    arms, propensity = decide_batch(mixed, np.zeros((4000, 1)), np.random.default_rng(1))
    np.testing.assert_allclose(propensity[arms == 0], 0.9)
    np.testing.assert_allclose(propensity[arms == 1], 0.1)
    assert abs((arms == 1).mean() - 0.1) < 0.02


def test_linucb_propensity_is_exact_with_its_default_epsilon() -> None:
    x, y = _data(6)
    standardizer = Standardizer.fit(FEATURES, x)
    z = standardizer.design(x)
    stats = [LinearStats.from_rows(z[:150], y[:150]), LinearStats.from_rows(z[150:], y[150:] + 5.0)]
    model = fit_linear(
        stats, arms=["a", "b"], standardizer=standardizer, config=LinearConfig(kind="linucb")
    )
    rng = np.random.default_rng(2)
    contexts = np.repeat(x[:1], 4000, axis=0)
    arms, propensity = decide_batch(model, contexts, rng)
    np.testing.assert_allclose(propensity[arms == 1], 0.975)
    np.testing.assert_allclose(propensity[arms == 0], 0.025)
    assert abs((arms == 0).mean() - 0.025) < 0.01


def test_linucb_splits_ties_evenly_before_any_data() -> None:
    standardizer = Standardizer.identity(["x"])
    stats = [LinearStats.zeros(2) for _ in range(4)]
    model = fit_linear(
        stats, arms=list("abcd"), standardizer=standardizer, config=LinearConfig(kind="linucb")
    )
    probs = arm_probabilities(model, np.array([[0.5]]), np.random.default_rng(0))
    np.testing.assert_allclose(probs, 0.25)
    arms, _ = decide_batch(model, np.full((4000, 1), 0.5), np.random.default_rng(3))
    assert np.all(np.abs(np.bincount(arms, minlength=4) / 4000 - 0.25) < 0.03)


def test_one_context_and_a_batch_agree() -> None:
    model = _two_arm_model(0.3, 0.5, 0.8, draws=200)
    arm, propensity = decide(model, [0.0], np.random.default_rng(9))
    arms, propensities = decide_batch(model, [[0.0]], np.random.default_rng(9))
    assert (arm, propensity) == (int(arms[0]), float(propensities[0]))
    assert isinstance(arm, int)
    assert 0 < propensity <= 1


def test_a_large_batch_is_decided_in_chunks_like_a_small_one() -> None:
    model = _two_arm_model(0.3, 0.5, 0.8, draws=5000)
    arms, propensity = decide_batch(model, np.zeros((1000, 1)), np.random.default_rng(4))
    assert arms.shape == propensity.shape == (1000,)
    assert set(np.unique(arms)) <= {0, 1}


def test_context_matrix_reads_named_features_in_order() -> None:
    rows = [{"spend": 3.5, "age": 30, "extra": "x"}, {"age": 41.0, "spend": 0}]
    np.testing.assert_array_equal(context_matrix(["age", "spend"], rows), [[30, 3.5], [41, 0]])


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (
            lambda m: decide(m, [0.0, 1.0], np.random.default_rng(0)),
            r"Contexts must have shape \(n, 1\), one column per feature \(x\), but shape \(1, 2\)",
        ),
        (
            lambda m: decide_batch(m, np.zeros((3, 2)), np.random.default_rng(0)),
            r"but shape \(3, 2\) \(2 features\) was given",
        ),
        (
            lambda m: decide(m, [float("nan")], np.random.default_rng(0)),
            r"Context feature 'x' must be finite, but row 0 holds nan",
        ),
        (
            lambda m: decide_batch(m, [[0.0], [float("inf")]], np.random.default_rng(0)),
            r"Context feature 'x' must be finite, but row 1 holds inf",
        ),
        (
            lambda m: decide(m, ["abc"], np.random.default_rng(0)),
            r"The context must be numeric",
        ),
        (
            lambda m: decide(m, [[0.0]], np.random.default_rng(0)),
            r"One context must have shape \(1,\), but shape \(1, 1\) was given",
        ),
    ],
)
def test_bad_contexts_are_refused_with_a_sentence(call: object, message: str) -> None:
    model = _two_arm_model(0.3, 0.5, 0.8, draws=10)
    with pytest.raises(InvalidInputError, match=message):
        call(model)  # type: ignore[operator]


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([{"age": 1.0}], r"Context row 0 lacks the feature 'spend'"),
        (
            [{"age": 1.0, "spend": 2.0}, {"age": "old", "spend": 1}],
            r"'age' must be a number, but row 1 holds 'old'",
        ),
        ([{"age": True, "spend": 1}], r"'age' must be a number, but row 0 holds True"),
        ([{"age": 1, "spend": float("nan")}], r"'spend' must be finite, but row 0 holds nan"),
    ],
)
def test_context_matrix_names_the_bad_value(rows: list[dict[str, object]], message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        context_matrix(["age", "spend"], rows)


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: LinearConfig(kind="greedy"), r"must be 'lints' or 'linucb', but 'greedy'"),  # type: ignore[arg-type]
        (lambda: LinearConfig(ridge=0.0), r"ridge must be positive, but 0.0"),
        (lambda: LinearConfig(exploration=0.0), r"exploration must be positive for lints"),
        (lambda: LinearConfig(kind="linucb", exploration=-1.0), r"non-negative for linucb"),
        (lambda: LinearConfig(draws=0), r"draws must be a whole number from 1 to 100,000, but 0"),
        (lambda: LinearConfig(draws=10**9), r"from 1 to 100,000, but 1000000000 was given"),
        (lambda: LinearConfig.from_dict({"ridge": "big"}), r"parameter has the wrong type"),
        (lambda: LinearConfig.from_dict({"draws": 2.5}), r"draws must be a whole number"),
        (lambda: LinearModel.from_dict({"arms": ["a"]}), r"contextual model version is malformed"),
        (lambda: LinearStats.from_dict({"xtx": "x"}), r"LinearStats need numeric"),
        (lambda: LinearConfig(epsilon=1.5), r"epsilon must be in \[0, 1\], but 1.5"),
        (
            lambda: LinearConfig.from_dict({"alpha": 1}),
            r"Unknown contextual policy parameter 'alpha'",
        ),
        (lambda: Standardizer(("a", "a"), (0, 0), (1, 1)), r"must be unique"),
        (lambda: Standardizer(("a",), (0.0,), (0.0,)), r"scale of feature 'a' must be positive"),
        (lambda: Standardizer((), (), ()), r"at least one context feature"),
        (lambda: LinearStats.zeros(2) + LinearStats.zeros(3), r"dimension 2 and 3"),
        (lambda: LinearStats(np.zeros((2, 2)), np.zeros(3)), r"xty must have shape \(2,\)"),
        (
            lambda: LinearStats(np.zeros((2, 2)), np.zeros(2), n=-1),
            r"LinearStats.n must be finite and non-negative",
        ),
        (
            lambda: fit_linear(
                [LinearStats.zeros(3)],
                arms=["a"],
                standardizer=Standardizer.identity(["x"]),
                config=LinearConfig(),
            ),
            r"Arm 'a' needs LinearStats of dimension 2, but 3 was given",
        ),
        (
            lambda: fit_linear(
                [LinearStats(-np.eye(2) * 5, np.zeros(2))],
                arms=["a"],
                standardizer=Standardizer.identity(["x"]),
                config=LinearConfig(),
            ),
            r"non-negative diagonal",
        ),
    ],
)
def test_bad_configuration_and_statistics_are_refused(build: object, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        build()  # type: ignore[operator]


@pytest.mark.parametrize("draws", [5, 500])
def test_ipw_on_logged_lints_decisions_is_unbiased_even_with_few_draws(draws: int) -> None:
    """The logged propensity is exact given the draws: IPW recovers another policy's value."""
    from bandit.ope import ipw

    rng = np.random.default_rng(31)
    n, k = 40_000, 3
    x = rng.normal(size=(n, 2))
    weights = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, -1.0]])
    means = x @ weights.T + np.array([0.2, 0.0, -0.1])
    model = LinearModel(
        ("a", "b", "c"),
        Standardizer.identity(["u", "v"]),
        LinearConfig(draws=draws),  # the default epsilon, 0.02
        # A logging model that is wrong on purpose (it favours the worst arm often).
        np.array([[0.0, 0.5, 0.0], [0.0, 0.0, 0.5], [0.3, -0.5, -0.5]]),
        np.stack([0.3 * np.eye(3)] * 3),
    )
    arms, propensity = decide_batch(model, x, rng)
    reward = means[np.arange(n), arms] + rng.normal(0.0, 0.5, size=n)
    # Evaluated policy: always the arm with the largest first feature's sign rule.
    target = np.where(x[:, 0] > 0, 0, 2)
    action_dist = np.zeros((n, k, 1))
    action_dist[np.arange(n), target, 0] = 1.0
    estimate = ipw(reward=reward, action=arms, pscore=propensity, action_dist=action_dist)
    truth = float(means[np.arange(n), target].mean())
    terms = reward * (arms == target) / propensity
    standard_error = float(terms.std() / math.sqrt(n))
    assert abs(estimate - truth) < 4 * standard_error
    assert propensity.min() >= 0.02 / 3 - 1e-12
    if draws == 5:
        # Why the logged share comes from the draws that chose: the same estimate from
        # fresh draws (just as good an estimate of p) is far off.
        fresh = arm_probabilities(model, x, np.random.default_rng(99))[np.arange(n), arms]
        wrong = ipw(reward=reward, action=arms, pscore=fresh, action_dist=action_dist)
        assert abs(wrong - truth) > 10 * standard_error
