"""The features of a predict request: checked against the experiment, shaped for a variant.

A request sends its features as a list in the variants' order or as an object by name.
Pydantic hands over a plain ``list`` or ``dict`` of finite floats (``PredictBody`` checks
them); ``isinstance(x, dict)`` is checked rather than the much slower ABC ``Mapping``.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from api.errors import InvalidRequestError
from api.serving.runtime import ExperimentRuntime, VariantRuntime

__all__ = ["Features", "check_features", "to_vector"]

Features = list[float] | dict[str, float]


def check_features(exp: ExperimentRuntime, features: Features, field: str) -> None:
    """Refuse features that no variant of the experiment can take, naming the field."""
    if isinstance(features, dict):
        unknown = [k for k in features if k not in exp.feature_set]
        if unknown:
            msg = (
                f"{field} names unknown feature(s) {unknown[:10]}; experiment "
                f"{exp.name!r} expects {list(exp.feature_names)}."
            )
            raise InvalidRequestError(msg, code="unknown_feature")
        missing = [k for k in exp.feature_names if k not in features]
        if missing:
            msg = f"{field} lacks feature(s) {missing[:10]} that experiment {exp.name!r} needs."
            raise InvalidRequestError(msg, code="missing_feature")
    else:
        if exp.positional_dim is None:
            msg = (
                f"{field}: the variants of {exp.name!r} take different inputs; send "
                f"features as an object {{name: value}} with {list(exp.feature_names)}."
            )
            raise InvalidRequestError(msg, code="positional_features_ambiguous")
        if len(features) != exp.positional_dim:
            msg = (
                f"{field} has {len(features)} values; experiment {exp.name!r} expects "
                f"{exp.positional_dim}."
            )
            raise InvalidRequestError(msg, code="wrong_feature_count")
    limit = exp.feature_limit
    if limit is not None:
        # A value a float32 model cannot hold would reach it as infinity: refuse it here
        # rather than let it fail the model (and count against the variant).
        values = features.values() if isinstance(features, dict) else features
        if max(values, default=0.0) > limit or min(values, default=0.0) < -limit:
            items = features.items() if isinstance(features, dict) else enumerate(features)
            where, value = next((k, v) for k, v in items if not -limit <= v <= limit)
            name = f"{field}.{where}" if isinstance(where, str) else f"{field}[{where}]"
            msg = (
                f"{name} = {value!r} is outside the float32 range (±{limit:.8g}) of the "
                f"model inputs of experiment {exp.name!r}."
            )
            raise InvalidRequestError(msg, code="feature_out_of_range")


def to_vector(
    variant: VariantRuntime, features: Features
) -> tuple[NDArray[np.float64], dict[str, float]]:
    """The variant's input row (its feature order) and the features by name, for the lake."""
    if isinstance(features, dict):
        values = [float(features[n]) for n in variant.feature_names]
        return np.asarray(values), dict(features)
    return np.asarray(features, dtype=np.float64), dict(
        zip(variant.feature_names, features, strict=True)
    )
