"""Examples of the dashboard's JSON panels the API docs show, captured like
:mod:`api.routes._examples` (whose ``REPORT`` the dashboard's report panel shares) and
validated the same way by ``tests/api/test_openapi_docs.py``.
"""

from __future__ import annotations

from typing import Any, Final

from api.routes._examples import THOMPSON_REASON

DASHBOARD_EXPERIMENTS: Final[Any] = [
    {
        "name": "churn",
        "description": "Churn models for the retention campaign.",
        "status": "running",
        "reward": "binary",
        "policy": "thompson",
        "variants": ["gbm", "logreg"],
        "allocation_version": 6,
        "requests": 3,
        "rewarded": 3,
        "winner": None,
        "srm_mismatch": False,
        "verdict": "No winner yet: 'logreg' leads with P(best) = 0.700; keep collecting data.",
        "updated_at": "2026-12-02T01:44:02.301251Z",
    }
]


DASHBOARD_ALLOCATIONS: Final[Any] = {
    "experiment": "churn",
    "variants": ["gbm", "logreg"],
    "steps": [
        {
            "version": 5,
            "created_at": "2026-12-02T01:44:02.551239Z",
            "weights": {"gbm": 0.1422, "logreg": 0.8578},
            "reason": THOMPSON_REASON,
            "author": "admin",
            "prob_best": {"gbm": 0.1025, "logreg": 0.8975},
        },
        {
            "version": 6,
            "created_at": "2026-12-02T01:44:02.595853Z",
            "weights": {"gbm": 1.0},
            "reason": "arm 'logreg' disabled; other arms keep their relative weights",
            "author": "admin",
            "prob_best": None,
        },
    ],
    "first_request": "2026-12-02T01:44:02.323031Z",
    "last_request": "2026-12-02T01:44:02.326026Z",
    "now": "2026-12-02T01:44:02.664420Z",
}


DASHBOARD_TIMESERIES: Final[Any] = {
    "experiment": "churn",
    "hours": 1,
    "start": "2026-12-02T01:44:02.300000Z",
    "end": "2026-12-02T01:44:02.400000Z",
    "bucket_seconds": 0.1,
    "whole_experiment": True,
    "times": ["2026-12-02T01:44:02.300000Z"],
    "variants": [
        {
            "name": "gbm",
            "role": "arm",
            "requests": [2],
            "errors": [0],
            "error_rate": [0.0],
            "rewarded": [2],
            "reward_mean": [0.5],
            "ci_low": [0.0945],
            "ci_high": [0.9055],
            "latency_p50_ms": [0.4125],
            "latency_p99_ms": [0.5106],
        },
        {
            "name": "logreg",
            "role": "arm",
            "requests": [1],
            "errors": [0],
            "error_rate": [0.0],
            "rewarded": [1],
            "reward_mean": [1.0],
            "ci_low": [0.2065],
            "ci_high": [1.0],
            "latency_p50_ms": [0.2759],
            "latency_p99_ms": [0.2759],
        },
    ],
}


DASHBOARD_DRIFT: Final[Any] = {
    "experiment": "churn",
    "hours": 1,
    "threshold": 0.2,
    "min_rows": 100,
    "reference": {
        "start": "2026-12-02T01:44:02.323031Z",
        "end": "2026-12-02T01:44:02.324528Z",
        "rows": 1,
    },
    "current": {
        "start": "2026-12-02T01:44:02.324530Z",
        "end": "2026-12-02T01:44:02.326026Z",
        "rows": 2,
    },
    "features": [
        {
            "name": "age",
            "psi": None,
            "drifted": False,
            "reference_rows": 1,
            "current_rows": 2,
            "reference_mean": 41.0,
            "current_mean": 35.0,
            "reference_share": [1.0, 0.0],
            "current_share": [1.0, 0.0],
        },
        {
            "name": "spend",
            "psi": None,
            "drifted": False,
            "reference_rows": 1,
            "current_rows": 2,
            "reference_mean": 120.5,
            "current_mean": 67.75,
            "reference_share": [1.0, 0.0],
            "current_share": [1.0, 0.0],
        },
        {
            "name": "tenure",
            "psi": None,
            "drifted": False,
            "reference_rows": 1,
            "current_rows": 2,
            "reference_mean": 3.0,
            "current_mean": 2.0,
            "reference_share": [1.0, 0.0],
            "current_share": [1.0, 0.0],
        },
    ],
    "drifted": [],
}


DASHBOARD_PREDICTION_DRIFT: Final[Any] = {
    "experiment": "churn",
    "hours": 24,
    "threshold": 0.2,
    "min_rows": 250,
    "reference": {
        "start": "2026-01-01T00:00:00Z",
        "end": "2026-01-02T00:00:00Z",
        "rows": 600,
    },
    "current": {
        "start": "2026-01-02T00:00:00Z",
        "end": "2026-01-02T23:58:00Z",
        "rows": 600,
    },
    "variants": [
        {
            "name": "gbm",
            "role": "arm",
            "psi": 0.0412,
            "drifted": False,
            "reference_rows": 300,
            "current_rows": 300,
            "reference_nonfinite": 0,
            "current_nonfinite": 0,
            "reference_mean": 0.3121,
            "current_mean": 0.3287,
            "cuts": [0.11, 0.16, 0.2, 0.24, 0.29, 0.34, 0.4, 0.47, 0.58],
            "reference_share": [0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1],
            "current_share": [0.09, 0.1, 0.09, 0.11, 0.1, 0.09, 0.11, 0.1, 0.1, 0.11],
        },
        {
            "name": "logreg",
            "role": "arm",
            "psi": 0.6834,
            "drifted": True,
            "reference_rows": 300,
            "current_rows": 300,
            "reference_nonfinite": 0,
            "current_nonfinite": 0,
            "reference_mean": 0.2954,
            "current_mean": 0.4712,
            "cuts": [0.1, 0.15, 0.19, 0.23, 0.28, 0.33, 0.39, 0.46, 0.57],
            "reference_share": [0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1],
            "current_share": [0.02, 0.03, 0.03, 0.04, 0.06, 0.08, 0.1, 0.14, 0.2, 0.3],
        },
    ],
    "drifted": ["logreg"],
}


DASHBOARD_QUALITY: Final[Any] = {
    "experiment": "churn",
    "variant": None,
    "hours": 24,
    "min_rows": 100,
    "reference": {
        "start": "2026-01-01T00:00:00Z",
        "end": "2026-01-02T00:00:00Z",
        "rows": 600,
    },
    "current": {
        "start": "2026-01-02T00:00:00Z",
        "end": "2026-01-02T23:58:00Z",
        "rows": 600,
    },
    "features": [
        {
            "name": "age",
            "redacted": None,
            "reference_missing_share": 0.0,
            "current_missing_share": 0.0,
            "current_missing": 0,
            "low": 18.0,
            "high": 79.0,
            "out_of_range": 0,
            "out_of_range_share": 0.0,
            "current_values": 600,
            "reference_nonfinite": 0,
            "current_nonfinite": 0,
            "rejected_nonfinite": 0,
        },
        {
            "name": "spend",
            "redacted": None,
            "reference_missing_share": 0.0,
            "current_missing_share": 0.0,
            "current_missing": 0,
            "low": 0.0,
            "high": 412.5,
            "out_of_range": 60,
            "out_of_range_share": 0.1,
            "current_values": 600,
            "reference_nonfinite": 0,
            "current_nonfinite": 0,
            "rejected_nonfinite": 3,
        },
        {
            "name": "tenure",
            "redacted": None,
            "reference_missing_share": 0.0,
            "current_missing_share": 0.25,
            "current_missing": 150,
            "low": 0.0,
            "high": 12.0,
            "out_of_range": 0,
            "out_of_range_share": 0.0,
            "current_values": 450,
            "reference_nonfinite": 0,
            "current_nonfinite": 0,
            "rejected_nonfinite": 0,
        },
    ],
}
