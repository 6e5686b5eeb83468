"""``/v1/alert-targets``, ``/v1/experiments/{name}/alert-rules`` and ``/v1/alerts``."""

from __future__ import annotations

from typing import Annotated, Any, Final

from fastapi import APIRouter, Path, Query, status

from api.alerts import control
from api.alerts.schemas import (
    AlertRuleCreate,
    AlertRuleOut,
    AlertRulePatch,
    AlertsOut,
    AlertTargetCreate,
    AlertTargetOut,
)
from api.control import experiments
from api.deps import AdminDep, SessionDep
from api.routes._responses import ADMIN_ERRORS, body_example, error_responses, ok

router = APIRouter(tags=["alerts"], responses=ADMIN_ERRORS)

RuleId = Annotated[int, Path(ge=1, le=2**31 - 1, description="The rule's id.")]
TargetName = Annotated[str, Path(max_length=64, description="The target's name.")]

_CREATED: Final = "2026-12-03T10:15:02.114Z"
SLACK_TARGET: Final[dict[str, Any]] = {
    "name": "ml-oncall-slack",
    "kind": "slack",
    "url": "https://hooks.slack.com/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX",
}
PAGERDUTY_TARGET: Final[dict[str, Any]] = {
    "name": "ml-pager",
    "kind": "pagerduty",
    "routing_key": "R0123456789abcdef0123456789abcde",
}
RETRAIN_TARGET: Final[dict[str, Any]] = {
    "name": "retrain-churn",
    "kind": "webhook",
    "url": "https://ci.example.com/hooks/retrain?token=s3cr3t",
}
TARGET_OUT: Final[dict[str, Any]] = {
    "name": "ml-oncall-slack",
    "kind": "slack",
    "url": "https://hooks.slack.com/services/…",
    "routing_key_set": False,
    "created_at": _CREATED,
}
RULE: Final[dict[str, Any]] = {
    "kind": "error_rate",
    "threshold": 0.05,
    "window_s": 900,
    "min_requests": 200,
    "targets": ["ml-oncall-slack", "ml-pager"],
}
RULE_OUT: Final[dict[str, Any]] = {
    "id": 3,
    "experiment": "churn",
    "kind": "error_rate",
    "threshold": 0.05,
    "window_s": 900,
    "min_requests": 200,
    "severity": "error",
    "targets": ["ml-oncall-slack", "ml-pager"],
    "enabled": True,
    "created_at": _CREATED,
    "updated_at": _CREATED,
}
RULE_PATCH: Final[dict[str, Any]] = {"threshold": 0.02, "enabled": True}
ALERT: Final[dict[str, Any]] = {
    "id": 12,
    "rule_id": 3,
    "experiment": "churn",
    "kind": "error_rate",
    "subject": "gbm",
    "state": "open",
    "value": 0.31,
    "threshold": 0.05,
    "summary": "churn: error rate of 'gbm' is 0.31, above the threshold 0.05 (124 of 400 "
    "requests failed in the last 900 s).",
    "opened_at": _CREATED,
    "resolved_at": None,
    "deliveries": {"pending": 0, "sent": 2, "failed": 0},
}
_BAD_URL: Final = {
    422: {
        "invalid_url": {
            "error": {
                "code": "invalid_url",
                "message": "url (ftp://hooks.example.com/…) has 'ftp'; an alert target needs "
                "an http or https URL.",
                "details": None,
            }
        }
    }
}
_TARGET_BODIES: Final = {
    "requestBody": {
        "content": {
            "application/json": {
                "examples": {
                    "slack": {"summary": "Slack incoming webhook", "value": SLACK_TARGET},
                    "pagerduty": {"summary": "PagerDuty Events API v2", "value": PAGERDUTY_TARGET},
                    "webhook": {
                        "summary": "a retraining pipeline's webhook",
                        "value": RETRAIN_TARGET,
                    },
                }
            }
        }
    }
}


@router.post(
    "/v1/alert-targets",
    status_code=status.HTTP_201_CREATED,
    summary="Create an alert target",
    responses=ok(TARGET_OUT, status=201) | error_responses(400, 409, 413, 422, examples=_BAD_URL),
    openapi_extra=_TARGET_BODIES,
)
def create_target(body: AlertTargetCreate, session: SessionDep, actor: AdminDep) -> AlertTargetOut:
    """A place alerts are sent: `slack` (an incoming-webhook `url`), `pagerduty` (a
    32-character `routing_key`; `url` defaults to the Events API v2 endpoint) or `webhook`
    (a JSON POST to `url`). URLs must be http(s) with a host. The URL and the key are
    secrets: answers show the URL redacted and never the key."""
    target = control.create_target(session, body, actor=actor)
    session.commit()
    return control.target_out(target)


@router.get("/v1/alert-targets", summary="List alert targets", responses=ok([TARGET_OUT]))
def list_targets(session: SessionDep, _: AdminDep) -> list[AlertTargetOut]:
    """Every alert target, its URL redacted."""
    return [control.target_out(t) for t in control.list_targets(session)]


@router.delete(
    "/v1/alert-targets/{target}",
    summary="Delete an alert target",
    responses=ok(TARGET_OUT) | error_responses(404, 409, 422),
)
def delete_target(target: TargetName, session: SessionDep, actor: AdminDep) -> AlertTargetOut:
    """Delete a target no rule names (409 `target_in_use` otherwise); answers the target
    as it was, redacted."""
    out = control.target_out(control.get_target(session, target))
    control.delete_target(session, target, actor=actor)
    session.commit()
    return out


@router.post(
    "/v1/experiments/{name}/alert-rules",
    status_code=status.HTTP_201_CREATED,
    summary="Create an alert rule",
    responses=ok(RULE_OUT, status=201) | error_responses(400, 404, 409, 413, 422),
    openapi_extra=body_example(RULE),
)
def create_rule(
    name: str, body: AlertRuleCreate, session: SessionDep, actor: AdminDep
) -> AlertRuleOut:
    """A condition on the experiment, evaluated by the reallocation lease holder after
    each pass: `guardrail_tripped`, `error_rate` or `p99_latency_ms` over `window_s`,
    `srm`, `feature_drift` or `prediction_drift` (PSI), `rows_dropped`,
    `reallocation_stalled`. Each subject (variant, feature) gets one open alert at a time,
    sent to the rule's `targets` when it opens and again when it resolves."""
    experiment = experiments.get_experiment(session, name)
    rule = control.create_rule(session, experiment, body, actor=actor)
    session.commit()
    return control.rule_out(rule, experiment.name)


@router.get(
    "/v1/experiments/{name}/alert-rules",
    summary="List an experiment's alert rules",
    responses=ok([RULE_OUT]) | error_responses(404, 422),
)
def list_rules(name: str, session: SessionDep, _: AdminDep) -> list[AlertRuleOut]:
    """The experiment's alert rules, oldest first."""
    experiment = experiments.get_experiment(session, name)
    return [control.rule_out(r, experiment.name) for r in control.list_rules(session, experiment)]


@router.get(
    "/v1/experiments/{name}/alert-rules/{rule_id}",
    summary="Get one alert rule",
    responses=ok(RULE_OUT) | error_responses(404, 422),
)
def get_rule(name: str, rule_id: RuleId, session: SessionDep, _: AdminDep) -> AlertRuleOut:
    """One alert rule of the experiment."""
    experiment = experiments.get_experiment(session, name)
    return control.rule_out(control.get_rule(session, experiment, rule_id), experiment.name)


@router.patch(
    "/v1/experiments/{name}/alert-rules/{rule_id}",
    summary="Change an alert rule",
    responses=ok(RULE_OUT) | error_responses(400, 404, 413, 422),
    openapi_extra=body_example(RULE_PATCH),
)
def patch_rule(
    name: str, rule_id: RuleId, body: AlertRulePatch, session: SessionDep, actor: AdminDep
) -> AlertRuleOut:
    """Change the threshold, window, minimum requests, severity, targets or `enabled`.
    Open alerts stay open until the next evaluation judges them against the new rule."""
    experiment = experiments.get_experiment(session, name)
    rule = control.get_rule(session, experiment, rule_id)
    control.patch_rule(session, experiment, rule, body, actor=actor)
    session.commit()
    return control.rule_out(rule, experiment.name)


@router.delete(
    "/v1/experiments/{name}/alert-rules/{rule_id}",
    summary="Delete an alert rule",
    responses=ok(RULE_OUT) | error_responses(404, 422),
)
def delete_rule(name: str, rule_id: RuleId, session: SessionDep, actor: AdminDep) -> AlertRuleOut:
    """Delete the rule, its alerts and their unsent messages (no resolve is sent);
    answers the rule as it was."""
    experiment = experiments.get_experiment(session, name)
    rule = control.get_rule(session, experiment, rule_id)
    out = control.rule_out(rule, experiment.name)
    control.delete_rule(session, experiment, rule, actor=actor)
    session.commit()
    return out


@router.get(
    "/v1/alerts",
    summary="Open and recent alerts",
    responses=ok({"open": [ALERT], "recent": []}) | error_responses(404, 422),
)
def list_alerts(
    session: SessionDep,
    _: AdminDep,
    experiment: Annotated[
        str | None, Query(max_length=64, description="Only this experiment's alerts.")
    ] = None,
    recent: Annotated[int, Query(ge=0, le=1000, description="Resolved alerts shown.")] = 50,
) -> AlertsOut:
    """Every open alert and the latest `recent` resolved ones, newest first, with how
    many of each alert's messages are pending, sent or failed."""
    found = experiments.get_experiment(session, experiment) if experiment is not None else None
    return control.list_alerts(session, experiment=found, recent=recent)
