"""Pydantic models of the REST API's bodies."""

from __future__ import annotations

import math
from collections import Counter
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from bandit.config import default_min_weight
from bandit.policy import DEFAULT_MIN_WEIGHT
from bandit.registry import policy_kinds

__all__ = [
    "AllocationOut",
    "AllocationPut",
    "BatchFeedbackBody",
    "BatchPredictBody",
    "ErrorBody",
    "ErrorOut",
    "ExperimentCreate",
    "ExperimentOut",
    "ExperimentPatch",
    "FeedbackBody",
    "Guardrails",
    "LakeOut",
    "LakeTableOut",
    "PolicySpec",
    "PredictBody",
    "PredictOut",
    "PromoteBody",
    "Redaction",
    "RewardSpec",
    "Stopping",
    "VariantOut",
    "VariantPatch",
]

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$"
ExperimentStatus = Literal["draft", "running", "paused", "stopped"]
RewardKind = Literal["binary", "continuous", "label"]
RewardMetric = Literal["accuracy", "neg_abs_error", "neg_squared_error"]
PolicyKind = str
"""A registered policy kind (:func:`bandit.registry.policy_kinds`), checked at request time."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ErrorBody(BaseModel):
    code: str = Field(description="A snake_case name for the error, stable across releases.")
    message: str = Field(description="A sentence naming the bad value.")
    details: Any = Field(description="Structured context (the failing fields, a limit), or null.")


class ErrorOut(BaseModel):
    """The envelope of every error response, whatever its status."""

    error: ErrorBody


class RewardSpec(_Strict):
    kind: RewardKind
    metric: RewardMetric | None = None

    @model_validator(mode="after")
    def _metric_fits_kind(self) -> RewardSpec:
        if self.kind == "label" and self.metric is None:
            self.metric = "accuracy"
        if self.kind != "label" and self.metric is not None:
            msg = (
                f"reward.metric {self.metric!r} applies only to label feedback; "
                f"a {self.kind} reward is sent as a number."
            )
            raise ValueError(msg)
        return self


class PolicySpec(BaseModel):
    """``{"kind": ..., **params}``; the params are checked by the ``bandit`` package."""

    model_config = ConfigDict(extra="allow")
    # The OpenAPI enum lists the kinds registered when this module was imported; a request
    # is checked against the registry as it is then, so a policy registered later is accepted.
    kind: PolicyKind = Field(json_schema_extra={"enum": list(policy_kinds())})

    @field_validator("kind")
    @classmethod
    def _registered(cls, kind: str) -> str:
        kinds = policy_kinds()
        if kind not in kinds:
            quoted = [repr(k) for k in kinds]
            expected = (
                ", ".join(quoted[:-1]) + " or " + quoted[-1] if len(quoted) > 1 else quoted[0]
            )
            raise PydanticCustomError(
                "literal_error", "Input should be {expected}", {"expected": expected}
            )
        return kind

    def params(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class Guardrails(_Strict):
    max_error_rate: float | None = Field(default=None, ge=0, le=1)
    max_p99_latency_ms: float | None = Field(default=None, gt=0)


class Stopping(_Strict):
    """When the report calls a winner, and whether the reallocator then promotes it."""

    prob_best: float = Field(default=0.95, gt=0.5, lt=1)
    expected_loss: float = Field(default=0.001, ge=0)
    auto_promote: bool = False


MAX_REDACTED_FEATURES = 1024
"""The most feature names one redaction list may hold."""
MAX_RETENTION_DAYS = 3650

FeatureName = Annotated[str, Field(min_length=1, max_length=256)]
RetentionDays = Annotated[
    int,
    Field(
        strict=True,
        ge=1,
        le=MAX_RETENTION_DAYS,
        description=(
            "Days of predictions and feedback the lake keeps for this experiment (1 to "
            "3650); null keeps them forever. A separate retention job enforces it."
        ),
    ),
]


class Redaction(_Strict):
    """Features kept out of the inference lake; the models still get every feature.

    ``drop``: the feature never reaches the lake. ``hash``: the lake holds a keyed hash
    instead of the value, HMAC-SHA256 under ``BANDITLAKE_REDACTION_SECRET`` of the
    experiment, the feature and the value's canonical bytes (the float64 big-endian),
    truncated to 52 bits: a float the lake's double column holds exactly. Equal values
    give equal hashes, so joins and group-bys still work; the value cannot be recovered
    without the secret.
    """

    drop: list[FeatureName] = Field(
        default_factory=list,
        max_length=MAX_REDACTED_FEATURES,
        description="Features the lake never receives.",
    )
    hash: list[FeatureName] = Field(
        default_factory=list,
        max_length=MAX_REDACTED_FEATURES,
        description=(
            "Features the lake receives as a keyed hash (needs BANDITLAKE_REDACTION_SECRET)."
        ),
    )

    @model_validator(mode="after")
    def _disjoint(self) -> Redaction:
        for field in ("drop", "hash"):
            names: list[str] = getattr(self, field)
            repeated = sorted(n for n, count in Counter(names).items() if count > 1)
            if repeated:
                msg = f"redaction.{field} names {repeated[:10]} more than once"
                raise ValueError(msg)
        both = sorted(set(self.drop) & set(self.hash))
        if both:
            msg = (
                f"redaction names {both[:10]} in both drop and hash; a feature is one or the other"
            )
            raise ValueError(msg)
        return self

    def is_empty(self) -> bool:
        return not self.drop and not self.hash


class ExperimentCreate(_Strict):
    name: str = Field(pattern=NAME_PATTERN)
    description: str = Field(default="", max_length=4000)
    reward: RewardSpec
    policy: PolicySpec = Field(default_factory=lambda: PolicySpec(kind="thompson"))
    sticky: bool = False
    learn_from_batch: bool = Field(
        default=False,
        description=(
            "Whether rows scored by `banditlake score` (lake mode `batch`) count in the "
            "bandit statistics (reallocation, report, SRM); by default only online and "
            "stream traffic does."
        ),
    )
    min_weight: float = Field(
        default=DEFAULT_MIN_WEIGHT,
        ge=0,
        lt=1,
        description=(
            "Floor on every active arm's share of traffic, so a losing arm keeps collecting "
            "evidence. Default 0.02 for thompson, epsilon_greedy and ucb1; 0 for fixed and "
            "canary, whose shares are the operator's. Capped at 1/K for K active arms (at "
            "1/K the split is even); the floor takes K x min_weight of traffic, so lower it "
            "for many arms."
        ),
    )
    reallocate_every_s: int = Field(
        default=60,
        ge=1,
        le=86_400,
        description=(
            "Seconds between the reallocation loop's runs of the policy on the lake; "
            "POST /v1/experiments/{name}/reallocate runs it at once."
        ),
    )
    guardrails: Guardrails = Field(default_factory=Guardrails)
    stopping: Stopping = Field(default_factory=Stopping)
    retention_days: RetentionDays | None = None
    redaction: Redaction | None = Field(
        default=None,
        description=(
            "Features kept out of the lake (`drop`) or logged as a keyed hash (`hash`). "
            "The names are checked against the variants' features once there are variants "
            "(at every change, and when the experiment starts running)."
        ),
    )

    @model_validator(mode="after")
    def _policy_floor(self) -> ExperimentCreate:
        if "min_weight" not in self.model_fields_set:
            self.min_weight = default_min_weight(self.policy.kind)
        return self


class ExperimentPatch(_Strict):
    description: str | None = Field(default=None, max_length=4000)
    policy: PolicySpec | None = None
    guardrails: Guardrails | None = None
    stopping: Stopping | None = None
    min_weight: float | None = Field(
        default=None,
        ge=0,
        lt=1,
        description="Floor on every active arm's share, capped at 1/K (see the create body).",
    )
    reallocate_every_s: int | None = Field(default=None, ge=1, le=86_400)
    learn_from_batch: bool | None = Field(
        default=None,
        description=(
            "Whether batch-scored rows count in the bandit statistics from the next "
            "reallocation pass on (rows already folded are not revisited)."
        ),
    )
    retention_days: RetentionDays | None = Field(
        default=None,
        description="Days the lake keeps this experiment's rows (1 to 3650); null: forever.",
    )
    redaction: Redaction | None = Field(
        default=None,
        description=(
            "Replaces the redaction lists (names must be features of the variants); null "
            "or empty lists log every feature."
        ),
    )
    status: ExperimentStatus | None = None


class ExperimentOut(BaseModel):
    name: str
    description: str
    status: ExperimentStatus
    reward: RewardSpec
    policy: dict[str, Any]
    sticky: bool
    learn_from_batch: bool = False
    min_weight: float
    reallocate_every_s: int
    guardrails: Guardrails
    stopping: Stopping
    retention_days: int | None = Field(
        default=None, description="Days the lake keeps this experiment's rows; null: forever."
    )
    redaction: Redaction = Field(
        default_factory=Redaction,
        description="Features dropped from the lake or logged as a keyed hash.",
    )
    variants: list[str]
    allocation_version: int | None
    created_at: datetime
    updated_at: datetime


class LakeTableOut(BaseModel):
    """One lake table, as the manifest counts it."""

    live_files: int = Field(description="Files readers see: small plus published.")
    small_files: int = Field(description="The writers' flush files not compacted yet.")
    published_files: int = Field(description="Compacted files, each in the Delta log.")
    replaced_files: int = Field(
        description="Files replaced by a compaction, deleted after their grace period."
    )
    rows: int = Field(description="Rows in the live files.")
    published_rows: int = Field(description="Rows in the published files.")
    bytes: int = Field(description="Bytes of the live files.")
    delta_version: int | None = Field(
        description="The Delta table's latest version; null before the first publication."
    )
    last_compaction_at: datetime | None = Field(
        description="When the last committed compaction finished; null if none has."
    )
    compactions: dict[str, int] = Field(
        description="Compactions by status (committed, rolled_back, started)."
    )


class LakeOut(BaseModel):
    """What the inference lake holds, per table."""

    tables: dict[str, LakeTableOut]


class VariantOut(BaseModel):
    name: str
    role: Literal["arm", "shadow"]
    status: Literal["active", "disabled", "failed"]
    status_reason: str | None
    sha256: str
    input_name: str
    input_shape: list[int | None]
    features: list[str]
    output: str
    provider: str | None
    created_at: datetime


class VariantPatch(_Strict):
    status: Literal["active", "disabled"] | None = None
    enabled: bool | None = None

    @model_validator(mode="after")
    def _one_field(self) -> VariantPatch:
        if (self.status is None) == (self.enabled is None):
            msg = 'Send exactly one of "status" ("active" or "disabled") or "enabled" (bool).'
            raise ValueError(msg)
        return self

    @property
    def active(self) -> bool:
        return self.status == "active" if self.enabled is None else self.enabled


class AllocationOut(BaseModel):
    version: int
    weights: dict[str, float]
    created_at: datetime
    reason: str
    author: str
    stats: dict[str, Any] | None = None


class AllocationPut(_Strict):
    weights: dict[str, float]
    reason: str | None = Field(default=None, max_length=2000)

    @field_validator("weights")
    @classmethod
    def _finite(cls, weights: dict[str, float]) -> dict[str, float]:
        if not weights:
            raise ValueError("weights must name at least one variant")
        for name, w in weights.items():
            if not math.isfinite(w) or w < 0:
                msg = f"weight {w!r} for {name!r} must be a finite number >= 0"
                raise ValueError(msg)
        return weights


class PromoteBody(_Strict):
    variant: str


# Strict: a JSON string or boolean is not a feature value (an int is).
FeatureValue = Annotated[float, Field(strict=True, allow_inf_nan=False)]


class PredictBody(_Strict):
    features: list[FeatureValue] | dict[str, FeatureValue] = Field(union_mode="left_to_right")
    unit_id: str | None = Field(default=None, min_length=1, max_length=256)


class BatchPredictBody(_Strict):
    rows: list[PredictBody]


class PredictOut(BaseModel):
    request_id: str
    variant: str
    prediction: float
    scores: list[float] | None = None
    propensity: float
    allocation_version: int


class FeedbackBody(_Strict):
    request_id: str = Field(min_length=1, max_length=128)
    reward: Annotated[float, Field(strict=True)] | None = None
    label: float | str | None = Field(default=None, union_mode="left_to_right")


class BatchFeedbackBody(_Strict):
    items: list[FeedbackBody]
