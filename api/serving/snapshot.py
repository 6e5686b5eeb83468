"""The experiment snapshot: rebuilt from the SQL store off the event loop, read per request.

The app refreshes it every ``allocation_refresh_ms`` (another process's change) and right
after a commit in this process (its own change). The request path only reads
:attr:`Snapshot.runtime`, an immutable :class:`~api.serving.runtime.Runtime` that a
refresh replaces whole.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload, sessionmaker

from api.control.allocation_versions import current_allocation
from api.metrics import Metrics
from api.serving.model_store import ModelStore
from api.serving.pool import ModelPool
from api.serving.redaction import compile_redaction
from api.serving.runtime import ExperimentRuntime, Runtime, VariantRuntime
from api.serving.sync import sync_pool
from api.store.models import AuditEvent, Experiment, Variant

__all__ = ["Snapshot", "build_runtime"]


class Snapshot:
    """The current :class:`Runtime`, and the refresh that replaces it."""

    def __init__(
        self,
        session_factory: sessionmaker[Session],
        pool: ModelPool,
        models: ModelStore,
        metrics: Metrics,
    ) -> None:
        self.runtime = Runtime.empty()
        self._session_factory = session_factory
        self._pool = pool
        self._models = models
        self._metrics = metrics
        self._token: int | None = None
        self._lock = threading.Lock()

    def refresh(self, *, force: bool = True) -> None:
        """Rebuild the snapshot from the SQL store (called off the event loop).

        Every change to experiments, variants and allocations writes an audit event, so
        the newest audit id is a change token: the periodic poll compares it (one cheap
        query) and rebuilds only when something changed, or when a variant whose model
        file was missing or bad on this replica is due to be tried again.
        """
        with self._lock, self._session_factory() as session:
            token = session.scalar(select(func.max(AuditEvent.id)))
            unchanged = not force and token == self._token
            if unchanged and not self._models.retries.any_due():
                return
            # A variant uploaded through another worker or replica gets its session here.
            loaded_more = sync_pool(session, self._pool, self._models)
            if unchanged and not loaded_more:
                return
            loaded = {
                (k.experiment, k.variant): np.dtype(m.input_dtype)
                for k, m in self._pool.models().items()
            }
            runtime = build_runtime(session, loaded)
            # Token and snapshot change together under the lock: a slower concurrent refresh
            # can never install an older snapshot under a newer token.
            self._token = token
            self.runtime = runtime
        for key, provider in self._pool.providers().items():
            self._metrics.provider.labels(key.experiment, key.variant, provider).set(1)


def _variant(v: Variant) -> VariantRuntime:
    return VariantRuntime(
        name=v.name,
        sha256=v.model_sha256,
        input_dim=v.input_dim,
        feature_names=tuple(v.feature_names),
    )


def build_runtime(session: Session, loaded: Mapping[tuple[str, str], np.dtype[Any]]) -> Runtime:
    """Snapshot every experiment; stopped ones too, so late feedback can still be checked.

    ``loaded`` maps the (experiment, variant) pairs with a live model session to their
    input dtype; a variant without one (failed to load) gets no traffic even if the stored
    allocation names it.
    """
    stmt = select(Experiment).options(selectinload(Experiment.variants))
    experiments: dict[str, ExperimentRuntime] = {}
    for exp in session.scalars(stmt):
        active = [v for v in exp.variants if v.status == "active" and (exp.name, v.name) in loaded]
        allocation = current_allocation(session, exp) if exp.status != "stopped" else None
        weights_by_name = dict(allocation.weights) if allocation else {}
        arms = [
            _variant(v) for v in active if v.role == "arm" and weights_by_name.get(v.name, 0) > 0
        ]
        weights = [float(weights_by_name[a.name]) for a in arms]
        total = sum(weights)
        weights = [w / total for w in weights] if total > 0 else []
        cumulative: list[float] = []
        running = 0.0
        for w in weights:
            running += w
            cumulative.append(running)
        shadows = tuple(_variant(v) for v in active if v.role == "shadow")
        everyone = [*arms, *shadows]
        names: dict[str, None] = {}
        for v in everyone:
            names.update(dict.fromkeys(v.feature_names))
        dims = {v.input_dim for v in everyone}
        limits = [
            float(np.finfo(loaded[(exp.name, v.name)]).max)
            for v in everyone
            if loaded[(exp.name, v.name)] != np.float64
        ]
        runtime = ExperimentRuntime(
            id=exp.id,
            name=exp.name,
            status=exp.status,
            reward_kind=exp.reward_kind,
            reward_metric=exp.reward_metric,
            sticky=exp.sticky,
            version=allocation.version if allocation else 0,
            arms=tuple(arms),
            weights=tuple(weights),
            cumulative=tuple(cumulative),
            shadows=shadows,
            feature_names=tuple(names),
            feature_set=frozenset(names),
            positional_dim=dims.pop() if len(dims) == 1 else None,
            feature_limit=min(limits) if limits else None,
            redaction=compile_redaction(exp.name, exp.redaction),
        )
        experiments[exp.name] = runtime
    return Runtime(experiments, {e.id: e for e in experiments.values()})
