"""``banditlake example-model``: a synthetic-data classifier exported to ONNX."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from api.cli import main
from api.control.model_spec import inspect_model
from api.example_model import OUTPUT, ExampleModelError, build_example_model

FEATURES = ["age", "tenure", "spend"]


@pytest.fixture(scope="module")
def gbm() -> bytes:
    return build_example_model(FEATURES, kind="gbm", seed=0).onnx


def test_first_output_is_the_probability_of_label_one(gbm: bytes) -> None:
    session = ort.InferenceSession(gbm, providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == [OUTPUT, "label", "probabilities"]
    (x,) = session.get_inputs()
    assert (x.name, x.shape[1], x.type) == ("X", 3, "tensor(float)")
    rows = np.array([[41.0, 3.0, 120.5], [20.0, 60.0, 5.0], [90.0, 1.0, 30.0]], np.float32)
    probability, label, probabilities = session.run(None, {"X": rows})
    assert probability.shape == (3, 1)
    np.testing.assert_array_equal(probability[:, 0], probabilities[:, 1])
    assert np.all((probability >= 0) & (probability <= 1))
    np.testing.assert_array_equal(label, probabilities.argmax(axis=1))


def test_the_service_accepts_it_and_serves_the_probability(gbm: bytes) -> None:
    spec = inspect_model(gbm, features=FEATURES, output=None)
    assert (spec.output_name, spec.input_dim, spec.feature_names) == (OUTPUT, 3, tuple(FEATURES))


def test_same_seed_same_bytes_and_the_kinds_differ(gbm: bytes) -> None:
    assert build_example_model(FEATURES, kind="gbm", seed=0).onnx == gbm
    assert build_example_model(FEATURES, kind="gbm", seed=1).onnx != gbm
    boosted = build_example_model(FEATURES, kind="gbm", seed=0)
    linear = build_example_model(FEATURES, kind="logistic", seed=0)
    # The label has an interaction term only the trees can learn.
    assert boosted.accuracy > linear.accuracy > 0.6


@pytest.mark.parametrize(
    "features",
    [[], ["age", "age"], ["age", ""]],
    ids=["none", "repeated", "empty-name"],
)
def test_bad_feature_lists_are_one_sentence(features: list[str]) -> None:
    with pytest.raises(ExampleModelError, match=r"^--features needs distinct, non-empty names"):
        build_example_model(features)


def test_cli_writes_the_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "logreg.onnx"
    argv = ["example-model", "--features", "a,b", "--kind", "logistic", "--out", str(out)]
    assert main([*argv, "--seed", "3"]) == 0
    assert f"wrote {out}: logistic regression" in capsys.readouterr().out
    session = ort.InferenceSession(out.read_bytes(), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].shape[1] == 2


def test_cli_without_the_demo_extra_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "skl2onnx", None)  # import skl2onnx now fails
    out = tmp_path / "gbm.onnx"
    assert main(["example-model", "--features", "age", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "needs scikit-learn and skl2onnx" in err and "banditlake[demo]" in err
    assert err.strip().endswith(".") and len(err.strip().splitlines()) == 1
    assert "Traceback" not in err
    assert not out.exists()
