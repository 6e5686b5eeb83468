"""The model pool: one ONNX Runtime session per loaded variant."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path

from api.serving.sessions import Device, LoadedModel, load_model, provider_reason

__all__ = ["ModelPool", "VariantKey"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class VariantKey:
    experiment: str
    variant: str


class ModelPool:
    """Sessions by variant, plus the reason a variant failed to load.

    Loading happens at start and on upload (from worker threads); the request path only
    reads the dictionary, which is replaced rather than mutated in place.
    """

    def __init__(self, *, device: Device, threads: int) -> None:
        self._device = device
        self._threads = threads
        self._models: dict[VariantKey, LoadedModel] = {}
        self._failures: dict[VariantKey, str] = {}
        self._lock = threading.Lock()

    def load(
        self,
        key: VariantKey,
        path: Path,
        *,
        input_name: str,
        output_name: str,
        input_dim: int,
    ) -> LoadedModel:
        """Load (or reload) one variant; raise on failure after recording the reason."""
        try:
            model = load_model(
                path,
                input_name=input_name,
                output_name=output_name,
                input_dim=input_dim,
                device=self._device,
                threads=self._threads,
            )
        except Exception as exc:
            reason = f"{type(exc).__name__}: {exc}"[:1000]
            with self._lock:
                self._failures = {**self._failures, key: reason}
                self._models = {k: m for k, m in self._models.items() if k != key}
            log.warning("variant %s/%s failed to load: %s", key.experiment, key.variant, reason)
            raise
        with self._lock:
            self._models = {**self._models, key: model}
            self._failures = {k: r for k, r in self._failures.items() if k != key}
        log.info(
            "variant %s/%s on %s (%s)",
            key.experiment,
            key.variant,
            model.provider,
            provider_reason(self._device, model.provider),
        )
        return model

    def fail(self, key: VariantKey, reason: str) -> None:
        """Record that a variant cannot load here for a reason found before loading
        (its model file is missing or bad); it loses any session it had."""
        reason = reason[:1000]
        with self._lock:
            self._failures = {**self._failures, key: reason}
            self._models = {k: m for k, m in self._models.items() if k != key}
        log.warning("variant %s/%s cannot load: %s", key.experiment, key.variant, reason)

    def get(self, key: VariantKey) -> LoadedModel | None:
        return self._models.get(key)

    def failure(self, key: VariantKey) -> str | None:
        return self._failures.get(key)

    def provider(self, key: VariantKey) -> str | None:
        model = self._models.get(key)
        return model.provider if model else None

    def models(self) -> dict[VariantKey, LoadedModel]:
        return dict(self._models)

    def providers(self) -> dict[VariantKey, str]:
        return {k: m.provider for k, m in self._models.items()}

    def failures(self) -> dict[VariantKey, str]:
        return dict(self._failures)
