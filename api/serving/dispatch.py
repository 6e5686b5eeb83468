"""How one row reaches a model: micro-batched or alone, on the event loop or in a thread.

A CPU model whose load-time run was fast enough runs ``inline`` (on the event loop: a thread
hop would cost more than the run); any other runs in a small thread pool so the loop
keeps serving. With ``microbatch`` on, concurrent rows for one variant share a call.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from numpy.typing import NDArray
from prometheus_client import Histogram

from api.metrics import Metrics
from api.serving.batcher import MicroBatcher, ModelOutput, split_output
from api.serving.pool import VariantKey
from api.serving.sessions import LoadedModel
from api.settings import Settings

__all__ = ["Dispatcher"]


class Dispatcher:
    """Runs a model on one row, as the settings and the model's load-time timing say."""

    def __init__(self, settings: Settings, metrics: Metrics) -> None:
        self._microbatch = settings.microbatch
        self._max_batch_size = settings.max_batch_size
        self._max_delay_us = settings.max_queue_delay_us
        self._metrics = metrics
        self._batchers: dict[VariantKey, tuple[LoadedModel, MicroBatcher]] = {}
        self._batch_sizes: dict[VariantKey, Histogram] = {}
        self._executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="onnx")

    async def run(
        self, key: VariantKey, model: LoadedModel, x: NDArray[np.floating]
    ) -> ModelOutput:
        """The model's output for the row ``x`` (shape ``[d]``); raises what the model raises."""
        if self._microbatch:
            return await self._batcher(key, model).submit(x)
        batch = x.reshape(1, -1).astype(model.input_dtype, copy=False)
        feed = {model.input_name: batch}
        if model.inline:
            out = model.session.run([model.output_name], feed)[0]
        else:
            loop = asyncio.get_running_loop()
            out = await loop.run_in_executor(
                self._executor, lambda: model.session.run([model.output_name], feed)[0]
            )
        self._batch_size(key).observe(1)
        return split_output(out)[0]

    async def close(self) -> None:
        for _, batcher in self._batchers.values():
            await batcher.close()
        self._executor.shutdown(wait=True)

    def _batch_size(self, key: VariantKey) -> Histogram:
        # Resolving a label child once per variant: ``labels()`` costs microseconds.
        found = self._batch_sizes.get(key)
        if found is None:
            found = self._metrics.batch_size.labels(key.experiment, key.variant)
            self._batch_sizes[key] = found
        return found

    def _batcher(self, key: VariantKey, model: LoadedModel) -> MicroBatcher:
        entry = self._batchers.get(key)
        # A variant reloaded under the same key (another worker's upload) gets a new batcher.
        if entry is not None and entry[0] is model:
            return entry[1]
        session, input_name, output_name = model.session, model.input_name, model.output_name

        def run(x: NDArray[np.floating]) -> NDArray[np.generic]:
            return np.asarray(session.run([output_name], {input_name: x})[0])

        batcher = MicroBatcher(
            run,
            dtype=model.input_dtype,
            executor=None if model.inline else self._executor,
            max_batch_size=self._max_batch_size,
            max_delay_us=self._max_delay_us,
            on_batch=self._batch_size(key).observe,
        )
        self._batchers[key] = (model, batcher)
        return batcher
