"""Three classifiers of scikit-learn's handwritten digits, exported to ONNX.

The data ships with scikit-learn (1,797 8x8 images, 64 pixel intensities from 0 to 16),
so the demo needs no network. The split is fixed, not drawn from the demo's seed: a
second run with another seed must replay rows the stored models never trained on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from api.demo.errors import DemoError

__all__ = ["FEATURES", "OUTPUT", "Candidate", "Holdout", "train_candidates"]

FEATURES: tuple[str, ...] = tuple(f"pixel_{row}_{col}" for row in range(8) for col in range(8))
"""Input names, in the order the models read them (row-major over the 8x8 image)."""

OUTPUT = "label"
"""The ONNX output the service serves: the predicted class, so label feedback scores it."""

_SPLIT_SEED = 0
_TEST_SHARE = 0.5
_OPSET = 17


@dataclass(frozen=True, slots=True)
class Holdout:
    """The rows no model trained on: ``features`` is (n, 64) float, ``labels`` is (n,) int."""

    features: npt.NDArray[np.float64]
    labels: npt.NDArray[np.int64]

    def __len__(self) -> int:
        return int(self.labels.shape[0])


@dataclass(frozen=True, slots=True)
class Candidate:
    """One trained model: its variant name, a line about it, the ONNX bytes, holdout accuracy."""

    name: str
    description: str
    onnx: bytes
    accuracy: float


def _estimators() -> list[tuple[str, str, Any]]:
    from sklearn.linear_model import LogisticRegression
    from sklearn.naive_bayes import GaussianNB
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.tree import DecisionTreeClassifier

    return [
        (
            "logreg",
            "standardized pixels, multinomial logistic regression",
            # Raw 0-16 intensities take lbfgs hundreds of iterations; scaled, about thirty.
            make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)),
        ),
        ("naive-bayes", "Gaussian naive Bayes", GaussianNB()),
        (
            "tree-depth4",
            "a decision tree four levels deep",
            DecisionTreeClassifier(max_depth=4, random_state=_SPLIT_SEED),
        ),
    ]


def _export(model: Any, sample: npt.NDArray[np.float32]) -> bytes:
    from skl2onnx import to_onnx

    # zipmap off: ``label`` and ``probabilities`` come out as plain tensors.
    onnx_model = to_onnx(model, sample, options={id(model): {"zipmap": False}}, target_opset=_OPSET)
    data: bytes = onnx_model.SerializeToString()
    return data


def train_candidates() -> tuple[list[Candidate], Holdout]:
    """Train the three models on half of the digits; return them and the other half.

    Raises
    ------
    DemoError
        When scikit-learn or skl2onnx is not installed.
    """
    try:
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split
        from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]
    except ImportError as exc:
        msg = (
            "The demo needs scikit-learn and skl2onnx, which are missing here; install "
            "them with pip install 'banditlake[demo]'."
        )
        raise DemoError(msg) from exc
    x, y = load_digits(return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=_TEST_SHARE, random_state=_SPLIT_SEED, stratify=y
    )
    sample = np.asarray(x_train[:1], dtype=np.float32)
    candidates = []
    # One BLAS thread: on a small shared machine, oversubscribed threads made the
    # logistic regression ten times slower than running it single-threaded.
    with threadpool_limits(limits=1):
        for name, description, model in _estimators():
            model.fit(x_train, y_train)
            accuracy = float(model.score(x_test, y_test))
            candidates.append(Candidate(name, description, _export(model, sample), accuracy))
    holdout = Holdout(
        features=np.asarray(x_test, dtype=np.float64), labels=np.asarray(y_test, dtype=np.int64)
    )
    return candidates, holdout
