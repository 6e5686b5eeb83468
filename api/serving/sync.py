"""Bringing this process's model pool in line with the variants in the SQL store."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from api.serving.model_store import ModelFileError, ModelFileUnavailableError, ModelStore
from api.serving.pool import ModelPool, VariantKey
from api.store.models import Experiment, Variant

__all__ = ["load_stored", "sync_pool"]


def sync_pool(
    session: Session, pool: ModelPool, store: ModelStore, *, mark_failed: bool = False
) -> bool:
    """Load every enabled variant this process has no session for; ``True`` if any changed.

    Runs at start (``mark_failed``) and on every snapshot refresh, so a variant uploaded
    through another worker or replica starts serving here too, without a restart.

    A model file that is missing from the store, or a store that cannot be reached, is a
    failure of this replica only: the variant is recorded as failed in the pool (never in
    the SQL store, where it would stop every replica) and tried again on later refreshes,
    with a doubling delay (``store.retries``). So is a file fetched from object storage
    whose checksum is wrong, at start or later. At start (``mark_failed``) a model that
    ONNX Runtime refuses, or a bad file in a local store, is marked failed in the store,
    with the reason (every process would meet it); one refused on a refresh stays failed
    on this replica until it restarts.
    """
    stmt = select(Variant, Experiment).join(Experiment).where(Experiment.status != "stopped")
    changed = False
    store_down = False
    waiting: list[VariantKey] = []
    for variant, experiment in session.execute(stmt).all():
        key = VariantKey(experiment.name, variant.name)
        if variant.status == "disabled" or pool.get(key) is not None:
            continue
        if not mark_failed:
            if variant.status == "failed":
                continue
            if pool.failure(key) is not None and not store.retries.due(key):
                if store.retries.waiting(key):
                    waiting.append(key)
                continue
        try:
            load_stored(pool, experiment, variant, store, fetch=not store_down)
        except ModelFileUnavailableError as exc:
            # Fetch nothing more this round: every fetch would wait for the same timeout.
            store_down = store_down or exc.store_unreachable
            waiting.append(key)
            continue
        except ModelFileError:
            # A bad copy fetched from object storage is this replica's failure (the next
            # fetch may be good, another replica may hold a good one): failed here, with
            # the reason, never served here, retried. A bad file in a local store is the
            # one every process reads: at start it is marked failed in the store.
            waiting.append(key)
            if mark_failed and store.is_local:
                variant.status = "failed"
                variant.status_reason = pool.failure(key)
            continue
        except Exception:
            if mark_failed:
                variant.status = "failed"
                variant.status_reason = pool.failure(key)
            continue
        changed = True
        if mark_failed and variant.status == "failed":
            variant.status, variant.status_reason = "active", None
    store.retries.retain(waiting)
    return changed


def load_stored(
    pool: ModelPool,
    experiment: Experiment,
    variant: Variant,
    store: ModelStore,
    *,
    fetch: bool = True,
) -> None:
    """Load a stored variant's model file into the pool (raises when it does not load).

    The file is checked against the variant's checksum first; a file that is missing or
    bad is recorded as the variant's failure in the pool and scheduled for a retry.
    """
    key = VariantKey(experiment.name, variant.name)
    try:
        path = store.local_path(variant.model_sha256, fetch=fetch)
    except ModelFileError as exc:
        pool.fail(key, str(exc))
        store.retries.failed(key)
        raise
    store.retries.succeeded(key)
    pool.load(
        key,
        path,
        input_name=variant.input_name,
        output_name=variant.output_name,
        input_dim=variant.input_dim,
    )
