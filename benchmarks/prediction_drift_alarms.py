"""How often the prediction-drift rule (PSI > 0.2, 10 bins) flags a model, by window size.

For each window size, pairs of windows drawn from one normal distribution (false alarms)
and from two that differ by a shift of the mean (alarms that should fire), binned exactly
as :func:`lake.dashboard.prediction_drift` bins them: cut at the first window's deciles
(:func:`lake.dashboard.prediction_cuts`), scored with :func:`lake.dashboard.psi`.

    .venv/bin/python benchmarks/prediction_drift_alarms.py [--pairs 1000] [--seed 6]
"""

from __future__ import annotations

import argparse

import numpy as np
from numpy.typing import NDArray

from lake.dashboard import DRIFT_BINS, DRIFT_THRESHOLD, prediction_cuts, psi

SIZES = (100, 200, 250, 300, 1000)
SHIFTS = (0.25, 0.5, 0.75)


def window_psi(reference: NDArray[np.float64], current: NDArray[np.float64]) -> float:
    cuts = prediction_cuts(reference, DRIFT_BINS)
    ref = np.bincount(np.searchsorted(cuts, reference), minlength=len(cuts) + 1)
    cur = np.bincount(np.searchsorted(cuts, current), minlength=len(cuts) + 1)
    return psi(ref.tolist(), cur.tolist())


def flagged(rng: np.random.Generator, n: int, shift: float, pairs: int) -> float:
    scores = [window_psi(rng.normal(size=n), rng.normal(shift, 1, size=n)) for _ in range(pairs)]
    return float(np.mean(np.asarray(scores) > DRIFT_THRESHOLD))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=6)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    header = "rows per window  false alarms  " + "  ".join(f"shift {s:.2f} sd" for s in SHIFTS)
    print(header)
    for n in SIZES:
        cells = [f"{flagged(rng, n, 0.0, args.pairs):12.1%}"]
        cells += [f"{flagged(rng, n, s, args.pairs):13.1%}" for s in SHIFTS]
        print(f"{n:15d}  " + "  ".join(cells))


if __name__ == "__main__":
    main()
