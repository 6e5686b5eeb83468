"""ONNX Runtime session creation with the execution provider actually in use."""

from __future__ import annotations

import functools
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper

__all__ = ["DeviceUnavailableError", "LoadedModel", "cuda_available", "load_model"]

log = logging.getLogger(__name__)

# CPU models faster than this run on the event loop: a thread hop would cost more.
_INLINE_BELOW_S = 0.0005

Device = Literal["auto", "cpu", "cuda"]
CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"


class DeviceUnavailableError(RuntimeError):
    """``BANDITLAKE_DEVICE=cuda`` was asked for and CUDA does not work here."""


@dataclass(frozen=True, slots=True)
class LoadedModel:
    session: Any
    provider: str
    input_name: str
    output_name: str
    input_dtype: Any
    inline: bool = False
    """Run on the event loop rather than in a thread: a CPU model faster than a thread hop."""
    reference: Any = None
    """An input the model answered at load time (zeros), to tell a broken model from a bad row."""


@functools.cache
def cuda_available() -> bool:
    """Whether a CUDA session really starts here.

    onnxruntime-gpu lists ``CUDAExecutionProvider`` even on a machine without a GPU or
    CUDA libraries, so the only honest answer comes from creating a session and reading
    back the providers it kept.
    """
    if CUDA not in ort.get_available_providers():
        return False
    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "probe",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    options = ort.SessionOptions()
    options.log_severity_level = 4
    try:
        session = ort.InferenceSession(model.SerializeToString(), options, providers=[CUDA, CPU])
    except Exception:
        return False
    return CUDA in session.get_providers()


def _providers(device: Device) -> list[str]:
    if device == "cpu":
        return [CPU]
    if device == "cuda" and not cuda_available():
        msg = (
            "BANDITLAKE_DEVICE=cuda but this ONNX Runtime build has no working CUDA provider "
            f"(available: {ort.get_available_providers()}); install onnxruntime-gpu with CUDA "
            "or set BANDITLAKE_DEVICE=auto."
        )
        raise DeviceUnavailableError(msg)
    return [CUDA, CPU] if cuda_available() else [CPU]


def load_model(
    path: Path,
    *,
    input_name: str,
    output_name: str,
    input_dim: int,
    device: Device = "auto",
    threads: int = 1,
) -> LoadedModel:
    """Create a session, run one warm-up call and report the provider in use.

    onnxruntime-gpu quietly falls back to the CPU when CUDA cannot start, so the
    provider is read back from the session rather than assumed from the request.
    """
    options = ort.SessionOptions()
    # One or two intra-op threads: the default of one per core fights the web server.
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    session = ort.InferenceSession(str(path), options, providers=_providers(device))
    in_use = session.get_providers()[0]
    if device == "cuda" and in_use != CUDA:
        msg = f"BANDITLAKE_DEVICE=cuda but the session for {path.name} fell back to {in_use}."
        raise DeviceUnavailableError(msg)
    input_type = session.get_inputs()[0].type
    dtype = np.float64 if input_type == "tensor(double)" else np.float32
    reference = np.zeros((1, input_dim), dtype=dtype)
    out = session.run([output_name], {input_name: reference})[0]
    _check_output(output_name, out)
    # Timed here, off the event loop and once per load, rather than on the first request.
    best = math.inf
    for _ in range(5):
        t0 = time.perf_counter()
        session.run([output_name], {input_name: reference})
        best = min(best, time.perf_counter() - t0)
    log.debug("loaded %s on %s (%.1f us per call)", path.name, in_use, best * 1e6)
    return LoadedModel(
        session,
        in_use,
        input_name,
        output_name,
        dtype,
        inline=in_use == CPU and best < _INLINE_BELOW_S,
        reference=reference[0],
    )


def _check_output(name: str, out: Any) -> None:
    """Refuse an output the service cannot read as one number or one score row per input."""
    if not isinstance(out, np.ndarray):
        kind = type(out).__name__
        hint = (
            " scikit-learn classifiers exported by skl2onnx wrap probabilities in a ZipMap: "
            "export with options={id(model): {'zipmap': False}}, or choose the probability "
            "tensor with the upload's output field."
            if isinstance(out, list)
            else ""
        )
        msg = f"The model's output {name!r} is a {kind}, not a numeric tensor.{hint}"
        raise ValueError(msg)
    if out.dtype.kind not in "biuf" or out.ndim == 0 or out.shape[0] != 1:
        msg = (
            f"The model's output {name!r} has dtype {out.dtype} and shape {list(out.shape)} "
            "for one input row; it must be a numeric tensor [N], [N, 1] or [N, k]."
        )
        raise ValueError(msg)
