"""Micro-batching: concurrent requests to one variant share one ONNX Runtime call."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

__all__ = ["MicroBatcher", "ModelOutput", "split_output"]

log = logging.getLogger(__name__)


class Stoppable(Protocol):
    """Run options a running call watches: ONNX Runtime's ``RunOptions``."""

    terminate: bool


# The batch, and the options its call watches (``None`` for a call on the event loop).
Runner = Callable[[NDArray[np.floating], Stoppable | None], NDArray[np.generic]]
_Item = tuple[NDArray[np.floating], "asyncio.Future[ModelOutput]"]


@dataclass(frozen=True, slots=True)
class ModelOutput:
    prediction: float
    scores: list[float] | None


def split_output(out: NDArray[np.generic]) -> list[ModelOutput]:
    """Turn a model output of shape ``[N]``, ``[N, 1]`` or ``[N, k]`` into one value per row.

    A column vector is the prediction itself (a regression value or a class label); a
    ``[N, k]`` output is read as scores, and the prediction is the index of the largest.
    """
    arr = np.asarray(out)
    if arr.ndim == 1 or (arr.ndim == 2 and arr.shape[1] == 1):
        return [ModelOutput(float(v), None) for v in arr.reshape(-1).tolist()]
    flat = arr.reshape(arr.shape[0], -1).astype(np.float64)
    best = flat.argmax(axis=1).tolist()
    return [ModelOutput(float(b), row) for b, row in zip(best, flat.tolist(), strict=True)]


class MicroBatcher:
    """Gathers rows for one variant and runs them together.

    A single consumer task takes the first waiting row, then every row that arrived while
    the previous call ran (up to ``max_batch_size``), and, if the batch is still short,
    waits at most ``max_delay_us`` for more (default 0: no timed wait, which on a CPU
    would only add latency). Under light load a row waits for one turn of the event loop;
    under heavy load batches form by themselves while the model is busy.
    """

    def __init__(
        self,
        runner: Runner,
        *,
        dtype: type[np.floating],
        executor: Executor | None,
        max_batch_size: int,
        max_delay_us: int,
        on_batch: Callable[[int], None] | None = None,
        run_options: Callable[[], Stoppable] | None = None,
    ) -> None:
        self._runner = runner
        self._dtype = dtype
        self._executor = executor
        self._max = max_batch_size
        self._delay = max_delay_us / 1e6
        self._on_batch = on_batch
        self._run_options = run_options
        self._queue: asyncio.Queue[_Item] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    async def submit(self, row: NDArray[np.floating]) -> ModelOutput:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._consume())
        future: asyncio.Future[ModelOutput] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((row, future))
        return await future

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _consume(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self._queue.get()]
            if self._queue.empty():
                # One turn of the event loop lets requests parsed in the same turn join.
                await asyncio.sleep(0)
            while len(batch) < self._max and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            if len(batch) < self._max and self._delay > 0:
                deadline = time.perf_counter() + self._delay
                while len(batch) < self._max:
                    remaining = deadline - time.perf_counter()
                    if remaining <= 0:
                        break
                    try:
                        batch.append(await asyncio.wait_for(self._queue.get(), remaining))
                    except TimeoutError:
                        break
            live = [(row, fut) for row, fut in batch if not fut.done()]
            if not live:
                continue
            try:
                await self._execute(loop, live)
            except Exception:
                if len(live) == 1:
                    continue  # its future already holds the error
                # One bad row must not fail its neighbours: rerun the rows one by one (those
                # still awaited: a stopped run failed because its callers timed out).
                for item in live:
                    if item[1].done():
                        continue
                    with contextlib.suppress(Exception):
                        await self._execute(loop, [item])

    async def _execute(self, loop: asyncio.AbstractEventLoop, live: list[_Item]) -> None:
        x = np.stack([row for row, _ in live]).astype(self._dtype, copy=False)
        try:
            if self._executor is None:
                out = self._runner(x, None)  # cheap CPU models: a thread hop would cost more
            else:
                out = await self._in_thread(loop, live, x)
            results = split_output(out)
            if len(results) != len(live):
                msg = f"The model returned {len(results)} rows for a batch of {len(live)}."
                raise ValueError(msg)
        except Exception as exc:
            if len(live) == 1 and not live[0][1].done():
                live[0][1].set_exception(exc)
            raise
        if self._on_batch is not None:
            self._on_batch(len(live))
        for (_, fut), result in zip(live, results, strict=True):
            if not fut.done():
                fut.set_result(result)

    async def _in_thread(
        self, loop: asyncio.AbstractEventLoop, live: list[_Item], x: NDArray[np.floating]
    ) -> NDArray[np.generic]:
        if self._run_options is None:
            return await loop.run_in_executor(self._executor, self._runner, x, None)
        options = self._run_options()
        waiting = len(live)

        def gone(_: object) -> None:
            # Once every caller of the batch has stopped waiting (timed out), the run has
            # no one to answer: stop it and free the thread for the next batch.
            nonlocal waiting
            waiting -= 1
            if waiting == 0:
                options.terminate = True

        for _, fut in live:
            fut.add_done_callback(gone)
        try:
            return await loop.run_in_executor(self._executor, self._runner, x, options)
        except asyncio.CancelledError:
            options.terminate = True  # the batcher is closing
            raise
