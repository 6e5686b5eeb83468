"""Segmented Thompson sampling: own posteriors for large segments, the pooled one for the rest."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import stats as sps

from bandit.errors import InvalidInputError
from bandit.posterior import posteriors
from bandit.segmented import (
    SegmentedConfig,
    SegmentedModel,
    SegmentPosterior,
    decide_segment,
    decide_segments,
    fit_segmented,
)
from bandit.stats import ArmStats

ARMS = ("control", "treatment")


def _binary(n: int, successes: int) -> ArmStats:
    return ArmStats(n=n, sum=successes, sum_sq=successes)


STATS = {
    # Large: treatment clearly better here.
    "fr": [_binary(500, 50), _binary(500, 100)],
    # Small (30 < 100): control looks better, but too few requests to trust.
    "de": [_binary(15, 10), _binary(15, 1)],
    # Large: control clearly better. Pooled, the arms are close (170 and 161 of 915).
    "us": [_binary(400, 110), _binary(400, 60)],
}


def _model(**options: object) -> SegmentedModel:
    config = SegmentedConfig(field="country", min_count=100, draws=4000, **options)  # type: ignore[arg-type]
    return fit_segmented(STATS, arms=ARMS, config=config, rng=np.random.default_rng(7))


def test_large_segments_get_their_own_posteriors_and_small_ones_the_pooled() -> None:
    model = _model()
    assert set(model.segments) == {"fr", "us"}
    assert model.fallback == ("de",)
    own = posteriors(STATS["fr"], kind="binary")
    np.testing.assert_array_equal(model.segments["fr"].params[0], [p.alpha for p in own])  # type: ignore[union-attr]
    pooled = [sum((s[k] for s in STATS.values()), ArmStats()) for k in range(2)]
    expected = posteriors(pooled, kind="binary")
    np.testing.assert_array_equal(model.pooled.params[1], [p.beta for p in expected])  # type: ignore[union-attr]
    assert model.posterior_for("de") is model.pooled
    assert model.posterior_for("never-seen") is model.pooled


def test_decisions_follow_each_segments_winner_with_its_weight_as_propensity() -> None:
    model = _model()
    rng = np.random.default_rng(0)
    fr, fr_p = decide_segments(model, ["fr"] * 300, rng)
    us, us_p = decide_segments(model, ["us"] * 300, rng)
    # The winners' weights are 1 - f with the default floor f = 0.02.
    assert (fr == 1).mean() > 0.95
    assert (us == 0).mean() > 0.95
    assert model.segments["fr"].weights[0] == pytest.approx(0.02, abs=1e-3)
    np.testing.assert_array_equal(fr_p, model.segments["fr"].weights[fr])
    np.testing.assert_array_equal(us_p, model.segments["us"].weights[us])


def test_decisions_are_drawn_from_the_segment_weights() -> None:
    model = _model()
    weights = model.pooled.weights
    assert 0.05 < weights[0] < 0.95  # the pooled posterior leaves both arms a real chance
    arms, propensity = decide_segments(model, ["de"] * 20_000, np.random.default_rng(1))
    share = (arms == 0).mean()
    assert abs(share - weights[0]) < 4.5 * math.sqrt(weights[0] * weights[1] / 20_000)
    np.testing.assert_array_equal(propensity, weights[arms])
    single = [decide_segment(model, "de", np.random.default_rng(s)) for s in range(2000)]
    assert abs(np.mean([a == 0 for a, _ in single]) - weights[0]) < 0.05
    assert {p for _, p in single} <= {float(weights[0]), float(weights[1])}


@pytest.mark.parametrize(("mu1", "seed"), [(0.3, 3), (-0.1, 4), (0.0, 5)])
def test_thompson_probability_is_within_its_stated_error(mu1: float, seed: int) -> None:
    """Two normal posteriors: P(arm 1 best) = Φ((μ₁ - μ₀) / √(σ₀² + σ₁²)), exactly."""
    draws = 10_000
    rng = np.random.default_rng(seed)
    stats = [ArmStats.from_rewards(list(rng.normal(m, 1.0, size=40))) for m in (0.0, mu1)]
    posts = posteriors(stats, kind="continuous")
    means = [p.mean for p in posts]
    sds = [p.sd for p in posts]  # type: ignore[union-attr]
    exact = float(sps.norm.cdf((means[1] - means[0]) / math.sqrt(sds[0] ** 2 + sds[1] ** 2)))
    standard_error = math.sqrt(exact * (1 - exact) / draws)
    config = SegmentedConfig(
        field="f", reward="continuous", min_count=0, draws=draws, min_weight=0.0
    )
    misses = 0
    for fit_seed in range(20):
        model = fit_segmented(
            {"a": stats}, arms=ARMS, config=config, rng=np.random.default_rng(fit_seed)
        )
        misses += abs(model.segments["a"].weights[1] - exact) > 3 * standard_error
    assert misses <= 1  # each 3-SE miss has probability 0.003


def test_a_floor_keeps_every_arm_possible() -> None:
    model = _model(min_weight=0.05)
    np.testing.assert_allclose(model.segments["fr"].weights.sum(), 1.0)
    assert model.segments["fr"].weights.min() >= 0.05 - 1e-12
    arms, propensity = decide_segments(model, ["fr"] * 5000, np.random.default_rng(4))
    assert (arms == 0).mean() > 0.03
    assert propensity[arms == 0].min() >= 0.05 - 1e-12


def test_model_round_trips_through_json() -> None:
    model = _model()
    restored = SegmentedModel.from_dict(json.loads(json.dumps(model.to_dict())))
    assert restored.config == model.config
    assert restored.fallback == model.fallback
    np.testing.assert_array_equal(restored.segments["us"].params, model.segments["us"].params)
    np.testing.assert_array_equal(restored.pooled.weights, model.pooled.weights)
    one = decide_segment(model, "fr", np.random.default_rng(5))
    two = decide_segment(restored, "fr", np.random.default_rng(5))
    assert one == two


def test_unknown_segment_refused_when_asked() -> None:
    model = _model(unknown="error")
    with pytest.raises(InvalidInputError, match=r"Segment 'jp' of field 'country' is unknown"):
        decide_segment(model, "jp", np.random.default_rng(0))
    # A known small segment is still served, by the pooled posterior.
    arm, propensity = decide_segment(model, "de", np.random.default_rng(0))
    assert arm in (0, 1)
    assert 0 < propensity <= 1


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (
            lambda: decide_segment(_model(), 7, np.random.default_rng(0)),
            r"The segment field 'country' must hold a string, but 7 was given",
        ),
        (
            lambda: decide_segments(_model(), ["fr", None], np.random.default_rng(0)),
            r"must hold a string, but None was given",
        ),
        (lambda: SegmentedConfig(field=""), r"segment field must be a non-empty string"),
        (lambda: SegmentedConfig(field="f", min_count=-1), r"min_count must be a whole number"),
        (lambda: SegmentedConfig(field="f", draws=0), r"draws must be a whole number from 1 to"),
        (lambda: SegmentedConfig(field="f", draws=10**8), r"from 1 to 1,000,000, but 100000000"),
        (lambda: SegmentedConfig(field="f", min_weight=2.0), r"min_weight must be in \[0, 1\]"),
        (lambda: SegmentedConfig(field="f", unknown="drop"), r"'pooled' or 'error'"),  # type: ignore[arg-type]
        (lambda: SegmentedConfig(field="f", reward="ordinal"), r"'binary' or 'continuous'"),  # type: ignore[arg-type]
        (
            lambda: fit_segmented(
                {"fr": [ArmStats()]},
                arms=ARMS,
                config=SegmentedConfig(field="country"),
                rng=np.random.default_rng(0),
            ),
            r"Segment 'fr' needs one ArmStats per arm \(2\), but 1 were given",
        ),
        (
            lambda: SegmentedModel(
                ARMS, SegmentedConfig(field="f"), SegmentPosterior(np.zeros((2, 2)), [0.5, 0.5])
            ),
            r"parameters of the pooled posterior are out of range",
        ),
        (
            lambda: SegmentPosterior(np.ones((2, 2)), [0.5, 0.6]),
            r"weights must be non-negative and sum to 1",
        ),
        (
            lambda: SegmentedModel.from_dict({"arms": ["a"]}),
            r"segmented model version is malformed",
        ),
    ],
)
def test_bad_input_is_refused_with_a_sentence(build: object, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        build()  # type: ignore[operator]
