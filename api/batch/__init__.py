"""Batch inference: ``banditlake score`` runs a table through an experiment's variants.

The input (Parquet, a directory of Parquet files, or CSV; local or ``s3://``) is read in
bounded chunks and scored by the same model pool the server uses; OUTPUT gets the input's
id column and the predictions; every scored row goes to the lake with ``mode = "batch"``
unless logging is off. Batch rows stay out of the experiment's online statistics unless it
sets ``learn_from_batch``.

Errors (:class:`BatchScoringError`, :class:`BatchInputError` for the input's problems) are
one sentence each, naming the bad row (``line N`` of a CSV file, ``row N`` of Parquet) or
the missing column.
"""

from __future__ import annotations

from api.batch._errors import BatchInputError, BatchScoringError
from api.batch._run import DEFAULT_BATCH_SIZE, ScoreOptions, ScoreSummary, score

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "BatchInputError",
    "BatchScoringError",
    "ScoreOptions",
    "ScoreSummary",
    "score",
]
