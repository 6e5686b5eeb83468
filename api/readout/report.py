"""The experiment report: per-variant rewards with intervals, tests and a verdict."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from pydantic import BaseModel
from sqlalchemy.orm import Session

from api.control import allocation_versions
from api.reallocation.lake_views import LakeStats, VariantView, bandit_kind
from api.store.models import Experiment
from bandit.adaptive import AdaptiveIntervals, BatchStats, adaptive_msprt, intervals_from_batches
from bandit.bayesian import bayes_summary
from bandit.corrections import holm
from bandit.errors import InvalidInputError
from bandit.frequentist import compare_to_control, mean_interval
from bandit.ipw import ipw_estimate
from bandit.sequential import default_tau, msprt
from bandit.srm import srm_test
from bandit.stats import ArmStats

__all__ = ["Report", "VariantReport", "build_report"]

ALPHA = 0.05
SRM_ALPHA = 0.001


def _finite(x: float | None) -> float | None:
    return x if x is not None and math.isfinite(x) else None


class TestResult(BaseModel):
    method: str
    diff: float
    ci_low: float | None
    ci_high: float | None
    p_value: float
    adjusted_p_value: float | None
    sequential_p_value: float
    sequential_decision: str


class VariantReport(BaseModel):
    name: str
    role: str
    status: str
    weight: float | None
    requests: int
    rewarded: int
    reward_mean: float | None
    ci_low: float | None
    ci_high: float | None
    # Where ci_low/ci_high come from: "classical" (a fixed split, where it is exact) or
    # "adaptive_aipw" (the allocation moved while the data came in; bandit.adaptive).
    interval_estimator: str = "classical"
    ipw_mean: float | None
    ipw_ci_low: float | None
    ipw_ci_high: float | None
    ipw_ess: float | None
    ipw_max_weight: float | None
    prob_best: float | None
    expected_loss: float | None
    test: TestResult | None
    latency_p50_ms: float | None
    latency_p99_ms: float | None
    error_rate: float


class Report(BaseModel):
    experiment: str
    status: str
    reward: str
    allocation_version: int | None
    variants: list[VariantReport]
    srm_p_value: float | None
    srm_mismatch: bool
    winner: str | None
    verdict: str
    watermarks: dict[str, int]


def _expected_counts(
    served: dict[int, dict[str, int]], weights: dict[int, dict[str, float]], names: list[str]
) -> tuple[list[float], list[float]]:
    """Observed arm counts and the counts the logged allocation versions expected.

    Each version's requests are split by that version's weights, so a weight change
    mid-experiment does not look like a mismatch.
    """
    observed = [0.0] * len(names)
    expected = [0.0] * len(names)
    for version, counts in served.items():
        total = sum(counts.get(n, 0) for n in names)
        w = weights.get(version, {})
        wsum = sum(float(w.get(n, 0.0)) for n in names)
        for i, n in enumerate(names):
            observed[i] += counts.get(n, 0)
            if wsum > 0:
                expected[i] += total * float(w.get(n, 0.0)) / wsum
    return observed, expected


ADAPTIVE_METHOD = "adaptive_aipw"


def _adaptive(
    arms: list[VariantView],
    weights: dict[int, dict[str, float]],
    kind: str,
) -> AdaptiveIntervals | None:
    """Adaptive-valid intervals when the allocation moved while the data came in.

    ``None`` on a fixed split (every version that has rewards carries the same weights),
    where the classical intervals are exact, and when the versions' weights are not all
    known (then the classical ones are shown, and named as such).
    """
    names = [a.name for a in arms]
    versions = sorted({v for a in arms for v, part in a.by_version.items() if part.rewards.n})
    if len(names) < 2 or not versions or any(v not in weights for v in versions):
        return None
    shares = []
    for v in versions:
        w = [max(float(weights[v].get(n, 0.0)), 0.0) for n in names]
        total = sum(w)
        if total <= 0:
            return None
        shares.append([x / total for x in w])
    if all(max(abs(a - b) for a, b in zip(row, shares[0], strict=True)) < 1e-12 for row in shares):
        return None

    def part(arm: VariantView, v: int) -> tuple[float, float, float]:
        r = arm.by_version.get(v)
        return (r.rewards.n, r.rewards.sum, r.rewards.sum_sq) if r is not None else (0, 0, 0)

    n = np.array([[part(a, v)[0] for a in arms] for v in versions], dtype=np.float64)
    try:
        batches = BatchStats.from_arrays(
            n_total=n.sum(axis=1),
            n=n,
            sum_r=[[part(a, v)[1] for a in arms] for v in versions],
            sum_r2=[[part(a, v)[2] for a in arms] for v in versions],
            propensity=shares,
        )
        return intervals_from_batches(
            batches, alpha=ALPHA, kind="binary" if kind == "binary" else "continuous"
        )
    except InvalidInputError:
        return None  # e.g. rows of an arm in a version that gave it no weight


def build_report(session: Session, experiment: Experiment, stats: LakeStats) -> Report:
    stats.refresh(session)
    kind = bandit_kind(experiment)
    current = allocation_versions.current_allocation(session, experiment)
    weights = dict(current.weights) if current else {}
    arm_rows = [v for v in experiment.variants if v.role == "arm"]
    shadow_rows = [v for v in experiment.variants if v.role == "shadow"]
    arms = stats.variants(experiment.name, [(v.name, "arm") for v in arm_rows])
    shadows = stats.variants(experiment.name, [(v.name, "shadow") for v in shadow_rows])
    rewards = [a.rewards for a in arms]
    n_total = int(sum(r.n for r in rewards))
    bayes = None
    if len(arms) > 1 and n_total > 0:
        bayes = bayes_summary(rewards, kind=kind, rng=np.random.default_rng(0), draws=20_000)
    tests = compare_to_control(rewards, kind=kind, alpha=ALPHA) if len(arms) > 1 else []
    served = stats.served_by_version(experiment.name)
    # Every version that served requests, not a page of the history: on a long
    # experiment the oldest versions would otherwise have no expected share.
    version_weights = allocation_versions.weights_by_version(session, experiment, served)
    adaptive = _adaptive(arms, version_weights, kind) if n_total > 0 else None
    adjusted: list[float] = []
    if adaptive is not None:
        adjusted = [float(p) for p in holm([d.p_value for d in adaptive.differences.values()])]
    pooled = sum(rewards, ArmStats())

    def adaptive_test(i: int) -> TestResult:
        assert adaptive is not None
        d = adaptive.differences[i]
        # The mixing scale msprt takes by default (1.0 when the rewards have no spread yet).
        tau = default_tau(pooled, kind=kind) or 1.0
        seq = adaptive_msprt(d, tau=tau, alpha=ALPHA)
        return TestResult(
            method=ADAPTIVE_METHOD,
            diff=d.diff,
            ci_low=_finite(d.ci_low),
            ci_high=_finite(d.ci_high),
            p_value=d.p_value,
            adjusted_p_value=_finite(adjusted[i - 1]),
            sequential_p_value=seq.p_value,
            sequential_decision=seq.decision,
        )

    def variant_report(i: int, view: VariantView, status: str) -> VariantReport:
        interval = mean_interval(view.rewards, kind=kind, alpha=ALPHA)
        low, high, estimator = interval.low, interval.high, "classical"
        if adaptive is not None and view.role == "arm" and i >= 0:
            low, high = adaptive.arms[i].ci_low, adaptive.arms[i].ci_high
            estimator = ADAPTIVE_METHOD
        ipw = (
            ipw_estimate(view.ipw(n_total), alpha=ALPHA)
            if view.role == "arm" and view.rewards.n
            else None
        )
        test = None
        if view.role == "arm" and i > 0 and adaptive is not None:
            test = adaptive_test(i)
        elif view.role == "arm" and i > 0 and tests:
            c = tests[i - 1]
            seq = msprt(arms[0].rewards, view.rewards, kind=kind, alpha=ALPHA)
            test = TestResult(
                method=c.method,
                diff=c.diff,
                ci_low=_finite(c.ci_low),
                ci_high=_finite(c.ci_high),
                p_value=c.p_value,
                adjusted_p_value=_finite(c.adjusted_p_value),
                sequential_p_value=seq.p_value,
                sequential_decision=seq.decision,
            )
        return VariantReport(
            name=view.name,
            role=view.role,
            status=status,
            weight=weights.get(view.name) if view.role == "arm" else None,
            requests=view.served,
            rewarded=int(view.rewards.n),
            reward_mean=view.rewards.mean if view.rewards.n else None,
            ci_low=_finite(low) if view.rewards.n else None,
            ci_high=_finite(high) if view.rewards.n else None,
            interval_estimator=estimator,
            ipw_mean=ipw.value if ipw else None,
            ipw_ci_low=_finite(ipw.ci_low) if ipw else None,
            ipw_ci_high=_finite(ipw.ci_high) if ipw else None,
            ipw_ess=ipw.ess if ipw else None,
            ipw_max_weight=ipw.max_weight if ipw else None,
            prob_best=float(bayes.prob_best[i])
            if bayes is not None and view.role == "arm"
            else None,
            expected_loss=float(bayes.expected_loss[i])
            if bayes is not None and view.role == "arm"
            else None,
            test=test,
            latency_p50_ms=view.p(0.5),
            latency_p99_ms=view.p(0.99),
            error_rate=view.error_rate,
        )

    reports = [variant_report(i, a, arm_rows[i].status) for i, a in enumerate(arms)]
    reports += [variant_report(-1, s, shadow_rows[i].status) for i, s in enumerate(shadows)]

    names = [a.name for a in arms]
    observed, expected = _expected_counts(served, version_weights, names)
    srm = srm_test(observed, expected) if sum(observed) > 0 and len(names) > 1 else None
    srm_mismatch = srm is not None and srm.p_value < SRM_ALPHA
    winner = None
    if bayes is not None:
        winner = experiment.stopping_rule.winner(
            names, bayes.prob_best.tolist(), bayes.expected_loss.tolist()
        )
    verdict = _verdict(experiment, reports[: len(arms)], winner, srm_mismatch, srm)
    return Report(
        experiment=experiment.name,
        status=experiment.status,
        reward=f"{experiment.reward_kind}"
        + (f"/{experiment.reward_metric}" if experiment.reward_metric else ""),
        allocation_version=current.version if current else None,
        variants=reports,
        srm_p_value=srm.p_value if srm is not None else None,
        srm_mismatch=srm_mismatch,
        winner=winner,
        verdict=verdict,
        watermarks=stats.watermarks,
    )


def _verdict(
    experiment: Experiment,
    arms: list[VariantReport],
    winner: str | None,
    srm_mismatch: bool,
    srm: Any,
) -> str:
    if srm_mismatch:
        return (
            f"Sample-ratio mismatch (p = {srm.p_value:.2g}): traffic does not follow the logged "
            "allocation, so the comparisons cannot be trusted; check the assignment."
        )
    if not arms or all(a.rewarded == 0 for a in arms):
        return "No rewarded requests yet."
    if len(arms) == 1:
        return f"Only one arm ({arms[0].name!r}); nothing to compare."
    if winner is not None:
        best = next(a for a in arms if a.name == winner)
        return (
            f"{winner!r} is best: P(best) = {best.prob_best:.3f}, expected loss "
            f"{best.expected_loss:.2g}; the stopping rule is met."
        )
    leader = max(arms, key=lambda a: a.prob_best or 0.0)
    return (
        f"No winner yet: {leader.name!r} leads with P(best) = {(leader.prob_best or 0):.3f}; "
        "keep collecting data."
    )
