"""Cost of one contextual decision (5 arms, 20 context features) beside a non-contextual one.

The baseline is what a replica does today for a request: bisect a uniform draw on the
allocation's cumulative weights (the three lines of ``ExperimentRuntime.choose``). Beside
it, in the same process and interleaved round by round: LinTS with 500 and 100
Monte-Carlo draws (the propensity's standard error at most 0.022 and 0.05), LinUCB (exact
propensity), segmented Thompson (its weights computed at fit time), and LinTS deciding a batch
of 1,000 contexts at once (cost per context). Each figure is the median over rounds of
the mean cost of one decision in the round; the ratios against the baseline are what to
compare across machines.

    python benchmarks/contextual_decision.py [--rounds 15] [--decisions 2000] [--json]
"""

from __future__ import annotations

import argparse
import bisect
import json
import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bandit.contextual import (  # noqa: E402
    LinearConfig,
    LinearStats,
    Standardizer,
    decide,
    decide_batch,
    fit_linear,
)
from bandit.segmented import SegmentedConfig, decide_segment, fit_segmented  # noqa: E402
from bandit.stats import ArmStats  # noqa: E402

ARMS, FEATURES = 5, 20


def _cases(decisions: int) -> dict[str, Callable[[], None]]:
    rng = np.random.default_rng(0)
    names = [f"f{i}" for i in range(FEATURES)]
    x = rng.normal(size=(20_000, FEATURES))
    standardizer = Standardizer.fit(names, x[:1000])
    z = standardizer.design(x)
    arm = rng.integers(0, ARMS, size=len(x))
    y = (rng.random(len(x)) < 0.1 + 0.05 * arm).astype(float)
    stats = [LinearStats.from_rows(z[arm == k], y[arm == k]) for k in range(ARMS)]
    arms = [f"arm{k}" for k in range(ARMS)]

    def model(kind: str, draws: int) -> object:
        config = LinearConfig(kind=kind, draws=draws, exploration=0.5)  # type: ignore[arg-type]
        return fit_linear(stats, arms=arms, standardizer=standardizer, config=config)

    lints500, lints100, linucb = model("lints", 500), model("lints", 100), model("linucb", 1)
    segmented = fit_segmented(
        {"fr": [ArmStats(n=1000, sum=100 + 10 * k, sum_sq=100 + 10 * k) for k in range(ARMS)]},
        arms=arms,
        config=SegmentedConfig(field="country"),
        rng=rng,
    )
    weights = [0.1, 0.15, 0.2, 0.25, 0.3]
    cumulative = list(np.cumsum(weights))
    py_rng = random.Random(0)
    contexts = [x[i] for i in range(decisions)]
    batch = x[:1000]

    def baseline() -> None:
        for _ in range(decisions):
            point = py_rng.random()
            i = min(bisect.bisect_right(cumulative, point * cumulative[-1]), ARMS - 1)
            _ = (i, weights[i])

    def one(m: object) -> Callable[[], None]:
        def run() -> None:
            for c in contexts:
                decide(m, c, rng)  # type: ignore[arg-type]

        return run

    def seg() -> None:
        for _ in range(decisions):
            decide_segment(segmented, "fr", rng)

    def lints_batch() -> None:
        for _ in range(max(1, decisions // 1000)):
            decide_batch(lints500, batch, rng)  # type: ignore[arg-type]

    return {
        "baseline (weights, bisect)": baseline,
        "lints, 500 draws": one(lints500),
        "lints, 100 draws": one(lints100),
        "linucb": one(linucb),
        "segmented thompson": seg,
        "lints, 500 draws, batch of 1000": lints_batch,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--decisions", type=int, default=2000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    cases = _cases(args.decisions)
    per_decision: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(args.rounds):
        for name, run in cases.items():
            count = max(1, args.decisions // 1000) * 1000 if "batch" in name else args.decisions
            start = time.perf_counter()
            run()
            per_decision[name].append((time.perf_counter() - start) / count)
    medians = {name: statistics.median(values) for name, values in per_decision.items()}
    base = medians["baseline (weights, bisect)"]
    if args.json:
        body = {
            name: {"p50_us": round(v * 1e6, 3), "ratio": round(v / base, 1)}
            for name, v in medians.items()
        }
        print(json.dumps(body))
        return
    print(f"{ARMS} arms, {FEATURES} context features; median cost of one decision")
    for name, value in medians.items():
        print(f"{name:<34} {value * 1e6:8.2f} µs   x{value / base:7.1f}")


if __name__ == "__main__":
    main()
