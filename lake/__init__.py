"""The inference lake: every prediction and every piece of feedback, as Parquet files.

Writers (``LakeWriter``) buffer rows in memory and flush them to immutable Parquet files
listed in a manifest table (``lake_files``) of the SQL store; readers (``open_lake``)
take a snapshot of that list and query it with DuckDB or polars. ``LakeAggregator`` turns
the files added since its watermark into sufficient statistics that add with ``+``
(``VariantVersionStats``: ``bandit``'s ``ArmStats`` and ``IpwStats`` and a ``Health``).
"""

from lake.aggregates import LakeAggregator
from lake.errors import LakeConfigError, LakeError, LakeWriteError, RowConversionError
from lake.health import Health
from lake.janitor import janitor
from lake.location import LakeLocation, default_lake_root, locate_lake
from lake.manifest import (
    NAMING_CONVENTION,
    FileEntry,
    files_since,
    lake_files,
    live_files,
    metadata,
    register_file,
)
from lake.reader import Lake, ViewName, open_lake
from lake.rewards import RewardRule, reward_of
from lake.schemas import (
    FEEDBACK_SCHEMA,
    PREDICTIONS_SCHEMA,
    FeedbackRow,
    PredictionRow,
    TableName,
)
from lake.variants import ArmKey, VariantVersionStats, VariantView
from lake.writer import LakeWriter, WriterStats, default_writer_id

__all__ = [
    "FEEDBACK_SCHEMA",
    "NAMING_CONVENTION",
    "PREDICTIONS_SCHEMA",
    "ArmKey",
    "FeedbackRow",
    "FileEntry",
    "Health",
    "Lake",
    "LakeAggregator",
    "LakeConfigError",
    "LakeError",
    "LakeLocation",
    "LakeWriteError",
    "LakeWriter",
    "PredictionRow",
    "RewardRule",
    "RowConversionError",
    "TableName",
    "VariantVersionStats",
    "VariantView",
    "ViewName",
    "WriterStats",
    "default_lake_root",
    "default_writer_id",
    "files_since",
    "janitor",
    "lake_files",
    "live_files",
    "locate_lake",
    "metadata",
    "open_lake",
    "register_file",
    "reward_of",
]
