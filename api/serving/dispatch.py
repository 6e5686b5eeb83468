"""How one row reaches a model: micro-batched or alone, on the event loop or in a thread.

A CPU model whose load-time run was fast enough runs ``inline`` (on the event loop: a thread
hop would cost more than the run); any other runs in its variant's own small thread pool so
the loop keeps serving. With ``microbatch`` on, concurrent rows for one variant share a call.

Every threaded call has a deadline (``model_timeout_ms``): past it the caller gets
:class:`ModelTimeoutError` and ONNX Runtime is told to stop the run (``RunOptions.terminate``),
so an abandoned call gives its thread back within one operator instead of running on. An
inline call cannot be interrupted; it is inline because it took under half a millisecond
on the load-time input.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import onnxruntime as ort
from numpy.typing import NDArray
from prometheus_client import Histogram

from api.metrics import Metrics
from api.serving.batcher import MicroBatcher, ModelOutput, split_output
from api.serving.pool import VariantKey
from api.serving.sessions import LoadedModel
from api.settings import Settings

__all__ = ["Dispatcher", "ModelTimeoutError"]

# Threads per variant. One pool per variant, not one shared pool: with a shared pool of
# four, four slow variants (or one, with micro-batching off and four requests in flight)
# held every thread, and a fast threaded variant of another experiment waited behind them:
# 1.4 s (micro-batching on, four variants stuck at ~1.5 s each) and 3.3 s (off, one variant)
# on a 2-core machine. With a pool each, the same fast call took under 20 ms. A micro-batched
# variant runs one call at a time (its batcher waits for each), so one thread is all it can
# use; unbatched, a variant keeps the four concurrent calls the shared pool allowed it.
# Threads start on first use, so a variant that never runs in a thread costs none.
_THREADS_BATCHED = 1
_THREADS_UNBATCHED = 4
_ORT_FATAL_ONLY = 4


def _run_options() -> ort.RunOptions:
    options = ort.RunOptions()
    # A stopped run is the timeout's doing, already counted and logged as the request's
    # error; ONNX Runtime would also print it to stderr as a failed kernel.
    options.log_severity_level = _ORT_FATAL_ONLY
    return options


class ModelTimeoutError(TimeoutError):
    """A model call took longer than its timeout; the call was abandoned."""

    def __init__(self, timeout_ms: int) -> None:
        super().__init__(f"timed out: the model did not answer within {timeout_ms} ms")
        self.timeout_ms = timeout_ms


class Dispatcher:
    """Runs a model on one row, as the settings and the model's load-time timing say."""

    def __init__(self, settings: Settings, metrics: Metrics) -> None:
        self._microbatch = settings.microbatch
        self._max_batch_size = settings.max_batch_size
        self._max_delay_us = settings.max_queue_delay_us
        self._timeout_ms = settings.model_timeout_ms
        self._metrics = metrics
        self._batchers: dict[VariantKey, tuple[LoadedModel, MicroBatcher]] = {}
        self._batch_sizes: dict[VariantKey, Histogram] = {}
        self._executors: dict[VariantKey, ThreadPoolExecutor] = {}

    async def run(
        self, key: VariantKey, model: LoadedModel, x: NDArray[np.floating]
    ) -> ModelOutput:
        """The model's output for the row ``x`` (shape ``[d]``); raises what the model raises,
        or :class:`ModelTimeoutError` when the answer takes longer than the timeout."""
        if self._microbatch:
            call = self._batcher(key, model).submit(x)
        elif model.inline:
            # On the event loop: nothing can interrupt it, so it gets no timer either.
            return self._run_inline(key, model, x)
        else:
            call = self._run_threaded(key, model, x)
        try:
            async with asyncio.timeout(self._timeout_ms / 1000.0) as deadline:
                return await call
        except TimeoutError as exc:
            if deadline.expired():
                raise ModelTimeoutError(self._timeout_ms) from exc
            raise

    def _run_inline(
        self, key: VariantKey, model: LoadedModel, x: NDArray[np.floating]
    ) -> ModelOutput:
        batch = x.reshape(1, -1).astype(model.input_dtype, copy=False)
        out = model.session.run([model.output_name], {model.input_name: batch})[0]
        self._batch_size(key).observe(1)
        return split_output(out)[0]

    async def _run_threaded(
        self, key: VariantKey, model: LoadedModel, x: NDArray[np.floating]
    ) -> ModelOutput:
        batch = x.reshape(1, -1).astype(model.input_dtype, copy=False)
        feed = {model.input_name: batch}
        options = _run_options()
        loop = asyncio.get_running_loop()
        try:
            out = await loop.run_in_executor(
                self._executor(key),
                lambda: model.session.run([model.output_name], feed, options)[0],
            )
        except asyncio.CancelledError:
            # Timed out (or shut down): a queued call never starts, a running one stops.
            options.terminate = True
            raise
        self._batch_size(key).observe(1)
        return split_output(out)[0]

    async def close(self) -> None:
        for _, batcher in self._batchers.values():
            await batcher.close()
        for executor in self._executors.values():
            executor.shutdown(wait=True)

    def _executor(self, key: VariantKey) -> ThreadPoolExecutor:
        found = self._executors.get(key)
        if found is None:
            threads = _THREADS_BATCHED if self._microbatch else _THREADS_UNBATCHED
            name = f"onnx-{key.experiment}-{key.variant}"
            found = ThreadPoolExecutor(max_workers=threads, thread_name_prefix=name)
            self._executors[key] = found
        return found

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

        def run(x: NDArray[np.floating], options: ort.RunOptions | None) -> NDArray[np.generic]:
            return np.asarray(session.run([output_name], {input_name: x}, options)[0])

        batcher = MicroBatcher(
            run,
            dtype=model.input_dtype,
            executor=None if model.inline else self._executor(key),
            max_batch_size=self._max_batch_size,
            max_delay_us=self._max_delay_us,
            on_batch=self._batch_size(key).observe,
            run_options=_run_options,
        )
        self._batchers[key] = (model, batcher)
        return batcher
