"""ONNX Runtime session creation with the execution provider actually in use.

ONNX Runtime logs from C++ straight to stderr, below Python's logging. Two of its habits
would greet every user without a GPU: onnxruntime-gpu tries to load its CUDA libraries
when a session asks for CUDA and prints an error in red when they are missing, and a
warning after it. So CUDA is asked for only where a CUDA device exists, ONNX Runtime's
own log is kept to errors (``set_default_logger_severity(3)``) before the first session,
and the one probe that may fail is silenced; the service then says in one line per
variant which provider it runs on and why (:func:`provider_reason`).
"""

from __future__ import annotations

import ctypes
import functools
import logging
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import onnxruntime as ort

from api.errors import UnavailableError

__all__ = [
    "CudaStatus",
    "DeviceUnavailableError",
    "LoadedModel",
    "cuda_available",
    "cuda_status",
    "load_model",
    "provider_reason",
]

log = logging.getLogger(__name__)

# CPU models faster than this run on the event loop: a thread hop would cost more.
_INLINE_BELOW_S = 0.0005

Device = Literal["auto", "cpu", "cuda"]
CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"


class DeviceUnavailableError(UnavailableError):
    """``BANDITLAKE_DEVICE=cuda`` was asked for and CUDA does not work here."""

    code = "device_unavailable"


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


@dataclass(frozen=True, slots=True)
class CudaStatus:
    """Whether ONNX Runtime can run on CUDA here, and the reason in a few words."""

    available: bool
    reason: str


# ONNX Runtime's logger severities: 0 verbose, 1 info, 2 warning, 3 error, 4 fatal.
_ORT_ERRORS_ONLY = 3
_ORT_SILENT = 4


@functools.cache
def _quiet_onnxruntime() -> None:
    """Keep ONNX Runtime's process-wide log to errors; called before any session exists."""
    ort.set_default_logger_severity(_ORT_ERRORS_ONLY)


def _cuda_devices() -> tuple[int, str]:
    """The number of CUDA devices the NVIDIA driver sees, or 0 and why none.

    Asked of the driver library itself (``cuInit``, ``cuDeviceGetCount``), which the
    CUDA runtime under ONNX Runtime would load the same way; without it CUDA cannot work.
    """
    library = "nvcuda.dll" if sys.platform == "win32" else "libcuda.so.1"
    try:
        driver = ctypes.CDLL(library)
    except OSError:
        return 0, f"no CUDA device: no NVIDIA driver ({library})"
    status = driver.cuInit(0)
    if status != 0:
        return 0, f"no CUDA device: cuInit error {status}"
    count = ctypes.c_int(0)
    if driver.cuDeviceGetCount(ctypes.byref(count)) != 0 or count.value < 1:
        return 0, "no CUDA device"
    return count.value, ""


def _probe_model() -> bytes:
    # Imported here: onnx costs about two seconds to import, and only the CUDA probe
    # (on a machine with a GPU) builds a model.
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "probe",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return bytes(model.SerializeToString())


@functools.cache
def cuda_status(*, quiet: bool = True) -> CudaStatus:
    """Whether a CUDA session really starts here, and why not.

    onnxruntime-gpu lists ``CUDAExecutionProvider`` even on a machine without a GPU or
    CUDA libraries, so the only honest answer comes from the driver and then from
    creating a session and reading back the providers it kept. ``quiet`` hides ONNX
    Runtime's own error about missing CUDA libraries (``BANDITLAKE_DEVICE=auto``, where a
    CPU fallback is expected); ``BANDITLAKE_DEVICE=cuda`` lets it through, since it names
    the library that is missing.
    """
    _quiet_onnxruntime()
    if CUDA not in ort.get_available_providers():
        return CudaStatus(False, "this onnxruntime package has no CUDA provider")
    devices, why_not = _cuda_devices()
    if not devices:
        return CudaStatus(False, why_not)
    options = ort.SessionOptions()
    options.log_severity_level = _ORT_SILENT
    if quiet:
        # The provider library is loaded under the process-wide logger, not the session's.
        ort.set_default_logger_severity(_ORT_SILENT)
    try:
        session = ort.InferenceSession(_probe_model(), options, providers=[CUDA, CPU])
        kept = CUDA in session.get_providers()
    except Exception:
        kept = False
    finally:
        ort.set_default_logger_severity(_ORT_ERRORS_ONLY)
    if not kept:
        needs = f"CUDA {ort.cuda_version} and cuDNN 9" if ort.cuda_version else "CUDA and cuDNN"
        return CudaStatus(
            False,
            f"{devices} CUDA device(s) but ONNX Runtime's CUDA provider did not start: "
            f"onnxruntime-gpu {ort.__version__} needs the {needs} libraries",
        )
    return CudaStatus(True, f"{devices} CUDA device(s) and ONNX Runtime's CUDA provider works")


def cuda_available() -> bool:
    """Whether ONNX Runtime can run a session on CUDA here (see :func:`cuda_status`)."""
    return cuda_status().available


def provider_reason(device: Device, provider: str) -> str:
    """Why a variant loaded with ``BANDITLAKE_DEVICE=device`` runs on ``provider``."""
    if device == "cpu":
        return "BANDITLAKE_DEVICE=cpu"
    if provider == CUDA:
        return f"BANDITLAKE_DEVICE={device}; {cuda_status().reason}"
    status = cuda_status()
    if status.available:
        return "ONNX Runtime kept only the CPU provider for this model"
    return status.reason


def _providers(device: Device) -> list[str]:
    if device == "cpu":
        return [CPU]
    if device == "cuda":
        status = cuda_status(quiet=False)
        if not status.available:
            msg = (
                "BANDITLAKE_DEVICE=cuda but ONNX Runtime cannot run on CUDA here "
                f"({status.reason}); fix the CUDA installation or set BANDITLAKE_DEVICE=auto."
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
    _quiet_onnxruntime()
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
