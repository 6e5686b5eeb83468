"""Dashboard queries: per-variant time buckets, feature and prediction drift, data quality.

Each query first picks, from a manifest snapshot, the files whose ``ts`` range
(``min_ts``/``max_ts``) overlaps its window, then has DuckDB read only the columns it
needs from them; Parquet row-group statistics on ``ts`` skip the rest of a file. So a
panel over the last day of a month-long lake reads about a day of data, whatever the
lake's size. Values are bound as ``?`` parameters; only the file list, which comes from
the manifest, is quoted into the SQL text.

Windows are anchored on the experiment's own data (its first and last prediction), not on
the wall clock, so a stopped experiment still shows its last day.

The queries are methods of :class:`DashboardQueries`, which owns the DuckDB connection
and the result cache: no state is kept at module level, so each service (and each test's
app) has its own and closes it when it stops.
"""

from lake.dashboard._data_quality import (
    QUALITY_MIN_ROWS,
    DataQuality,
    FeatureQuality,
    data_quality,
)
from lake.dashboard._drift import (
    DRIFT_BINS,
    DRIFT_MIN_ROWS,
    DRIFT_THRESHOLD,
    Drift,
    DriftWindow,
    FeatureDrift,
    psi,
)
from lake.dashboard._prediction_drift import (
    PREDICTION_DRIFT_MIN_ROWS,
    PredictionDrift,
    VariantDrift,
    prediction_cuts,
    prediction_drift,
)
from lake.dashboard._queries import DashboardQueries
from lake.dashboard._series import TimeBuckets, VariantBuckets
from lake.dashboard._served import SERVED_MODES

__all__ = [
    "DRIFT_BINS",
    "DRIFT_MIN_ROWS",
    "DRIFT_THRESHOLD",
    "PREDICTION_DRIFT_MIN_ROWS",
    "QUALITY_MIN_ROWS",
    "SERVED_MODES",
    "DashboardQueries",
    "DataQuality",
    "Drift",
    "DriftWindow",
    "FeatureDrift",
    "FeatureQuality",
    "PredictionDrift",
    "TimeBuckets",
    "VariantBuckets",
    "VariantDrift",
    "data_quality",
    "prediction_cuts",
    "prediction_drift",
    "psi",
]
