"""A replica's health: the open probe a load balancer reads, and the detail behind a token.

*Ready* means this replica can serve predictions: its experiment snapshot and the models
that loaded are in memory, and it is not shutting down (from SIGTERM on it is not ready,
with a ``reason``, while it still serves what it is sent). Predict serves from them and
buffers lake rows, so the SQL store and the lake can fail without stopping it, and a
model that failed to load stops only its own variant: these are reported as *degraded*
parts, never as "not ready". A probe that failed on any of them would take every replica
(all share one store, lake and model files) out of the balancer at once and turn a
partial outage into a full one.

Model files live in a store shared by the replicas (a directory or an S3 prefix) and are
checked against each variant's checksum on this replica; a file that is missing, cannot
be fetched or has the wrong bytes fails that variant here only, and it is tried again
while the replica runs. A running experiment none of whose arms can serve here is named
in the detail (``unserved_experiments``), with each arm's reason: its predictions answer
503 on this replica while other replicas may serve it.

Each part gets one coarse word: ``ok``; ``failing`` (lake: a writer cannot flush, so its
rows buffer and then drop; models: some variant's model failed to load); ``unavailable``
(store: ``SELECT 1`` did not succeed).

:class:`Probe` (``GET /readyz``, open) carries only those words. :class:`Health`
(``GET /v1/health``, metrics or admin token) adds what an operator needs: the store's
error, each lake table, each model's provider or load failure, and the running
experiments this replica cannot serve at all.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

from pydantic import BaseModel, Field
from sqlalchemy import Connection, Engine, select, text

from api.serving.pool import ModelPool, VariantKey
from api.store.models import Experiment, Variant

__all__ = [
    "SHUTTING_DOWN",
    "Health",
    "ModelHealth",
    "Part",
    "PartStatus",
    "Probe",
    "check_health",
]

Part = Literal["store", "lake", "models"]
PartStatus = Literal["ok", "failing", "unavailable"]


SHUTTING_DOWN = "This replica is shutting down; send requests to another replica."


class Probe(BaseModel):
    ready: bool
    checks: dict[Part, PartStatus]
    degraded: list[Part]
    reason: str | None = Field(
        default=None,
        description="Why the replica is not ready, as a sentence (null while it is ready).",
    )


class ModelHealth(BaseModel):
    provider: str | None
    failed: str | None


class Health(Probe):
    store_error: str | None
    lake_tables: dict[str, PartStatus]
    models: dict[str, ModelHealth]
    unserved_experiments: dict[str, str] = Field(
        default_factory=dict,
        description=(
            "Running experiments none of whose active arms has a model loaded on this "
            "replica, each with the reason per arm."
        ),
    )

    def probe(self) -> Probe:
        return Probe(
            ready=self.ready, checks=self.checks, degraded=self.degraded, reason=self.reason
        )


def _first_line(exc: BaseException) -> str:
    first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {first_line}".rstrip(": ")


def _running_arms(conn: Connection) -> dict[str, list[str]]:
    """Experiment name → its active arms, for every running experiment."""
    stmt = (
        select(Experiment.name, Variant.name)
        .join(Variant, Variant.experiment_id == Experiment.id)
        .where(
            Experiment.status == "running",
            Variant.role == "arm",
            Variant.status == "active",
        )
        .order_by(Experiment.name, Variant.name)
    )
    arms: dict[str, list[str]] = {}
    for experiment, variant in conn.execute(stmt):
        arms.setdefault(experiment, []).append(variant)
    return arms


def _check_store(engine: Engine) -> tuple[str | None, dict[str, list[str]]]:
    """The store's error (None when ``SELECT 1`` works) and the running experiments' arms."""
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
            try:
                return None, _running_arms(conn)
            except Exception:  # a schema problem must not fail the probe either
                return None, {}
    except Exception as exc:  # any failure means "unavailable"; the probe itself must answer
        return _first_line(exc), {}


def _unserved(pool: ModelPool, arms: Mapping[str, list[str]]) -> dict[str, str]:
    """Running experiments with no arm loaded here and some arm failed here, with reasons."""
    out: dict[str, str] = {}
    for experiment, names in arms.items():
        keys = [VariantKey(experiment, n) for n in names]
        if any(pool.get(k) is not None for k in keys):
            continue
        reasons = [f"{k.variant}: {pool.failure(k)}" for k in keys if pool.failure(k)]
        if reasons:
            out[experiment] = (
                f"No arm of running experiment {experiment!r} can serve on this replica; "
                + "; ".join(reasons)
            )
    return out


def check_health(
    engine: Engine,
    pool: ModelPool,
    *,
    snapshot_loaded: bool,
    lake_writers_healthy: Mapping[str, bool],
    shutting_down: bool = False,
) -> Health:
    """Check the store now and read the lake writers' and the model pool's state.

    Parameters
    ----------
    engine
        The SQL store's engine; one ``SELECT 1`` on a pooled connection.
    pool
        The loaded models and the variants whose model failed to load.
    snapshot_loaded
        Whether the serving snapshot (experiments, allocations) is in memory.
    lake_writers_healthy
        Table name → whether that table's writer is flushing.
    shutting_down
        Whether the replica received SIGTERM: not ready from then on, so a load balancer
        stops sending before the listener closes (:mod:`api.shutdown`).
    """
    store_error, running_arms = _check_store(engine)
    models = {
        f"{k.experiment}/{k.variant}": ModelHealth(provider=p, failed=None)
        for k, p in pool.providers().items()
    }
    for key, reason in pool.failures().items():
        models[f"{key.experiment}/{key.variant}"] = ModelHealth(provider=None, failed=reason)
    lake_tables: dict[str, PartStatus] = {
        table: "ok" if healthy else "failing" for table, healthy in lake_writers_healthy.items()
    }
    checks: dict[Part, PartStatus] = {
        "store": "ok" if store_error is None else "unavailable",
        "lake": "ok" if all(s == "ok" for s in lake_tables.values()) else "failing",
        "models": "ok" if all(m.failed is None for m in models.values()) else "failing",
    }
    return Health(
        ready=snapshot_loaded and not shutting_down,
        reason=SHUTTING_DOWN if shutting_down else None,
        checks=checks,
        degraded=[part for part, status in checks.items() if status != "ok"],
        store_error=store_error,
        lake_tables=lake_tables,
        models=models,
        unserved_experiments=_unserved(pool, running_arms),
    )
