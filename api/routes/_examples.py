"""Examples the API docs show: real requests and the answers a running service gave them.

The answers were captured from the README's walkthrough (experiment ``churn``, arms
``gbm`` and ``logreg`` over the features age, tenure and spend). ``tests/api/
test_openapi_docs.py`` validates every example against the schema it illustrates, so
a changed model shows up there rather than as a stale example.
"""

from __future__ import annotations

from typing import Any, Final

# Requests.

CREATE_EXPERIMENT: Final[Any] = {
    "name": "churn",
    "description": "Churn models for the retention campaign.",
    "reward": {"kind": "binary"},
    "policy": {"kind": "thompson"},
    "min_weight": 0.05,
    "guardrails": {"max_error_rate": 0.05, "max_p99_latency_ms": 50},
    "retention_days": 90,
}
PATCH_EXPERIMENT: Final[Any] = {"status": "running"}
PATCH_DATA_SETTINGS: Final[Any] = {
    "retention_days": 30,
    "redaction": {"drop": ["spend"], "hash": ["age"]},
}
UPLOAD_VARIANT: Final[Any] = {
    "name": "gbm",
    "role": "arm",
    "features": '["age", "tenure", "spend"]',
    "output": "probabilities",
}
PATCH_VARIANT: Final[Any] = {"enabled": False}
PUT_ALLOCATION: Final[Any] = {
    "weights": {"gbm": 0.7, "logreg": 0.3},
    "reason": "favour the new model while it warms up",
}
PROMOTE: Final[Any] = {"variant": "gbm"}
PREDICT: Final[Any] = {"features": {"age": 41, "tenure": 3, "spend": 120.5}, "unit_id": "u-17"}
PREDICT_BATCH: Final[Any] = {
    "rows": [
        {"features": [41, 3, 120.5]},
        {"features": {"age": 29, "tenure": 1, "spend": 15.0}, "unit_id": "u-18"},
    ]
}
FEEDBACK: Final[Any] = {"request_id": "1.2770304be5742caf2d1dd8ee970e68d0", "reward": 1}
FEEDBACK_BATCH: Final[Any] = {
    "items": [
        {"request_id": "1.32d5b0f954c8962e54a6cbe003a5f010", "reward": 0},
        {"request_id": "1.f32c69ab548e2ee330f6d00205604113", "reward": 1},
    ]
}

# Answers.

THOMPSON_REASON: Final = (
    "Thompson sampling: each arm's weight is its posterior probability of being best "
    "(10000 draws); 'logreg' leads with 0.8975. Every arm keeps at least 0.05 of traffic."
)

EXPERIMENT: Final[Any] = {
    "name": "churn",
    "description": "Churn models for the retention campaign.",
    "status": "running",
    "reward": {"kind": "binary", "metric": None},
    "policy": {"kind": "thompson"},
    "sticky": False,
    "learn_from_batch": False,
    "min_weight": 0.05,
    "reallocate_every_s": 60,
    "guardrails": {"max_error_rate": None, "max_p99_latency_ms": None},
    "stopping": {"prob_best": 0.95, "expected_loss": 0.001, "auto_promote": False},
    "retention_days": 30,
    "redaction": {"drop": ["spend"], "hash": ["age"]},
    "variants": ["gbm", "logreg"],
    "allocation_version": 5,
    "created_at": "2026-12-02T01:42:15.014078Z",
    "updated_at": "2026-12-02T01:42:15.127423Z",
}

VARIANT: Final[Any] = {
    "name": "gbm",
    "role": "arm",
    "status": "active",
    "status_reason": None,
    "sha256": "5da4250d123305f269eb632c1861af340f0e497a13704872cd66f1b83f1ffedb",
    "input_name": "x",
    "input_shape": [None, 3],
    "features": ["age", "tenure", "spend"],
    "output": "y",
    "provider": "CPUExecutionProvider",
    "created_at": "2026-12-02T01:42:15.080607Z",
}

VARIANT_DISABLED: Final[Any] = {
    "name": "logreg",
    "role": "arm",
    "status": "disabled",
    "status_reason": "disabled by admin",
    "sha256": "68baef7e2b27900309423d47355140a75f16b3b6e127d722cccaf298064d5499",
    "input_name": "x",
    "input_shape": [None, 3],
    "features": ["age", "tenure", "spend"],
    "output": "y",
    "provider": "CPUExecutionProvider",
    "created_at": "2026-12-02T01:42:15.100303Z",
}

ALLOCATION: Final[Any] = {
    "version": 2,
    "weights": {"gbm": 0.7, "logreg": 0.3},
    "created_at": "2026-12-02T01:42:15.167849Z",
    "reason": "favour the new model while it warms up",
    "author": "admin",
    "stats": None,
}

PROMOTED: Final[Any] = {
    "version": 3,
    "weights": {"gbm": 1.0, "logreg": 0.0},
    "created_at": "2026-12-02T01:42:15.186897Z",
    "reason": "promote 'gbm'",
    "author": "admin",
    "stats": None,
}

ROLLED_BACK: Final[Any] = {
    "version": 4,
    "weights": {"gbm": 0.7, "logreg": 0.3},
    "created_at": "2026-12-02T01:42:15.198177Z",
    "reason": "rollback to version 2",
    "author": "admin",
    "stats": None,
}

REALLOCATED: Final[Any] = {
    "version": 5,
    "weights": {"gbm": 0.1422, "logreg": 0.8578},
    "created_at": "2026-12-02T01:42:15.692592Z",
    "reason": THOMPSON_REASON,
    "author": "admin",
    "stats": {
        "policy": "thompson",
        "decision": "reweight",
        "seed": 3022558861437055089,
        "means": {"gbm": 0.0, "logreg": 1.0},
        "counts": {"gbm": 1.0, "logreg": 2.0},
        "prob_best": {"gbm": 0.1025, "logreg": 0.8975},
        "expected_loss": {"gbm": 0.4338, "logreg": 0.0171},
        "served": {"gbm": 1, "logreg": 2},
        "errors": {"gbm": 0, "logreg": 0},
        "guardrails": [],
        "winner": None,
        "watermarks": {"predictions": 1, "feedback": 2},
    },
}

PREDICTION: Final[Any] = {
    "request_id": "1.2770304be5742caf2d1dd8ee970e68d0",
    "variant": "logreg",
    "prediction": 0.6405,
    "scores": None,
    "propensity": 0.5,
    "allocation_version": 1,
}

BATCH_PREDICTIONS: Final[Any] = {
    "results": [
        {
            "request_id": "1.32d5b0f954c8962e54a6cbe003a5f010",
            "variant": "gbm",
            "prediction": 0.1715,
            "scores": None,
            "propensity": 0.5,
            "allocation_version": 1,
        },
        {
            "request_id": "1.f32c69ab548e2ee330f6d00205604113",
            "variant": "logreg",
            "prediction": 0.495,
            "scores": None,
            "propensity": 0.5,
            "allocation_version": 1,
        },
    ]
}

FEEDBACK_ACCEPTED: Final[Any] = {"accepted": 1, "duplicate": False}

FEEDBACK_BATCH_ACCEPTED: Final[Any] = {"accepted": 2, "duplicates": 0}

REPORT: Final[Any] = {
    "experiment": "churn",
    "status": "running",
    "reward": "binary",
    "allocation_version": 5,
    "variants": [
        {
            "name": "gbm",
            "role": "arm",
            "status": "active",
            "weight": 0.1422,
            "requests": 1,
            "rewarded": 1,
            "reward_mean": 0.0,
            "ci_low": 0.0,
            "ci_high": 0.7935,
            "ipw_mean": 0.0,
            "ipw_ci_low": 0.0,
            "ipw_ci_high": 0.0,
            "ipw_ess": 1.0,
            "ipw_max_weight": 2.0,
            "prob_best": 0.0992,
            "expected_loss": 0.4367,
            "test": None,
            "latency_p50_ms": 0.4114,
            "latency_p99_ms": 0.4114,
            "error_rate": 0.0,
        },
        {
            "name": "logreg",
            "role": "arm",
            "status": "active",
            "weight": 0.8578,
            "requests": 2,
            "rewarded": 2,
            "reward_mean": 1.0,
            "ci_low": 0.3424,
            "ci_high": 1.0,
            "ipw_mean": 1.3333,
            "ipw_ci_low": 0.0267,
            "ipw_ci_high": 2.64,
            "ipw_ess": 2.0,
            "ipw_max_weight": 2.0,
            "prob_best": 0.9008,
            "expected_loss": 0.017,
            "test": {
                "method": "z",
                "diff": 1.0,
                "ci_low": 1.0,
                "ci_high": 1.0,
                "p_value": 0.0833,
                "adjusted_p_value": 0.0833,
                "sequential_p_value": 1.0,
                "sequential_decision": "continue",
            },
            "latency_p50_ms": 0.4114,
            "latency_p99_ms": 0.4979,
            "error_rate": 0.0,
        },
    ],
    "srm_p_value": 0.5637,
    "srm_mismatch": False,
    "winner": None,
    "verdict": "No winner yet: 'logreg' leads with P(best) = 0.901; keep collecting data.",
    "watermarks": {"predictions": 1, "feedback": 2},
}

HEALTH: Final[Any] = {
    "ready": True,
    "checks": {"store": "ok", "lake": "ok", "models": "ok"},
    "degraded": [],
    "reason": None,
    "store_error": None,
    "lake_tables": {"predictions": "ok", "feedback": "ok"},
    "models": {
        "churn/gbm": {"provider": "CPUExecutionProvider", "failed": None},
        "churn/logreg": {"provider": "CPUExecutionProvider", "failed": None},
    },
}

READY: Final[Any] = {
    "ready": True,
    "checks": {"store": "ok", "lake": "ok", "models": "ok"},
    "degraded": [],
}

EXPERIMENT_CREATED: Final[Any] = {
    "name": "churn",
    "description": "Churn models for the retention campaign.",
    "status": "draft",
    "reward": {"kind": "binary", "metric": None},
    "policy": {"kind": "thompson"},
    "sticky": False,
    "learn_from_batch": False,
    "min_weight": 0.05,
    "reallocate_every_s": 60,
    "guardrails": {"max_error_rate": None, "max_p99_latency_ms": None},
    "stopping": {"prob_best": 0.95, "expected_loss": 0.001, "auto_promote": False},
    "retention_days": 90,
    "redaction": {"drop": [], "hash": []},
    "variants": [],
    "allocation_version": None,
    "created_at": "2026-12-02T01:42:15.014078Z",
    "updated_at": "2026-12-02T01:42:15.014086Z",
}

FEEDBACK_DUPLICATE: Final[Any] = {"accepted": 0, "duplicate": True}
ALIVE: Final[Any] = {"status": "ok"}

# Redaction and retention refusals (422), as the service words them.
REDACTION_ERRORS: Final[Any] = {
    "unknown_feature": {
        "error": {
            "code": "unknown_feature",
            "message": (
                "redaction.drop names ['email'], not a feature of any variant of 'churn'; "
                "its features are ['age', 'tenure', 'spend']."
            ),
            "details": None,
        }
    },
    "redaction_secret_missing": {
        "error": {
            "code": "redaction_secret_missing",
            "message": (
                "redaction.hash needs BANDITLAKE_REDACTION_SECRET set on the service (the "
                "key of the hashes); without it a hashed feature could only be logged raw. "
                "Set the secret, or list the features under drop."
            ),
            "details": None,
        }
    },
}

LAKE: Final[Any] = {
    "tables": {
        "predictions": {
            "live_files": 14,
            "small_files": 12,
            "published_files": 2,
            "replaced_files": 40,
            "rows": 182_400,
            "published_rows": 160_000,
            "bytes": 9_731_558,
            "delta_version": 2,
            "last_compaction_at": "2026-12-02T02:10:04.512000Z",
            "compactions": {"committed": 2, "rolled_back": 1},
        },
        "feedback": {
            "live_files": 3,
            "small_files": 3,
            "published_files": 0,
            "replaced_files": 0,
            "rows": 2_310,
            "published_rows": 0,
            "bytes": 61_207,
            "delta_version": None,
            "last_compaction_at": None,
            "compactions": {},
        },
    }
}
