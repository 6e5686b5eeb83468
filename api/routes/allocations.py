"""``/v1/experiments/{name}/allocation(s)``: current weights, manual changes, history."""

from __future__ import annotations

from fastapi import APIRouter, Query, Request

from api.control import allocation_versions, experiments
from api.deps import AdminDep, SessionDep
from api.errors import ConflictError, NotFoundError
from api.readout.report import Report, build_report
from api.reallocation.loop import Reallocator
from api.routes import _examples as ex
from api.routes._responses import ADMIN_ERRORS, body_example, error_responses, ok
from api.schemas import AllocationOut, AllocationPut, PromoteBody
from api.store.models import AllocationRow

router = APIRouter(
    prefix="/v1/experiments/{name}",
    tags=["allocation"],
    responses=ADMIN_ERRORS | error_responses(404, 422),
)


def _out(row: AllocationRow) -> AllocationOut:
    return AllocationOut(
        version=row.version,
        weights=row.weights,
        created_at=row.created_at,
        reason=row.reason,
        author=row.author,
        stats=row.stats,
    )


@router.get("/allocation", summary="Get the current allocation", responses=ok(ex.ALLOCATION))
def get_allocation(name: str, session: SessionDep, _: AdminDep) -> AllocationOut:
    """The allocation in force: its version, the weight of each arm, when and why it was
    made, by whom, and the statistics the policy used. An experiment that never ran has
    none (404 `no_allocation`)."""
    experiment = experiments.get_experiment(session, name)
    row = allocation_versions.current_allocation(session, experiment)
    if row is None:
        msg = f"Experiment {name!r} has no allocation yet; it gets one when it starts running."
        raise NotFoundError(msg, code="no_allocation")
    return _out(row)


@router.put(
    "/allocation",
    summary="Set the weights by hand",
    responses=ok(ex.ALLOCATION) | error_responses(400, 409, 413),
    openapi_extra=body_example(ex.PUT_ALLOCATION),
)
def put_allocation(
    name: str, body: AllocationPut, session: SessionDep, actor: AdminDep
) -> AllocationOut:
    """Write a new allocation version with these weights: one per active arm, each ≥ 0,
    summing to 1. The policy takes over again at the next reallocation."""
    experiment = experiments.get_experiment(session, name)
    if experiment.status == "stopped":
        msg = f"Experiment {name!r} is stopped; its allocation can no longer change."
        raise ConflictError(msg, code="experiment_stopped")
    weights = allocation_versions.validate_weights(
        body.weights, allocation_versions.active_arms(experiment)
    )
    row = allocation_versions.record_allocation(
        session, experiment, weights, reason=body.reason or "manual allocation", author=actor
    )
    session.commit()
    return _out(row)


@router.get(
    "/allocations", summary="Allocation history", responses=ok([ex.REALLOCATED, ex.ALLOCATION])
)
def allocation_history(
    name: str,
    session: SessionDep,
    _: AdminDep,
    limit: int = Query(default=1000, ge=1, le=10_000),
) -> list[AllocationOut]:
    """Every allocation version, newest first (at most `limit`), with its reason, author
    and the statistics the policy used."""
    experiment = experiments.get_experiment(session, name)
    return [_out(row) for row in allocation_versions.history(session, experiment, limit=limit)]


@router.post(
    "/promote",
    summary="Send all traffic to one variant",
    responses=ok(ex.PROMOTED) | error_responses(400, 409, 413),
    openapi_extra=body_example(ex.PROMOTE),
)
def promote(name: str, body: PromoteBody, session: SessionDep, actor: AdminDep) -> AllocationOut:
    """Write a new allocation version that gives the variant, an active arm, all the
    traffic. Roll back to undo it."""
    experiment = experiments.get_experiment(session, name)
    arms = allocation_versions.active_arms(experiment)
    if body.variant not in arms:
        msg = f"Variant {body.variant!r} is not an active arm of {name!r} (active arms: {arms})."
        raise ConflictError(msg, code="not_an_active_arm")
    if experiment.status == "stopped":
        msg = f"Experiment {name!r} is stopped; its allocation can no longer change."
        raise ConflictError(msg, code="experiment_stopped")
    weights = {arm: 1.0 if arm == body.variant else 0.0 for arm in arms}
    row = allocation_versions.record_allocation(
        session, experiment, weights, reason=f"promote {body.variant!r}", author=actor
    )
    session.commit()
    return _out(row)


@router.post(
    "/rollback",
    summary="Return to the previous allocation",
    responses=ok(ex.ROLLED_BACK) | error_responses(409),
)
def rollback(name: str, session: SessionDep, actor: AdminDep) -> AllocationOut:
    """Write a new allocation version with the weights of the one before the current
    version. Refused (409) when there is no earlier version or it gives traffic to an arm
    that is no longer active."""
    experiment = experiments.get_experiment(session, name)
    if experiment.status == "stopped":
        msg = f"Experiment {name!r} is stopped; its allocation can no longer change."
        raise ConflictError(msg, code="experiment_stopped")
    current = allocation_versions.current_allocation(session, experiment)
    if current is None or current.version == 1:
        msg = f"Experiment {name!r} has no earlier allocation version to roll back to."
        raise ConflictError(msg, code="nothing_to_roll_back")
    previous = allocation_versions.get_version(session, experiment, current.version - 1)
    arms = allocation_versions.active_arms(experiment)
    gone = sorted(k for k, w in previous.weights.items() if w > 0 and k not in arms)
    if gone:
        msg = (
            f"Version {previous.version} gives traffic to {gone}, which "
            f"{'is' if len(gone) == 1 else 'are'} no longer active; set the allocation by hand."
        )
        raise ConflictError(msg, code="rollback_inactive_arm")
    weights = allocation_versions.rebalance(previous.weights, arms)
    row = allocation_versions.record_allocation(
        session,
        experiment,
        weights,
        reason=f"rollback to version {previous.version}",
        author=actor,
    )
    session.commit()
    return _out(row)


@router.post(
    "/reallocate",
    summary="Run the policy now",
    responses=ok(ex.REALLOCATED) | error_responses(409),
)
def reallocate(name: str, request: Request, session: SessionDep, actor: AdminDep) -> AllocationOut:
    """Fold the lake files added since the last run into the arms' statistics, apply the
    guardrails, run the experiment's policy and write the next allocation version with
    its reason and statistics, without waiting for the experiment's
    `reallocate_every_s` interval (the background loop does the same on that schedule)."""
    experiment = experiments.get_experiment(session, name)
    reallocator: Reallocator = request.app.state.reallocator
    row = reallocator.reallocate(session, experiment, author=actor)
    session.commit()
    return _out(row)


@router.get("/report", summary="Experiment report", responses=ok(ex.REPORT))
def report(name: str, request: Request, session: SessionDep, _: AdminDep) -> Report:
    """Per variant: requests, rewarded requests, reward mean with its interval, the
    inverse-propensity-weighted mean, P(best), expected loss, the test against the control
    (the first arm), latency p50/p99 and error rate; the sample-ratio test; and a verdict
    in one sentence."""
    experiment = experiments.get_experiment(session, name)
    return build_report(session, experiment, request.app.state.lake_stats)
