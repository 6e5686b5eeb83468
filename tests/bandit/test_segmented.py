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
    "fr": [_binary(500, 50), _binary(500, 150)],
    # Small (30 < 100): control looks better, but too few requests to trust.
    "de": [_binary(15, 10), _binary(15, 1)],
    # Large: control clearly better.
    "us": [_binary(400, 200), _binary(400, 40)],
}


def _model(**options: object) -> SegmentedModel:
    config = SegmentedConfig(field="country", min_count=100, draws=400, **options)  # type: ignore[arg-type]
    return fit_segmented(STATS, arms=ARMS, config=config)


def test_large_segments_get_their_own_posteriors_and_small_ones_the_pooled() -> None:
    model = _model()
    assert set(model.segments) == {"fr", "us"}
    assert model.fallback == ("de",)
    own = posteriors(STATS["fr"], kind="binary")
    np.testing.assert_array_equal(model.segments["fr"][0], [p.alpha for p in own])  # type: ignore[union-attr]
    pooled = [sum((s[k] for s in STATS.values()), ArmStats()) for k in range(2)]
    expected = posteriors(pooled, kind="binary")
    np.testing.assert_array_equal(model.pooled[1], [p.beta for p in expected])  # type: ignore[union-attr]
    assert model.params_for("de") is model.pooled
    assert model.params_for("never-seen") is model.pooled


def test_decisions_follow_each_segments_winner() -> None:
    model = _model()
    rng = np.random.default_rng(0)
    fr, _ = decide_segments(model, ["fr"] * 300, rng)
    us, _ = decide_segments(model, ["us"] * 300, rng)
    assert (fr == 1).mean() > 0.99
    assert (us == 0).mean() > 0.99


def test_small_segment_is_served_like_the_pooled_posterior() -> None:
    model = _model()
    rng = np.random.default_rng(1)
    _, de = decide_segments(model, ["de"] * 200, rng)
    _, unknown = decide_segments(model, ["xx"] * 200, rng)
    # Same posteriors: the same propensity of each arm up to Monte-Carlo error.
    assert abs(de.mean() - unknown.mean()) < 0.05


def test_monte_carlo_propensity_is_within_its_stated_error_for_normal_posteriors() -> None:
    config = SegmentedConfig(field="f", reward="continuous", min_count=0, draws=2000)
    model = SegmentedModel(ARMS, config, np.array([[0.0, 0.3], [0.5, 0.8]]))
    exact = float(sps.norm.cdf(0.3 / math.sqrt(0.5**2 + 0.8**2)))
    standard_error = math.sqrt(exact * (1 - exact) / config.draws)
    arms, propensity = decide_segments(model, ["any"] * 300, np.random.default_rng(2))
    expected = np.where(arms == 1, exact, 1 - exact)
    assert np.all(np.abs(propensity - expected) <= 4.5 * standard_error)
    assert np.all(propensity >= 1 / config.draws)


def test_model_round_trips_through_json() -> None:
    model = _model()
    restored = SegmentedModel.from_dict(json.loads(json.dumps(model.to_dict())))
    assert restored.config == model.config
    assert restored.fallback == model.fallback
    np.testing.assert_array_equal(restored.segments["us"], model.segments["us"])
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
        (
            lambda: SegmentedConfig(field="f", draws=0),
            r"draws must be a whole number of at least 1",
        ),
        (
            lambda: SegmentedConfig(field="f", unknown="drop"),
            r"unknown must be 'pooled' or 'error'",
        ),  # type: ignore[arg-type]
        (lambda: SegmentedConfig(field="f", reward="ordinal"), r"'binary' or 'continuous'"),  # type: ignore[arg-type]
        (
            lambda: fit_segmented(
                {"fr": [ArmStats()]}, arms=ARMS, config=SegmentedConfig(field="country")
            ),
            r"Segment 'fr' needs one ArmStats per arm \(2\), but 1 were given",
        ),
        (
            lambda: SegmentedModel(ARMS, SegmentedConfig(field="f"), np.zeros((2, 2))),
            r"parameters of the pooled posterior are out of range",
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
