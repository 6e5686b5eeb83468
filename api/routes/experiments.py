"""``/v1/experiments``: create, list, get and patch experiments."""

from __future__ import annotations

from fastapi import APIRouter, status

from api.control import experiments
from api.deps import AdminDep, SessionDep, SettingsDep
from api.routes import _examples as ex
from api.routes._responses import ADMIN_ERRORS, body_example, error_responses, example, ok
from api.schemas import ExperimentCreate, ExperimentOut, ExperimentPatch

router = APIRouter(prefix="/v1/experiments", tags=["experiments"], responses=ADMIN_ERRORS)

_REDACTION_422 = {422: ex.REDACTION_ERRORS}
_PATCH_BODY = {
    "requestBody": {
        "content": {
            "application/json": {
                "examples": {
                    "start": {"summary": "start running", "value": example(ex.PATCH_EXPERIMENT)},
                    "data_settings": {
                        "summary": "keep 30 days; drop spend, hash age in the lake",
                        "value": example(ex.PATCH_DATA_SETTINGS),
                    },
                }
            }
        }
    }
}


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    summary="Create an experiment",
    responses=ok(ex.EXPERIMENT_CREATED, status=201)
    | error_responses(400, 409, 413, 422, examples=_REDACTION_422),
    openapi_extra=body_example(ex.CREATE_EXPERIMENT),
)
def create_experiment(
    body: ExperimentCreate, session: SessionDep, actor: AdminDep, settings: SettingsDep
) -> ExperimentOut:
    """Create an experiment in status `draft`: its reward (`binary`, `continuous`, or
    `label` with a metric), its policy (`thompson`, `epsilon_greedy`, `ucb1`, `fixed`,
    `canary` and their parameters), the traffic floor `min_weight` every arm keeps, how
    often it reallocates, its guardrails, its stopping rule, how many days the lake keeps
    its rows (`retention_days`), which features the lake drops or stores as a keyed
    hash (`redaction`; `hash` needs `BANDITLAKE_REDACTION_SECRET`) and whether rows
    scored by `banditlake score` count in its statistics (`learn_from_batch`, default
    false). Upload variants next,
    then set its status to `running` (which checks the redacted names against the
    variants' features)."""
    experiment = experiments.create_experiment(
        session, body, actor=actor, redaction_secret_set=settings.redaction_secret is not None
    )
    session.commit()
    return experiments.to_out(session, experiment)


@router.get("", summary="List experiments", responses=ok([ex.EXPERIMENT]))
def list_experiments(session: SessionDep, _: AdminDep) -> list[ExperimentOut]:
    """Every experiment with its configuration, variants and current allocation version."""
    return [experiments.to_out(session, e) for e in experiments.list_experiments(session)]


@router.get(
    "/{name}",
    summary="Get one experiment",
    responses=ok(ex.EXPERIMENT) | error_responses(404, 422),
)
def get_experiment(name: str, session: SessionDep, _: AdminDep) -> ExperimentOut:
    """One experiment: its status, reward, policy, floor, guardrails, stopping rule,
    variants and current allocation version."""
    return experiments.to_out(session, experiments.get_experiment(session, name))


@router.patch(
    "/{name}",
    summary="Change an experiment or its status",
    responses=ok(ex.EXPERIMENT) | error_responses(400, 404, 409, 413, 422, examples=_REDACTION_422),
    openapi_extra=_PATCH_BODY,
)
def patch_experiment(
    name: str, body: ExperimentPatch, session: SessionDep, actor: AdminDep, settings: SettingsDep
) -> ExperimentOut:
    """Change the description, policy, guardrails, stopping rule, floor, reallocation
    interval, whether batch-scored rows count (`learn_from_batch`), retention
    (`retention_days`, null: forever) or redaction (`redaction`: the features the lake
    drops or stores as a keyed hash, each a feature of the variants;
    `hash` needs `BANDITLAKE_REDACTION_SECRET`), or move the status along
    `draft → running ⇄ paused → stopped` (another transition is a 409). Retention and
    redaction changes are audited with the lists before and after. An experiment that
    starts running without an allocation gets equal weights over its active arms
    (version 1); a stopped one can no longer change, except its retention."""
    experiment = experiments.get_experiment(session, name)
    experiments.patch_experiment(
        session,
        experiment,
        body,
        actor=actor,
        redaction_secret_set=settings.redaction_secret is not None,
    )
    session.commit()
    return experiments.to_out(session, experiment)
