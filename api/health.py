"""A replica's health: the open probe a load balancer reads, and the detail behind a token.

*Ready* means this replica can serve predictions: its experiment snapshot and the models
that loaded are in memory. Predict serves from them and buffers lake rows, so the SQL
store and the lake can fail without stopping it, and a model that failed to load stops
only its own variant: these are reported as *degraded* parts, never as "not ready". A
probe that failed on any of them would take every replica (all share one store, lake and
model files) out of the balancer at once and turn a partial outage into a full one.

Each part gets one coarse word: ``ok``; ``failing`` (lake: a writer cannot flush, so its
rows buffer and then drop; models: some variant's model failed to load); ``unavailable``
(store: ``SELECT 1`` did not succeed).

:class:`Probe` (``GET /readyz``, open) carries only those words. :class:`Health`
(``GET /v1/health``, metrics or admin token) adds what an operator needs: the store's
error, each lake table, and each model's provider or load failure.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

from pydantic import BaseModel
from sqlalchemy import Engine, text

from api.serving.pool import ModelPool

__all__ = ["Health", "ModelHealth", "Part", "PartStatus", "Probe", "check_health"]

Part = Literal["store", "lake", "models"]
PartStatus = Literal["ok", "failing", "unavailable"]


class Probe(BaseModel):
    ready: bool
    checks: dict[Part, PartStatus]
    degraded: list[Part]


class ModelHealth(BaseModel):
    provider: str | None
    failed: str | None


class Health(Probe):
    store_error: str | None
    lake_tables: dict[str, PartStatus]
    models: dict[str, ModelHealth]

    def probe(self) -> Probe:
        return Probe(ready=self.ready, checks=self.checks, degraded=self.degraded)


def _store_error(engine: Engine) -> str | None:
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:  # any failure means "unavailable"; the probe itself must answer
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        return f"{type(exc).__name__}: {first_line}".rstrip(": ")
    return None


def check_health(
    engine: Engine,
    pool: ModelPool,
    *,
    snapshot_loaded: bool,
    lake_writers_healthy: Mapping[str, bool],
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
    """
    store_error = _store_error(engine)
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
        ready=snapshot_loaded,
        checks=checks,
        degraded=[part for part, status in checks.items() if status != "ok"],
        store_error=store_error,
        lake_tables=lake_tables,
        models=models,
    )
