"""A small synthetic lake for the notebooks, written without the web service.

Experiment ``nb``: three arms (``alpha``, ``beta``, ``gamma``) whose weights change over
three allocation versions as an adaptive policy would move them, a shadow (``delta``) on
every other request, binary rewards with ``beta`` the best arm, some requests still
pending, some feedback delivered twice, a few failed requests, latency that differs by
variant, and three features of which ``spend`` drifts in the last third of the traffic.
Each variant's predictions come from a tiny logistic ONNX model stored, as the service
stores it, under ``models/<sha256>.onnx`` (``beta`` and ``gamma`` are classifiers with
``label`` and ``probabilities`` outputs; ``alpha`` ignores ``spend``), so the explanation
notebook has real models to explain.

Experiment ``nb-label``: a smaller two-arm experiment whose feedback carries labels only
(NULL rewards), so the readout must score them with ``lake.rewards``.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from sqlalchemy import Engine, create_engine

from lake import FeedbackRow, LakeWriter, PredictionRow, default_lake_root, metadata

T0 = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)
ARMS = ("alpha", "beta", "gamma")
SHADOW = "delta"
TRUE_RATE = {"alpha": 0.30, "beta": 0.42, "gamma": 0.25}
LATENCY_MEDIAN_MS = {"alpha": 4.0, "beta": 9.0, "gamma": 16.0, SHADOW: 30.0}
# (allocation version, requests served under it, weights of alpha, beta, gamma)
VERSIONS = (
    (1, 1000, (1 / 3, 1 / 3, 1 / 3)),
    (2, 1000, (0.2, 0.5, 0.3)),
    (3, 1000, (0.1, 0.7, 0.2)),
)
DRIFTED_FEATURE = "spend"
FEATURES = ("tenure", "clicks", DRIFTED_FEATURE)
ERROR_RATE_GAMMA = 0.03
PENDING_SHARE = 0.1
DUPLICATE_SHARE = 0.05
LABEL_EXPERIMENT = "nb-label"
# Logistic models over (tenure, clicks, spend): weights, bias, and whether the model is a
# classifier (outputs ``label`` and ``probabilities``) or returns one score.
MODELS = {
    "alpha": ((0.08, 0.25, 0.0), -1.5, False),
    "beta": ((0.02, 0.10, 0.03), -2.5, True),
    "gamma": ((0.10, 0.0, -0.01), -0.5, True),
    SHADOW: ((0.05, 0.05, 0.01), -1.0, False),
}


@dataclass(frozen=True)
class VariantModel:
    """One variant's ONNX model and what the service would log for it."""

    sha256: str
    weights: tuple[float, ...]
    bias: float
    classifier: bool

    def answer(self, features: dict[str, float]) -> tuple[float, list[float] | None]:
        """The logged ``prediction`` and ``scores`` for one request."""
        z = sum(w * features[name] for w, name in zip(self.weights, FEATURES, strict=True))
        p = float(np.float32(1.0 / (1.0 + np.exp(-(z + self.bias)))))
        if self.classifier:
            return float(p > 0.5), [1.0 - p, p]
        return p, None


def logistic_onnx(weights: tuple[float, ...], bias: float, *, classifier: bool) -> bytes:
    """``sigmoid(x @ w + b)`` for ``x: [N, d]``: one ``score [N, 1]``, or ``label [N]`` and
    ``probabilities [N, 2]`` like a scikit-learn classifier exported with skl2onnx."""
    d = len(weights)
    w = numpy_helper.from_array(np.asarray(weights, dtype=np.float32).reshape(d, 1), "w")
    b = numpy_helper.from_array(np.asarray([bias], dtype=np.float32), "b")
    one = numpy_helper.from_array(np.asarray([1.0], dtype=np.float32), "one")
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["xw"]),
        helper.make_node("Add", ["xw", "b"], ["z"]),
        helper.make_node("Sigmoid", ["z"], ["p" if classifier else "score"]),
    ]
    if classifier:
        nodes += [
            helper.make_node("Sub", ["one", "p"], ["q"]),
            helper.make_node("Concat", ["q", "p"], ["probabilities"], axis=1),
            helper.make_node("ArgMax", ["probabilities"], ["label"], axis=1, keepdims=0),
        ]
        outputs = [
            helper.make_tensor_value_info("label", TensorProto.INT64, ["N"]),
            helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", 2]),
        ]
    else:
        outputs = [helper.make_tensor_value_info("score", TensorProto.FLOAT, ["N", 1])]
    graph = helper.make_graph(
        nodes,
        "logistic",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", d])],
        outputs,
        initializer=[w, b, one],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


def write_models(models_dir: Path) -> dict[str, VariantModel]:
    """Store each variant's model as ``<sha256>.onnx``, as the service does."""
    models_dir.mkdir(parents=True, exist_ok=True)
    written = {}
    for variant, (weights, bias, classifier) in MODELS.items():
        body = logistic_onnx(weights, bias, classifier=classifier)
        sha256 = hashlib.sha256(body).hexdigest()
        (models_dir / f"{sha256}.onnx").write_bytes(body)
        written[variant] = VariantModel(sha256, weights, bias, classifier)
    return written


@dataclass
class ArmTruth:
    """What was written for one arm of ``nb``: the values a correct readout must report."""

    served: int = 0
    errors: int = 0
    rewarded: int = 0
    reward_sum: float = 0.0

    @property
    def pending(self) -> int:
        return self.served - self.errors - self.rewarded


@dataclass(frozen=True)
class NotebookLake:
    """Where the generated lake lives, and what it holds."""

    home: Path
    database_url: str
    root: Path
    experiment: str
    predictions: int
    feedback: int
    arms: dict[str, ArmTruth]


def _features(rng: np.random.Generator, drifted: bool) -> dict[str, float]:
    return {
        "tenure": float(rng.gamma(2.0, 6.0)),
        "clicks": float(rng.poisson(3.0)),
        DRIFTED_FEATURE: float(rng.normal(120.0 if drifted else 50.0, 15.0)),
    }


def _prediction(
    request_id: str,
    ts: datetime,
    *,
    experiment: str,
    variant: str,
    role: str,
    version: int,
    propensity: float,
    features: dict[str, float],
    prediction: float | None,
    latency_ms: float,
    scores: list[float] | None = None,
    model_sha256: str | None = None,
) -> PredictionRow:
    failed = prediction is None
    return PredictionRow(
        request_id=request_id,
        ts=ts,
        experiment=experiment,
        variant=variant,
        role=role,  # type: ignore[arg-type]
        allocation_version=version,
        propensity=propensity,
        unit_id=None,
        features=features,
        prediction=prediction,
        scores=None if failed else scores,
        latency_ms=latency_ms,
        model_sha256=model_sha256 or f"{variant:0<64}"[:64],
        provider="CPUExecutionProvider",
        status="error" if failed else "ok",  # type: ignore[arg-type]
        error="RuntimeError: the model failed." if failed else None,
    )


def _write_bandit_experiment(
    rng: np.random.Generator,
    predictions: LakeWriter,
    feedback: LakeWriter,
    truth: dict[str, ArmTruth],
    models: dict[str, VariantModel],
) -> tuple[int, int]:
    n_pred = n_fb = 0
    total = sum(n for _, n, _ in VERSIONS)
    t = 0
    for version, served, weights in VERSIONS:
        for _ in range(served):
            ts = T0 + timedelta(seconds=3.6 * t)
            request_id = f"nb-{t:05d}"
            features = _features(rng, drifted=t >= 2 * total // 3)
            k = int(rng.choice(len(ARMS), p=weights))
            arm = ARMS[k]
            failed = arm == "gamma" and rng.random() < ERROR_RATE_GAMMA
            outcome = float(rng.random() < TRUE_RATE[arm])
            latency = float(LATENCY_MEDIAN_MS[arm] * rng.lognormal(0.0, 0.35))
            answer, scores = models[arm].answer(features)
            predictions.append(
                _prediction(
                    request_id,
                    ts,
                    experiment="nb",
                    variant=arm,
                    role="arm",
                    version=version,
                    propensity=weights[k],
                    features=features,
                    prediction=None if failed else answer,
                    latency_ms=latency,
                    scores=scores,
                    model_sha256=models[arm].sha256,
                )
            )
            n_pred += 1
            truth[arm].served += 1
            truth[arm].errors += int(failed)
            if t % 2 == 0:
                shadow_answer, shadow_scores = models[SHADOW].answer(features)
                predictions.append(
                    _prediction(
                        request_id,
                        ts,
                        experiment="nb",
                        variant=SHADOW,
                        role="shadow",
                        version=version,
                        propensity=0.0,
                        features=features,
                        prediction=shadow_answer,
                        latency_ms=float(LATENCY_MEDIAN_MS[SHADOW] * rng.lognormal(0.0, 0.35)),
                        scores=shadow_scores,
                        model_sha256=models[SHADOW].sha256,
                    )
                )
                n_pred += 1
            if not failed and rng.random() >= PENDING_SHARE:
                fb_ts = ts + timedelta(seconds=float(rng.uniform(5, 600)))
                feedback.append(FeedbackRow(request_id, fb_ts, outcome, None, f"{request_id}-1"))
                n_fb += 1
                truth[arm].rewarded += 1
                truth[arm].reward_sum += outcome
                if rng.random() < DUPLICATE_SHARE:
                    # A retried delivery, later and contradicting the first: only the first counts.
                    later = fb_ts + timedelta(minutes=5)
                    feedback.append(
                        FeedbackRow(request_id, later, 1.0 - outcome, None, f"{request_id}-2")
                    )
                    n_fb += 1
            t += 1
        predictions.flush()
        feedback.flush()
    return n_pred, n_fb


def _write_label_experiment(
    rng: np.random.Generator, predictions: LakeWriter, feedback: LakeWriter
) -> tuple[int, int]:
    n_pred = n_fb = 0
    accuracy = {"small": 0.80, "large": 0.90}
    weights = (0.5, 0.5)
    for t in range(400):
        ts = T0 + timedelta(seconds=20.0 * t)
        request_id = f"lbl-{t:05d}"
        k = int(rng.choice(2, p=weights))
        variant = ("small", "large")[k]
        label = int(rng.integers(0, 10))
        right = rng.random() < accuracy[variant]
        predicted = float(label if right else (label + 1) % 10)
        predictions.append(
            _prediction(
                request_id,
                ts,
                experiment=LABEL_EXPERIMENT,
                variant=variant,
                role="arm",
                version=1,
                propensity=weights[k],
                features=_features(rng, drifted=False),
                prediction=predicted,
                latency_ms=float(3.0 * rng.lognormal(0.0, 0.3)),
            )
        )
        n_pred += 1
        if rng.random() >= PENDING_SHARE:
            feedback.append(FeedbackRow(request_id, ts + timedelta(seconds=30), None, str(label)))
            n_fb += 1
    predictions.flush()
    feedback.flush()
    return n_pred, n_fb


def build_lake(directory: Path, *, seed: int = 7) -> NotebookLake:
    """Write a service data directory (``BANDITLAKE_HOME``) under ``directory``: the SQLite
    manifest, the lake at its default root and the variants' model files."""
    database_url = f"sqlite:///{directory / 'banditlake.db'}"
    root = default_lake_root(directory)
    models = write_models(directory / "models")
    engine: Engine = create_engine(database_url)
    metadata.create_all(engine, tables=[metadata.tables["lake_files"]])
    predictions = LakeWriter(root, engine, table="predictions", writer_id="nb-pred")
    feedback = LakeWriter(root, engine, table="feedback", writer_id="nb-fb")
    try:
        rng = np.random.default_rng(seed)
        truth = {arm: ArmTruth() for arm in ARMS}
        n_pred, n_fb = _write_bandit_experiment(rng, predictions, feedback, truth, models)
        l_pred, l_fb = _write_label_experiment(rng, predictions, feedback)
    finally:
        predictions.close()
        feedback.close()
        engine.dispose()
    assert predictions.stats().rows_dropped == 0 and feedback.stats().rows_dropped == 0
    return NotebookLake(directory, database_url, root, "nb", n_pred + l_pred, n_fb + l_fb, truth)


@pytest.fixture(scope="session")
def notebook_lake(tmp_path_factory: pytest.TempPathFactory) -> NotebookLake:
    return build_lake(tmp_path_factory.mktemp("notebook-lake"))


@pytest.fixture(scope="session")
def kernel_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ``python3`` kernelspec running this interpreter (the venv's), whatever else is installed."""
    directory = tmp_path_factory.mktemp("jupyter")
    spec = directory / "kernels" / "python3"
    spec.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    body = {"argv": argv, "display_name": "Python 3 (banditlake)", "language": "python"}
    (spec / "kernel.json").write_text(json.dumps(body, indent=1), encoding="utf-8")
    return directory


@pytest.fixture
def lake_env(
    notebook_lake: NotebookLake, kernel_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[NotebookLake]:
    """Point the notebooks (through the kernel's inherited environment) at the lake.

    ``BANDITLAKE_HOME`` alone, as the service finds its data directory; a test that wants
    the explicit variables sets them itself.
    """
    monkeypatch.setenv("BANDITLAKE_HOME", str(notebook_lake.home))
    monkeypatch.delenv("BANDITLAKE_DATABASE_URL", raising=False)
    monkeypatch.delenv("BANDITLAKE_LAKE_URI", raising=False)
    monkeypatch.delenv("BANDITLAKE_EXPERIMENT", raising=False)
    monkeypatch.delenv("BANDITLAKE_REWARD", raising=False)
    # JUPYTER_PATH comes first in the kernelspec search path.
    paths = [str(kernel_dir), *filter(None, os.environ.get("JUPYTER_PATH", "").split(os.pathsep))]
    monkeypatch.setenv("JUPYTER_PATH", os.pathsep.join(paths))
    yield notebook_lake
