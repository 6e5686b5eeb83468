"""``/v1/experiments``: create, list, get and patch experiments."""

from __future__ import annotations

from fastapi import APIRouter, status

from api import experiments
from api.deps import AdminDep, SessionDep
from api.schemas import ExperimentCreate, ExperimentOut, ExperimentPatch

router = APIRouter(prefix="/v1/experiments", tags=["experiments"])


@router.post("", status_code=status.HTTP_201_CREATED)
def create_experiment(
    body: ExperimentCreate, session: SessionDep, actor: AdminDep
) -> ExperimentOut:
    experiment = experiments.create_experiment(session, body, actor=actor)
    session.commit()
    return experiments.to_out(session, experiment)


@router.get("")
def list_experiments(session: SessionDep, _: AdminDep) -> list[ExperimentOut]:
    return [experiments.to_out(session, e) for e in experiments.list_experiments(session)]


@router.get("/{name}")
def get_experiment(name: str, session: SessionDep, _: AdminDep) -> ExperimentOut:
    return experiments.to_out(session, experiments.get_experiment(session, name))


@router.patch("/{name}")
def patch_experiment(
    name: str, body: ExperimentPatch, session: SessionDep, actor: AdminDep
) -> ExperimentOut:
    experiment = experiments.get_experiment(session, name)
    experiments.patch_experiment(session, experiment, body, actor=actor)
    session.commit()
    return experiments.to_out(session, experiment)
