"""Validation of uploaded ONNX models: what the service needs to know to call one."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from api.errors import InvalidRequestError

__all__ = ["ModelSpec", "inspect_model"]

# onnx.TensorProto.FLOAT and DOUBLE (onnx is imported on the first upload: two seconds
# that a server which only serves never pays).
_FLOAT_TYPES = {1: "float32", 11: "float64"}


@dataclass(frozen=True, slots=True)
class ModelSpec:
    sha256: str
    input_name: str
    input_dim: int
    input_dtype: str
    output_name: str
    feature_names: tuple[str, ...]


def _feature_names(features: list[str] | None, dim: int) -> tuple[str, ...]:
    if features is None:
        return tuple(f"f{i}" for i in range(dim))
    if len(features) != dim:
        msg = (
            f"The feature list names {len(features)} features but the model's input takes "
            f"{dim}; give exactly one name per input column."
        )
        raise InvalidRequestError(msg, code="feature_count_mismatch")
    if len(set(features)) != len(features):
        dupes = sorted({f for f in features if features.count(f) > 1})
        msg = f"The feature list repeats {', '.join(map(repr, dupes))}; names must be unique."
        raise InvalidRequestError(msg, code="invalid_features")
    for name in features:
        if not name or len(name) > 128:
            msg = f"Feature name {name!r} must be 1 to 128 characters long."
            raise InvalidRequestError(msg, code="invalid_features")
    return tuple(features)


def inspect_model(data: bytes, *, features: list[str] | None, output: str | None) -> ModelSpec:
    """Check that ``data`` is an ONNX model with one float input of shape ``[N, d]``.

    Raises :class:`InvalidRequestError` naming what is wrong: not ONNX, no or several
    inputs, a non-float input, a shape other than ``[N, d]``, a feature list whose
    length differs from ``d``, or an unknown output name.
    """
    import onnx
    from onnx import TensorProto

    try:
        model = onnx.load_from_string(data)
        onnx.checker.check_model(model)
    except Exception as exc:
        msg = f"The uploaded file is not a valid ONNX model ({type(exc).__name__}: {exc})."
        raise InvalidRequestError(msg[:600], code="invalid_model") from exc

    initializers = {init.name for init in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in initializers]
    if len(inputs) != 1:
        names = [i.name for i in inputs]
        msg = (
            f"The model must have exactly one input of shape [N, d]; it has {len(inputs)}: {names}."
        )
        raise InvalidRequestError(msg, code="invalid_model_input")
    tensor = inputs[0].type.tensor_type
    if not inputs[0].type.HasField("tensor_type") or tensor.elem_type not in _FLOAT_TYPES:
        kind = TensorProto.DataType.Name(tensor.elem_type) if tensor.elem_type else "non-tensor"
        msg = f"The model's input {inputs[0].name!r} is {kind}; it must be a float tensor [N, d]."
        raise InvalidRequestError(msg, code="invalid_model_input")
    dims = list(tensor.shape.dim) if tensor.HasField("shape") else []
    if len(dims) != 2 or not dims[1].HasField("dim_value") or dims[1].dim_value <= 0:
        shape = [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in dims]
        msg = (
            f"The model's input {inputs[0].name!r} has shape {shape}; it must be [N, d] with a "
            "fixed number of features d."
        )
        raise InvalidRequestError(msg, code="invalid_model_input")
    if dims[0].HasField("dim_value") and dims[0].dim_value != 0:
        msg = (
            f"The model's input {inputs[0].name!r} has a fixed batch size {dims[0].dim_value}; "
            "export it with a dynamic first dimension N so requests can be batched."
        )
        raise InvalidRequestError(msg, code="invalid_model_input")
    dim = int(dims[1].dim_value)

    outputs = [o.name for o in model.graph.output]
    if not outputs:
        raise InvalidRequestError("The model has no outputs.", code="invalid_model_output")
    if output is not None and output not in outputs:
        msg = f"The model has no output named {output!r}; its outputs are {outputs}."
        raise InvalidRequestError(msg, code="invalid_model_output")
    chosen = next(o for o in model.graph.output if o.name == (output or outputs[0]))
    if not chosen.type.HasField("tensor_type"):
        kind = chosen.type.WhichOneof("value") or "untyped value"
        tensors = [o.name for o in model.graph.output if o.type.HasField("tensor_type")]
        msg = (
            f"The model's output {chosen.name!r} is a {kind.removesuffix('_type')}, not a "
            "tensor (scikit-learn classifiers exported by skl2onnx wrap probabilities in a "
            "ZipMap); export with zipmap=False (options={id(model): {'zipmap': False}}) or "
            f"choose a tensor output with the output field: {tensors}."
        )
        raise InvalidRequestError(msg, code="invalid_model_output")

    return ModelSpec(
        sha256=hashlib.sha256(data).hexdigest(),
        input_name=inputs[0].name,
        input_dim=dim,
        input_dtype=_FLOAT_TYPES[tensor.elem_type],
        output_name=output or outputs[0],
        feature_names=_feature_names(features, dim),
    )
