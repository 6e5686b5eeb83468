"""Per-variant time buckets: requests, errors, rewards and latency over a window."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from lake.dashboard._files import (
    EPOCH,
    MICROSECOND,
    Queries,
    extreme,
    micros,
    overlapping,
    source,
)
from lake.errors import LakeConfigError
from lake.reader import Lake
from lake.rewards import RewardRule

__all__ = ["TimeBuckets", "VariantBuckets", "time_buckets"]


@dataclass(frozen=True, slots=True)
class VariantBuckets:
    """One variant's counts per time bucket, oldest bucket first (all tuples align).

    ``reward_sum``/``reward_sum_sq`` are over the ``rewarded`` requests: successful
    predictions whose first feedback came within the lookback. Latency quantiles are exact
    (``quantile_cont``) over every request of the bucket, ``None`` for an empty bucket.
    """

    variant: str
    role: str
    requests: tuple[int, ...]
    errors: tuple[int, ...]
    rewarded: tuple[int, ...]
    reward_sum: tuple[float, ...]
    reward_sum_sq: tuple[float, ...]
    latency_p50_ms: tuple[float | None, ...]
    latency_p99_ms: tuple[float | None, ...]


@dataclass(frozen=True, slots=True)
class TimeBuckets:
    """Buckets ``[start + i * width, start + (i + 1) * width)``, ``i < len(starts)``."""

    start: datetime
    end: datetime
    width: timedelta
    starts: tuple[datetime, ...]
    variants: tuple[VariantBuckets, ...]
    files_read: int


def _feedback_sql(rule: RewardRule, source: str | None) -> str:
    """Each request's first feedback: the earliest ``ts``.

    The ``decisions`` view breaks a tie in ``ts`` by ``idempotency_key``; the service
    stores the request id there, so a tie is between identical keys either way, and
    ordering by ``ts`` alone saves a third of the query (a struct key costs ~35 ms per
    100k feedback rows).
    """
    label = rule.kind == "label"
    if source is None:
        extra = ", CAST(NULL AS VARCHAR) AS label" if label else ""
        return (
            "SELECT CAST(NULL AS VARCHAR) AS request_id, CAST(NULL AS BIGINT) AS first_us, "
            f"CAST(NULL AS DOUBLE) AS reward{extra} WHERE false"
        )
    extra = ", arg_min(label, ts) AS label" if label else ""
    return (
        "SELECT request_id, epoch_us(min(ts)) AS first_us, arg_min(reward, ts) AS reward"
        f"{extra} FROM {source} WHERE ts >= ? AND ts <= ? GROUP BY request_id"
    )


def _bucket_width(hours: int, buckets: int) -> timedelta:
    if hours < 1 or buckets < 1:
        msg = f"A time series needs at least 1 hour and 1 bucket; got {hours} and {buckets}."
        raise LakeConfigError(msg)
    width = timedelta(hours=hours) // buckets // MICROSECOND * MICROSECOND
    if width < timedelta(seconds=1):
        msg = f"{buckets} buckets over {hours} h would be narrower than one second."
        raise LakeConfigError(msg)
    return width


# Bucket widths for an experiment younger than its window, in milliseconds: round numbers.
# The finest is a tenth of a second, so that a replay of a few seconds (the demo's) still
# shows some thirty points; finer buckets would hold a handful of requests each.
_NICE_WIDTHS_MS: Final = (
    *(100, 200, 500),
    *(1000 * s for s in (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 21600)),
)


def _grid(first: datetime, last: datetime, fixed: timedelta, buckets: int) -> tuple[timedelta, int]:
    """Bucket width and count: the fixed grid, or a finer one over a young experiment.

    An experiment younger than the window would fill one or two of its buckets; its
    whole life is shown instead, in the finest round width (a tenth of a second at
    least) that needs at most ``buckets`` buckets.
    """
    if last - first >= fixed * buckets:
        return fixed, buckets
    for milliseconds in _NICE_WIDTHS_MS:
        width = timedelta(milliseconds=milliseconds)
        if width >= fixed:
            break
        count = (last - EPOCH) // width - (first - EPOCH) // width + 1
        if count <= buckets:
            return width, count
    return fixed, buckets


def time_buckets(
    queries: Queries,
    lake: Lake,
    experiment: str,
    rule: RewardRule,
    *,
    hours: int = 24,
    buckets: int = 48,
    lookback: timedelta | None = None,
) -> TimeBuckets:
    """Requests, errors, rewards and latency per variant in the experiment's last ``hours``.

    Parameters
    ----------
    queries
        The owner of the DuckDB connection.
    lake
        A manifest snapshot.
    experiment
        Experiment name.
    rule
        How the experiment's feedback becomes a reward (:meth:`RewardRule.sql`).
    hours, buckets
        Window length and the number of equal buckets in it. The window ends at the
        bucket boundary after the experiment's last prediction; boundaries are multiples
        of the width since the epoch, so they stay put as data arrives. An experiment
        younger than the window is shown whole, in finer buckets of a round width (from
        0.1 s), so a replay of a few seconds still gets a few dozen buckets.
    lookback
        Latest feedback counted, after the prediction's ``ts`` (``None``: any), as in the
        ``decisions`` view: a request's first feedback counts, and only if within it.

    Returns
    -------
    TimeBuckets
        With no variants when the experiment has no prediction yet.
    """
    fixed = _bucket_width(hours, buckets)
    predictions = lake.files("predictions")
    con = queries.cursor()
    try:
        last = extreme(con, lake, experiment, predictions, latest=True)
        first = (
            extreme(con, lake, experiment, predictions, latest=False) if last is not None else None
        )
        if first is None or last is None:
            end = datetime.now(UTC)
            width, count = fixed, buckets
        else:
            width, count = _grid(first, last, fixed, buckets)
            end = EPOCH + ((last - EPOCH) // width + 1) * width
        start = end - width * count
        starts = tuple(start + width * i for i in range(count))
        chosen = overlapping(predictions, start, end)
        if last is None or not chosen:
            return TimeBuckets(start, end, width, starts, (), 0)
        # Feedback is received after its prediction was served, so no request of the
        # window has feedback older than the window's start.
        feedback_end = end + lookback if lookback is not None else datetime.max.replace(tzinfo=UTC)
        feedback = overlapping(lake.files("feedback"), start, feedback_end)
        # Integer microseconds: TIMESTAMPTZ + INTERVAL goes through a calendar and cost
        # 75 ms per 300k rows where this costs nothing.
        within = "AND f.first_us <= p.ts_us + ?" if lookback is not None else ""
        reward = rule.sql(reward="f.reward", label="f.label", prediction="p.prediction")
        sql = f"""
            WITH p AS (
                SELECT request_id, epoch_us(ts) AS ts_us, variant, role, status, latency_ms,
                       prediction, (epoch_us(ts) - ?) // ? AS bucket
                FROM {source(lake, chosen)}
                WHERE experiment = ? AND ts >= ? AND ts < ?
            ),
            f AS ({_feedback_sql(rule, source(lake, feedback) if feedback else None)}),
            d AS (
                SELECT p.variant, p.role, p.bucket, p.status, p.latency_ms,
                       CASE WHEN p.status = 'ok' {within} THEN {reward} END AS reward
                FROM p LEFT JOIN f ON f.request_id = p.request_id
            )
            SELECT variant, role, bucket, count(*), count(*) FILTER (WHERE status = 'error'),
                   count(reward), coalesce(sum(reward), 0), coalesce(sum(reward * reward), 0),
                   quantile_cont(latency_ms, [0.5, 0.99])
            FROM d GROUP BY ALL ORDER BY role, variant, bucket
        """
        params: list[object] = [micros(start), width // MICROSECOND, experiment, start, end]
        if feedback:
            params += [start, feedback_end]
        if lookback is not None:
            params.append(lookback // MICROSECOND)
        rows = con.execute(sql, params).fetchall()
    finally:
        con.close()
    return TimeBuckets(
        start, end, width, starts, _by_variant(rows, count), len(chosen) + len(feedback)
    )


def _by_variant(rows: list[Any], buckets: int) -> tuple[VariantBuckets, ...]:
    columns: dict[tuple[str, str], list[list[Any]]] = {}
    for variant, role, bucket, *values in rows:
        series = columns.setdefault(
            (variant, role),
            [[0] * buckets for _ in range(5)] + [[None] * buckets for _ in range(2)],
        )
        requests, errors, rewarded, total, total_sq, (p50, p99) = values
        for column, value in zip(
            series, (requests, errors, rewarded, total, total_sq, p50, p99), strict=True
        ):
            column[bucket] = value
    return tuple(
        VariantBuckets(
            variant=variant,
            role=role,
            requests=tuple(int(x) for x in series[0]),
            errors=tuple(int(x) for x in series[1]),
            rewarded=tuple(int(x) for x in series[2]),
            reward_sum=tuple(float(x) for x in series[3]),
            reward_sum_sq=tuple(float(x) for x in series[4]),
            latency_p50_ms=tuple(series[5]),
            latency_p99_ms=tuple(series[6]),
        )
        for (variant, role), series in columns.items()
    )
