"""``/v1/experiments/{name}/variants``: ONNX uploads, listing, enable and disable."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, File, Form, UploadFile, status

from api import experiments, variants
from api.deps import AdminDep, PoolDep, SessionDep, SettingsDep
from api.errors import InvalidRequestError, PayloadTooLargeError
from api.onnx_spec import inspect_model
from api.routes._responses import ADMIN_ERRORS, error_responses
from api.schemas import VariantOut, VariantPatch

router = APIRouter(
    prefix="/v1/experiments/{name}/variants",
    tags=["variants"],
    responses=ADMIN_ERRORS | error_responses(404, 422),
)

_CHUNK = 1 << 20


def _spool(upload: UploadFile, limit: int, directory: Path) -> tuple[Path, str]:
    """Copy the upload to a temporary file next to the models, hashing as it goes.

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


@router.post("", status_code=status.HTTP_201_CREATED, responses=error_responses(400, 409, 413))
def upload_variant(
    name: str,
    session: SessionDep,
    pool: PoolDep,
    settings: SettingsDep,
    actor: AdminDep,
    variant_name: Annotated[str, Form(alias="name")],
    model: Annotated[UploadFile, File()],
    role: Annotated[str, Form()] = "arm",
    features: Annotated[str | None, Form()] = None,
    output: Annotated[str | None, Form()] = None,
) -> VariantOut:
    experiment = experiments.get_experiment(session, name)
    variants.check_name(variant_name)
    if role not in ("arm", "shadow"):
        msg = f"role must be 'arm' or 'shadow'; got {role!r}."
        raise InvalidRequestError(msg, code="invalid_role")
    spooled, sha256 = _spool(model, settings.max_upload_bytes, settings.models_dir)
    try:
        spec = inspect_model(
            spooled.read_bytes(), features=_parse_features(features), output=output or None
        )
        path = variants.store_model(settings.models_dir, spooled, sha256)
    finally:
        spooled.unlink(missing_ok=True)
    variant = variants.add_variant(
        session, pool, experiment, name=variant_name, role=role, spec=spec, path=path, actor=actor
    )
    session.commit()
    return variants.to_out(pool, experiment, variant)


@router.get("")
def list_variants(name: str, session: SessionDep, pool: PoolDep, _: AdminDep) -> list[VariantOut]:
    experiment = experiments.get_experiment(session, name)
    return [variants.to_out(pool, experiment, v) for v in experiment.variants]


@router.get("/{variant}")
def get_variant(
    name: str, variant: str, session: SessionDep, pool: PoolDep, _: AdminDep
) -> VariantOut:
    experiment = experiments.get_experiment(session, name)
    return variants.to_out(pool, experiment, variants.get_variant(experiment, variant))


@router.patch("/{variant}", responses=error_responses(400, 409, 413))
def patch_variant(
    name: str,
    variant: str,
    body: VariantPatch,
    session: SessionDep,
    pool: PoolDep,
    settings: SettingsDep,
    actor: AdminDep,
) -> VariantOut:
    experiment = experiments.get_experiment(session, name)
    row = variants.get_variant(experiment, variant)
    variants.set_active(
        session,
        pool,
        experiment,
        row,
        active=body.active,
        actor=actor,
        models_dir=settings.models_dir,
    )
    session.commit()
    return variants.to_out(pool, experiment, row)
