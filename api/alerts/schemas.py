"""Pydantic bodies of the alerting API: targets, rules and alerts.

Secret-bearing fields (``url``, ``routing_key``) are plain strings here and checked by
:mod:`api.alerts.urls`: a pydantic constraint would quote the value in its 422.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Final, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "RULE_KINDS",
    "AlertOut",
    "AlertRuleCreate",
    "AlertRuleOut",
    "AlertRulePatch",
    "AlertTargetCreate",
    "AlertTargetOut",
    "AlertsOut",
    "RuleKind",
    "Severity",
    "TargetKind",
]

TargetKind = Literal["slack", "pagerduty", "webhook"]
RuleKind = Literal[
    "guardrail_tripped",
    "error_rate",
    "p99_latency_ms",
    "srm",
    "feature_drift",
    "prediction_drift",
    "rows_dropped",
    "reallocation_stalled",
]
RULE_KINDS: Final = RuleKind.__args__  # type: ignore[attr-defined]
Severity = Literal["critical", "error", "warning", "info"]
TARGET_NAME_PATTERN: Final = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$"
MAX_TARGETS_PER_RULE: Final = 16

TargetName = Annotated[str, Field(pattern=TARGET_NAME_PATTERN)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AlertTargetCreate(_Strict):
    name: TargetName = Field(description="A name rules refer to the target by.")
    kind: TargetKind = Field(
        description="`slack` (incoming-webhook URL), `pagerduty` (Events API v2) or "
        "`webhook` (a JSON POST to any URL)."
    )
    url: str | None = Field(
        default=None,
        description="slack, webhook: the URL to POST to (a secret: shown redacted). "
        "pagerduty: the events endpoint, default https://events.pagerduty.com/v2/enqueue.",
    )
    routing_key: str | None = Field(
        default=None,
        description="pagerduty only: the 32-character integration key (a secret: never shown).",
    )


class AlertTargetOut(BaseModel):
    name: str
    kind: TargetKind
    url: str = Field(description="The URL with its secret parts (path, query, user) hidden.")
    routing_key_set: bool
    created_at: datetime


class AlertRuleCreate(_Strict):
    kind: RuleKind = Field(
        description="guardrail_tripped (a variant pulled), error_rate or p99_latency_ms over "
        "the window, srm (p-value below the threshold), feature_drift or prediction_drift "
        "(PSI above the threshold), rows_dropped (lake rows dropped in the window), "
        "reallocation_stalled (seconds since the last allocation above the threshold)."
    )
    threshold: float | None = Field(
        default=None,
        description="Fires above it (below it for srm). Defaults: error_rate 0.05, "
        "p99_latency_ms 500, srm 0.001, drift 0.2, rows_dropped 0, reallocation_stalled 600; "
        "guardrail_tripped has none.",
    )
    window_s: int | None = Field(
        default=None,
        ge=60,
        le=90 * 86_400,
        description="Window the rate, latency or drop count is taken over (default 3600 s); "
        "drift: the length of each compared window, whole hours (default 86400 s).",
    )
    min_requests: int = Field(
        default=100,
        ge=1,
        le=1_000_000_000,
        description="error_rate, p99_latency_ms: requests a variant needs in the window to be "
        "judged; with fewer, its alert stays as it is.",
    )
    severity: Severity | None = Field(default=None, description="Default by kind.")
    targets: list[TargetName] = Field(
        min_length=1, max_length=MAX_TARGETS_PER_RULE, description="Alert target names."
    )
    enabled: bool = True


class AlertRulePatch(_Strict):
    threshold: float | None = None
    window_s: int | None = Field(default=None, ge=60, le=90 * 86_400)
    min_requests: int | None = Field(default=None, ge=1, le=1_000_000_000)
    severity: Severity | None = None
    targets: list[TargetName] | None = Field(
        default=None, min_length=1, max_length=MAX_TARGETS_PER_RULE
    )
    enabled: bool | None = None


class AlertRuleOut(BaseModel):
    id: int
    experiment: str
    kind: RuleKind
    threshold: float
    window_s: int
    min_requests: int
    severity: Severity
    targets: list[str]
    enabled: bool
    created_at: datetime
    updated_at: datetime


class AlertOut(BaseModel):
    id: int
    rule_id: int
    experiment: str
    kind: RuleKind
    subject: str = Field(description="The variant, feature or `experiment` the alert is about.")
    state: Literal["open", "resolved"]
    value: float | None
    threshold: float
    summary: str
    opened_at: datetime
    resolved_at: datetime | None
    deliveries: dict[str, int] = Field(
        description="Messages of this alert by status: pending, sent, failed."
    )


class AlertsOut(BaseModel):
    open: list[AlertOut]
    recent: list[AlertOut] = Field(description="Resolved alerts, newest first.")
