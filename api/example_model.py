"""A small classifier on synthetic data, exported to ONNX, for the README's walkthrough.

``banditlake example-model`` needs no download: it draws ``rows`` synthetic customers
from ``np.random.default_rng(seed)``, labels them with a known rule, fits a
scikit-learn classifier and exports it with skl2onnx.

The data
    Feature :math:`j` is :math:`x_j = \\mu_j (1 + z_j / 2)` with :math:`z \\sim N(0, I)`
    and a scale :math:`\\mu_j` drawn from :math:`U(2, 100)`, so values are on the scale of
    ages, tenures or amounts rather than z-scores. The label is Bernoulli with
    :math:`\\operatorname{logit} p = z \\cdot w + 2 z_0 z_1 - 1` (a third to two fifths positive):
    the interaction term is one a gradient-boosted model can learn and a logistic
    regression cannot, so the two kinds genuinely differ.

The model's outputs
    The first output, ``probability`` (float ``[N, 1]``), is the probability of the
    positive class: the service serves the first output unless the upload names
    another, and a ``[N, 1]`` output is served as the prediction itself. skl2onnx's own
    outputs follow: ``label`` (int64 ``[N]``) and ``probabilities`` (float ``[N, 2]``,
    which the service would read as scores, predicting their arg-max).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from api.errors import CommandError

__all__ = ["OUTPUT", "ExampleModel", "ExampleModelError", "ModelKind", "build_example_model"]

ModelKind = Literal["gbm", "logistic"]

OUTPUT = "probability"
"""The first output of an example model: P(label = 1), shape ``[N, 1]``."""

_OPSET = 17
_TEST_SHARE = 0.25


class ExampleModelError(CommandError):
    """The example model cannot be built; the message says why in one sentence."""


@dataclass(frozen=True, slots=True)
class ExampleModel:
    """An exported classifier: the ONNX bytes and how well it does on held-out rows."""

    kind: ModelKind
    features: tuple[str, ...]
    onnx: bytes
    rows: int
    accuracy: float
    description: str


def _synthetic(
    d: int, rows: int, rng: np.random.Generator
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
    scale = rng.uniform(2.0, 100.0, size=d)
    weights = rng.normal(0.0, 1.0, size=d)
    z = rng.normal(0.0, 1.0, size=(rows, d))
    logit = z @ weights - 1.0
    if d >= 2:
        logit += 2.0 * z[:, 0] * z[:, 1]
    labels = (rng.uniform(size=rows) < 1.0 / (1.0 + np.exp(-logit))).astype(np.int64)
    features = (scale * (1.0 + z / 2.0)).astype(np.float32)
    return features, labels


def _estimator(kind: ModelKind, seed: int) -> tuple[Any, str]:
    from sklearn.ensemble import GradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if kind == "gbm":
        model = GradientBoostingClassifier(n_estimators=60, max_depth=3, random_state=seed)
        return model, "gradient-boosted trees (60 trees, depth 3)"
    return make_pipeline(StandardScaler(), LogisticRegression()), "logistic regression"


def _with_probability_first(model: Any) -> bytes:
    """Prepend the output ``probability`` = ``probabilities[:, 1:2]`` to the exported graph."""
    from onnx import TensorProto, checker, helper, numpy_helper

    graph = model.graph
    names = [o.name for o in graph.output]
    if "probabilities" not in names:
        msg = f"skl2onnx exported the outputs {names}, without 'probabilities'."
        raise ExampleModelError(msg)
    for name, value in (("slice_starts", 1), ("slice_ends", 2), ("slice_axes", 1)):
        graph.initializer.append(numpy_helper.from_array(np.array([value], np.int64), name))
    graph.node.append(
        helper.make_node(
            "Slice",
            ["probabilities", "slice_starts", "slice_ends", "slice_axes"],
            [OUTPUT],
            name="positive_class",
        )
    )
    outputs = list(graph.output)
    del graph.output[:]
    graph.output.extend(
        [helper.make_tensor_value_info(OUTPUT, TensorProto.FLOAT, ["N", 1]), *outputs]
    )
    checker.check_model(model)
    data: bytes = model.SerializeToString()
    return data


def build_example_model(
    features: Sequence[str], *, kind: ModelKind = "gbm", seed: int = 0, rows: int = 2000
) -> ExampleModel:
    """Train a ``kind`` classifier on ``rows`` synthetic rows and export it to ONNX.

    The input is ``X``, float32 ``[N, len(features)]`` with a dynamic ``N``; the first
    output is :data:`OUTPUT`. The same ``features``, ``kind``, ``seed`` and ``rows`` give
    the same bytes.

    Raises
    ------
    ExampleModelError
        When scikit-learn or skl2onnx is missing, or ``features`` is empty or repeats a name.
    """
    names = tuple(features)
    if not names or len(set(names)) != len(names) or not all(names):
        given = ",".join(names)
        msg = f"--features needs distinct, non-empty names such as age,tenure,spend; got {given!r}."
        raise ExampleModelError(msg)
    try:
        from skl2onnx import to_onnx
        from sklearn.model_selection import train_test_split
    except ImportError as exc:
        msg = (
            "banditlake example-model needs scikit-learn and skl2onnx, which are missing "
            "here; install them with pip install 'banditlake[demo]' (make run does)."
        )
        raise ExampleModelError(msg) from exc
    x, y = _synthetic(len(names), rows, np.random.default_rng(seed))
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=_TEST_SHARE, random_state=seed, stratify=y
    )
    model, description = _estimator(kind, seed)
    model.fit(x_train, y_train)
    accuracy = float(model.score(x_test, y_test))
    # zipmap off: the probabilities come out as a tensor, not a list of maps.
    exported = to_onnx(
        model, x_train[:1], options={id(model): {"zipmap": False}}, target_opset=_OPSET
    )
    return ExampleModel(
        kind=kind,
        features=names,
        onnx=_with_probability_first(exported),
        rows=rows,
        accuracy=accuracy,
        description=description,
    )
