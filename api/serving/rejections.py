"""Counting the feature values a predict request was refused for, by feature.

A request with a NaN or infinite feature is refused by the body's schema (422) before it
reaches a model, so it never becomes a lake row; the data-quality panel reads these
counts from :attr:`api.metrics.Metrics.features_rejected` instead. Labels come from the
experiment's snapshot only, never from the request as sent: a name that is not a feature
of a running experiment is not counted, so a client cannot mint label values (each is a
series kept for the life of the process).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Final

from api.metrics import Metrics
from api.serving.runtime import ExperimentRuntime

__all__ = ["NON_FINITE", "count_non_finite"]

NON_FINITE: Final = "non_finite"
"""The ``reason`` label of a NaN or infinite value."""

# pydantic's error type for a float that ``allow_inf_nan=False`` refuses.
_FINITE_ERROR: Final = "finite_number"
# ``PredictBody.features`` is a union: its errors name the branch before the key.
_BRANCHES: Final = frozenset({"list[float]", "dict[str,float]"})


def _feature(experiment: ExperimentRuntime, loc: tuple[Any, ...]) -> str | None:
    """The feature a validation error's location points at, if it is one of the experiment's."""
    if "features" not in loc:
        return None
    rest = loc[loc.index("features") + 1 :]
    if rest and rest[0] in _BRANCHES:
        rest = rest[1:]
    if len(rest) != 1:
        return None
    key = rest[0]
    if isinstance(key, int):
        names = experiment.arms[0].feature_names if experiment.arms else experiment.feature_names
        return names[key] if 0 <= key < len(names) else None
    return key if isinstance(key, str) and key in experiment.feature_set else None


def count_non_finite(
    metrics: Metrics,
    experiment: ExperimentRuntime | None,
    errors: Iterable[Mapping[str, Any]],
) -> int:
    """Count each non-finite feature value among a refused body's validation ``errors``.

    Parameters
    ----------
    metrics
        Where the counter is.
    experiment
        The experiment the request was sent to, from the snapshot; ``None`` (not running
        or unknown) counts nothing.
    errors
        ``ValidationError.errors()`` of a ``PredictBody`` or ``BatchPredictBody``.

    Returns
    -------
    int
        The values counted.
    """
    if experiment is None:
        return 0
    counted: dict[str, int] = {}
    for error in errors:
        if error.get("type") != _FINITE_ERROR:
            continue
        feature = _feature(experiment, tuple(error.get("loc", ())))
        if feature is not None:
            counted[feature] = counted.get(feature, 0) + 1
    for feature, n in counted.items():
        metrics.features_rejected.labels(experiment.name, feature, NON_FINITE).inc(n)
    return sum(counted.values())
