"""``/v1/experiments``: create, list, get and patch experiments."""

from __future__ import annotations

from fastapi import APIRouter, status

from api import experiments
from api.deps import AdminDep, SessionDep
from api.routes._responses import ADMIN_ERRORS, error_responses
from api.schemas import ExperimentCreate, ExperimentOut, ExperimentPatch

router = APIRouter(prefix="/v1/experiments", tags=["experiments"], responses=ADMIN_ERRORS)


@router.post("", status_code=status.HTTP_201_CREATED, responses=error_responses(400, 409, 413, 422))
def create_experiment(
    body: ExperimentCreate, session: SessionDep, actor: AdminDep
) -> ExperimentOut:
    experiment = experiments.create_experiment(session, body, actor=actor)
    session.commit()
    return experiments.to_out(session, experiment)


@router.get("")
def list_experiments(session: SessionDep, _: AdminDep) -> list[ExperimentOut]:
    return [experiments.to_out(session, e) for e in experiments.list_experiments(session)]


@router.get("/{name}", responses=error_responses(404, 422))
def get_experiment(name: str, session: SessionDep, _: AdminDep) -> ExperimentOut:
    return experiments.to_out(session, experiments.get_experiment(session, name))


@router.patch("/{name}", responses=error_responses(400, 404, 409, 413, 422))
def patch_experiment(
    name: str, body: ExperimentPatch, session: SessionDep, actor: AdminDep
) -> ExperimentOut:
    experiment = experiments.get_experiment(session, name)
    experiments.patch_experiment(session, experiment, body, actor=actor)
    session.commit()
    return experiments.to_out(session, experiment)
