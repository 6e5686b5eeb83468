"""Tiny ONNX models built with ``onnx.helper`` for the tests and benchmarks."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def linear_model(
    weights: Sequence[float],
    bias: float = 0.0,
    *,
    batch_dim: str | int = "N",
    dtype: int = TensorProto.FLOAT,
    output: str = "y",
) -> bytes:
    """``y = x @ w + b`` with ``x: [N, d]`` and ``y: [N, 1]``."""
    d = len(weights)
    np_dtype = np.float32 if dtype == TensorProto.FLOAT else np.float64
    w = numpy_helper.from_array(np.asarray(weights, dtype=np_dtype).reshape(d, 1), "w")
    b = numpy_helper.from_array(np.asarray([bias], dtype=np_dtype), "b")
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "w"], ["xw"]),
            helper.make_node("Add", ["xw", "b"], [output]),
        ],
        "linear",
        [helper.make_tensor_value_info("x", dtype, [batch_dim, d])],
        [helper.make_tensor_value_info(output, dtype, [batch_dim, 1])],
        initializer=[w, b],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


def int_input_model(d: int = 3) -> bytes:
    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "ints",
        [helper.make_tensor_value_info("x", TensorProto.INT64, ["N", d])],
        [helper.make_tensor_value_info("y", TensorProto.INT64, ["N", d])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


def rank3_model() -> bytes:
    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "rank3",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2, 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 2, 2])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


def fragile_model(d: int = 3) -> bytes:
    """Works on all-zero input (so it loads and warms up) and fails when max(x) >= 2.

    ``y = table[int(max(x))]`` with a two-entry table: a Gather out of range at run time.
    """
    table = numpy_helper.from_array(np.asarray([10.0, 20.0], dtype=np.float32), "table")
    axes = numpy_helper.from_array(np.asarray([1], dtype=np.int64), "axes")
    graph = helper.make_graph(
        [
            helper.make_node("ReduceMax", ["x", "axes"], ["m"], keepdims=0),
            helper.make_node("Cast", ["m"], ["idx"], to=TensorProto.INT64),
            helper.make_node("Gather", ["table", "idx"], ["g"], axis=0),
            helper.make_node("Unsqueeze", ["g", "axes"], ["y"]),
        ],
        "fragile",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", d])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 1])],
        initializer=[table, axes],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


def classifier_model(weights: Sequence[Sequence[float]]) -> bytes:
    """Scores ``x @ W`` of shape ``[N, k]``; the service predicts the argmax class."""
    w = np.asarray(weights, dtype=np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["scores"])],
        "classifier",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", w.shape[0]])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["N", w.shape[1]])],
        initializer=[numpy_helper.from_array(w, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


def mlp_model(d: int = 16, hidden: int = 64, seed: int = 0) -> bytes:
    """A small two-layer ReLU network ``[N, d] -> [N, 1]``, the benchmarks' model."""
    rng = np.random.default_rng(seed)
    w1 = numpy_helper.from_array(rng.normal(size=(d, hidden)).astype(np.float32), "w1")
    b1 = numpy_helper.from_array(rng.normal(size=(hidden,)).astype(np.float32), "b1")
    w2 = numpy_helper.from_array(rng.normal(size=(hidden, hidden)).astype(np.float32), "w2")
    b2 = numpy_helper.from_array(rng.normal(size=(hidden,)).astype(np.float32), "b2")
    w3 = numpy_helper.from_array(rng.normal(size=(hidden, 1)).astype(np.float32), "w3")
    graph = helper.make_graph(
        [
            helper.make_node("Gemm", ["x", "w1", "b1"], ["h1"]),
            helper.make_node("Relu", ["h1"], ["r1"]),
            helper.make_node("Gemm", ["r1", "w2", "b2"], ["h2"]),
            helper.make_node("Relu", ["h2"], ["r2"]),
            helper.make_node("MatMul", ["r2", "w3"], ["y"]),
        ],
        "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", d])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 1])],
        initializer=[w1, b1, w2, b2, w3],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()
