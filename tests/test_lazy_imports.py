"""The serving process starts without the heavy imports only other paths need."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from onnx import TensorProto

from api.control.model_spec import _FLOAT_TYPES
from bandit._lazy import scipy_stats

ROOT = Path(__file__).resolve().parents[1]


def test_the_server_imports_neither_scipy_nor_onnx() -> None:
    # scipy.stats and onnx cost seconds each at every start of `banditlake serve`.
    code = "import json, sys, api.app, api.cli; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    loaded = {name.split(".")[0] for name in json.loads(out)}
    assert "scipy" not in loaded
    assert "onnx" not in loaded
    assert "onnxruntime" in loaded  # the check itself would notice a broken import


def test_the_lazy_scipy_stats_is_scipy_stats() -> None:
    from scipy import stats

    assert scipy_stats.norm is stats.norm


def test_the_float_input_types_are_onnxs() -> None:
    assert _FLOAT_TYPES == {TensorProto.FLOAT: "float32", TensorProto.DOUBLE: "float64"}
