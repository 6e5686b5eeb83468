"""``/v1/experiments/{name}/variants``: ONNX uploads, listing, enable and disable."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Annotated, Final

from fastapi import APIRouter, File, Form, Request, UploadFile, status

from api.control import experiments, variants
from api.control.model_contract import MODEL_CONTRACT
from api.control.model_spec import inspect_model
from api.deps import AdminDep, PoolDep, SessionDep, SettingsDep
from api.errors import InvalidRequestError, PayloadTooLargeError
from api.routes import _examples as ex
from api.routes._responses import ADMIN_ERRORS, body_example, error_responses, ok
from api.schemas import VariantOut, VariantPatch
from api.serving.model_store import ModelStore

router = APIRouter(
    prefix="/v1/experiments/{name}/variants",
    tags=["variants"],
    responses=ADMIN_ERRORS | error_responses(404, 422),
)

_CHUNK = 1 << 20

UPLOAD_DESCRIPTION: Final = (
    "Upload an ONNX model as a new arm (it gets traffic by the allocation) or shadow (it "
    "sees a copy of every request, its answers are logged but never returned). The "
    "answer names the input shape and the execution provider actually in use. Adding an "
    "arm to a running experiment creates a new allocation version that keeps the other "
    "arms' relative weights.\n\n## Model contract\n\n" + MODEL_CONTRACT
)
_UPLOAD_ERRORS: Final = {
    422: {
        "invalid_model_output": {
            "error": {
                "code": "invalid_model_output",
                "message": (
                    "The model's output 'output_probability' is a sequence, not a tensor "
                    "(scikit-learn classifiers exported by skl2onnx wrap probabilities in a "
                    "ZipMap); export with zipmap=False (options={id(model): {'zipmap': "
                    "False}}) or choose a tensor output with the output field: "
                    "['output_label']."
                ),
                "details": None,
            }
        },
        "feature_count_mismatch": {
            "error": {
                "code": "feature_count_mismatch",
                "message": (
                    "The feature list names 2 features but the model's input takes 3; give "
                    "exactly one name per input column."
                ),
                "details": None,
            }
        },
    }
}


def _model_store(request: Request) -> ModelStore:
    store: ModelStore = request.app.state.model_store
    return store


def _spool(upload: UploadFile, limit: int, directory: Path) -> tuple[Path, str]:
    """Copy the upload to a temporary file next to the models (or their cache), hashing
    as it goes, so storing it is a rename on the same file system.

    The file never sits whole in memory before its size is known: the copy stops at the
    first chunk over the limit.
    """
    directory.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    size = 0
    fd, name = tempfile.mkstemp(dir=directory, prefix=".upload-", suffix=".onnx")
    path = Path(name)
    try:
        with os.fdopen(fd, "wb") as fh:
            while chunk := upload.file.read(_CHUNK):
                size += len(chunk)
                if size > limit:
                    msg = f"The model file is larger than the {limit}-byte upload limit."
                    raise PayloadTooLargeError(msg, details={"limit_bytes": limit})
                digest.update(chunk)
                fh.write(chunk)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return path, digest.hexdigest()


def _parse_features(raw: str | None) -> list[str] | None:
    if raw is None or raw.strip() == "":
        return None
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        msg = f"features must be a JSON list of names; {raw[:80]!r} is not valid JSON."
        raise InvalidRequestError(msg, code="invalid_features") from exc
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        msg = f"features must be a JSON list of strings; got {raw[:80]!r}."
        raise InvalidRequestError(msg, code="invalid_features")
    return value


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    summary="Upload a model as a variant",
    description=UPLOAD_DESCRIPTION,
    responses=ok(ex.VARIANT, status=201)
    | error_responses(400, 409, 413, 422, examples=_UPLOAD_ERRORS),
    openapi_extra=body_example(ex.UPLOAD_VARIANT, media_type="multipart/form-data"),
)
def upload_variant(
    request: Request,
    name: str,
    session: SessionDep,
    pool: PoolDep,
    settings: SettingsDep,
    actor: AdminDep,
    variant_name: Annotated[
        str, Form(alias="name", description="The variant's name, unique in the experiment.")
    ],
    model: Annotated[UploadFile, File(description="The ONNX file (see the model contract).")],
    role: Annotated[
        str, Form(description="`arm` (gets traffic) or `shadow` (sees copies only).")
    ] = "arm",
    features: Annotated[
        str | None,
        Form(description="JSON list of the input's feature names, in column order."),
    ] = None,
    output: Annotated[
        str | None, Form(description="The output to read; default: the model's first output.")
    ] = None,
) -> VariantOut:
    experiment = experiments.get_experiment(session, name)
    variants.check_name(variant_name)
    if role not in ("arm", "shadow"):
        msg = f"role must be 'arm' or 'shadow'; got {role!r}."
        raise InvalidRequestError(msg, code="invalid_role")
    store = _model_store(request)
    spooled, sha256 = _spool(model, settings.max_upload_bytes, store.directory)
    try:
        spec = inspect_model(
            spooled.read_bytes(), features=_parse_features(features), output=output or None
        )
        path = store.put(spooled, sha256)
    finally:
        spooled.unlink(missing_ok=True)
    variant = variants.add_variant(
        session, pool, experiment, name=variant_name, role=role, spec=spec, path=path, actor=actor
    )
    session.commit()
    return variants.to_out(pool, experiment, variant)


@router.get("", summary="List an experiment's variants", responses=ok([ex.VARIANT]))
def list_variants(name: str, session: SessionDep, pool: PoolDep, _: AdminDep) -> list[VariantOut]:
    """Every variant of the experiment, arms and shadows, with its status, model checksum,
    features, output and execution provider; a failed model says why in `status_reason`."""
    experiment = experiments.get_experiment(session, name)
    return [variants.to_out(pool, experiment, v) for v in experiment.variants]


@router.get("/{variant}", summary="Get one variant", responses=ok(ex.VARIANT))
def get_variant(
    name: str, variant: str, session: SessionDep, pool: PoolDep, _: AdminDep
) -> VariantOut:
    """One variant: its role, status, model checksum, input shape, features, output and
    the execution provider its model runs on."""
    experiment = experiments.get_experiment(session, name)
    return variants.to_out(pool, experiment, variants.get_variant(experiment, variant))


@router.patch(
    "/{variant}",
    summary="Enable or disable a variant",
    responses=ok(ex.VARIANT_DISABLED) | error_responses(400, 409, 413),
    openapi_extra=body_example(ex.PATCH_VARIANT),
)
def patch_variant(
    request: Request,
    name: str,
    variant: str,
    body: VariantPatch,
    session: SessionDep,
    pool: PoolDep,
    actor: AdminDep,
) -> VariantOut:
    """Send `{"enabled": false}` (or `{"status": "disabled"}`) to take a variant out of
    traffic, `true` / `"active"` to bring it back. Disabling an arm creates a new
    allocation version that keeps the other arms' relative weights."""
    experiment = experiments.get_experiment(session, name)
    row = variants.get_variant(experiment, variant)
    variants.set_active(
        session,
        pool,
        experiment,
        row,
        active=body.active,
        actor=actor,
        store=_model_store(request),
    )
    session.commit()
    return variants.to_out(pool, experiment, row)
