"""Streaming inference (NATS JetStream) against the HTTP predict path, side by side.

One ``banditlake serve --stream-experiment bench ...`` process (pinned to CPU 0 when
there are two or more cores) serves both paths on the same model. The generator (this
process, on the other core) runs the same closed loop on each at the same concurrency:
C clients, each sending a request and waiting for its answer before the next. HTTP:
``POST /v1/experiments/bench/predict`` on C keep-alive connections (plain asyncio). Stream: a message published to the
request subject (core NATS, into the JetStream stream), its answer read off the reply
subject; the latency is publish -> answer received. Alternating windows after a
warm-up; prints messages/s and p50/p99 of each and the ratios (stream / HTTP), then
checks that every request of either path is in the lake exactly once.

    python benchmarks/streaming.py [--concurrency 32] [--windows 5] [--seconds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import httpx
import nats

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.serving import _free_port, _pin, _wait, setup_experiment  # noqa: E402
from tests.onnx_models import mlp_model  # noqa: E402

D = 16
FEATURES = [0.1 * i for i in range(D)]
NATS_URL = os.environ.get("BANDITLAKE_NATS_URL", "nats://127.0.0.1:4222")


@dataclass(frozen=True)
class Window:
    rps: float
    p50: float
    p99: float
    errors: int
    requests: int


def _window(latencies: list[float], elapsed: float, errors: int) -> Window:
    latencies.sort()
    q = statistics.quantiles(latencies, n=100)
    return Window(len(latencies) / elapsed, q[49], q[98], errors, len(latencies))


async def http_load(port: int, concurrency: int, seconds: float) -> Window:
    """C keep-alive connections, each a closed loop of predict calls.

    A plain asyncio HTTP/1.1 client rather than httpx: httpx's async pool collapsed at 32
    connections here (about 40 req/s, against 800-1,700 req/s for wrk on the same
    server), and the stream side's generator is a plain asyncio client too (nats-py).
    """
    latencies: list[float] = []
    errors = 0
    body = json.dumps({"features": FEATURES}).encode()
    request = (
        b"POST /v1/experiments/bench/predict HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    )
    stop = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal errors
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while time.perf_counter() < stop:
                t0 = time.perf_counter()
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                await reader.readexactly(length)
                latencies.append(time.perf_counter() - t0)
                errors += not head.startswith(b"HTTP/1.1 200")
        finally:
            writer.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return _window(latencies, time.perf_counter() - t0, errors)


class StreamClient:
    """Publishes requests with ids of its own and matches the answers by id."""

    def __init__(self, subject: str, replies: str) -> None:
        self.subject = subject
        self.replies = replies
        self.waiting: dict[str, asyncio.Future[int]] = {}
        self.ids = itertools.count()
        self.prefix = uuid.uuid4().hex[:8]

    async def __aenter__(self) -> StreamClient:
        self.nc = await nats.connect(NATS_URL)
        await self.nc.subscribe(self.replies, cb=self._on_answer)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.nc.close()

    async def _on_answer(self, msg: nats.aio.msg.Msg) -> None:
        headers = msg.headers or {}
        future = self.waiting.pop(headers.get("Banditlake-Request-Key", ""), None)
        if future is not None and not future.done():
            future.set_result(int(headers.get("Banditlake-Status", "0")))

    async def call(self) -> int:
        key = f"{self.prefix}-{next(self.ids)}"
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.waiting[key] = future
        body = json.dumps({"features": FEATURES, "request_id": key}).encode()
        await self.nc.publish(self.subject, body)
        return await asyncio.wait_for(future, 30)

    async def load(self, concurrency: int, seconds: float) -> Window:
        latencies: list[float] = []
        errors = 0
        stop = time.perf_counter() + seconds

        async def worker() -> None:
            nonlocal errors
            while time.perf_counter() < stop:
                t0 = time.perf_counter()
                status = await self.call()
                latencies.append(time.perf_counter() - t0)
                errors += status != 200

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return _window(latencies, time.perf_counter() - t0, errors)


def _metric(port: int, name: str) -> float:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    return sum(
        float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name + "{")
    )


async def _run(
    args: argparse.Namespace, port: int, subject: str, replies: str
) -> dict[str, list[Window]]:
    results: dict[str, list[Window]] = {"http": [], "stream": []}
    async with StreamClient(subject, replies) as stream:
        await http_load(port, args.concurrency, args.warmup)
        await stream.load(args.concurrency, args.warmup)
        for i in range(args.windows):
            # Alternate the order so drift on a shared machine hits both sides alike.
            order = ["http", "stream"] if i % 2 == 0 else ["stream", "http"]
            for name in order:
                if name == "http":
                    results[name].append(await http_load(port, args.concurrency, args.seconds))
                else:
                    results[name].append(await stream.load(args.concurrency, args.seconds))
    return results


async def _delete_stream(name: str) -> None:
    nc = await nats.connect(NATS_URL)
    try:
        await nc.jetstream().delete_stream(name)
    finally:
        await nc.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--windows", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--durable", action="store_true", help="BANDITLAKE_LAKE_DURABLE=true")
    parser.add_argument("--json", action="store_true", help="print one JSON object at the end")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="banditlake-bench-stream-"))
    home = work / "home"
    model = mlp_model(D)
    tag = uuid.uuid4().hex[:8]
    subject, replies, stream_name = f"bench{tag}.predict", f"bench{tag}.replies", f"BENCH_{tag}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("BANDITLAKE_")}
    env |= {
        "BANDITLAKE_HOME": str(home),
        "BANDITLAKE_DEVICE": "cpu",
        "BANDITLAKE_LAKE_DURABLE": "true" if args.durable else "false",
        "BANDITLAKE_NATS_URL": NATS_URL,
        "PYTHONPATH": str(ROOT),
    }
    banditlake = str(Path(sys.executable).parent / "banditlake")
    port = _free_port()
    # The experiment must exist before a consumer starts: set it up through a first run.
    setup = subprocess.Popen(
        [banditlake, "serve", "--port", str(port)], env=env, stderr=subprocess.PIPE
    )
    try:
        _wait(f"http://127.0.0.1:{port}/healthz", setup)
        setup_experiment(f"http://127.0.0.1:{port}", model)
    finally:
        setup.send_signal(signal.SIGTERM)
        setup.wait(timeout=120)
    service = subprocess.Popen(
        [*_pin(0), banditlake, "serve", "--port", str(port),
         "--stream-experiment", "bench", "--stream-subject", subject,
         "--stream-reply-subject", replies, "--stream-name", stream_name,
         "--stream-max-in-flight", str(max(256, args.concurrency))],
        env=env, stderr=subprocess.PIPE,
    )  # fmt: skip
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) >= 2:
        os.sched_setaffinity(0, {1})
    try:
        _wait(f"http://127.0.0.1:{port}/healthz", service)
        results = asyncio.run(_run(args, port, subject, replies))
        served = _metric(port, "banditlake_requests_total")
        streamed = _metric(port, "banditlake_stream_messages_total")
    finally:
        service.send_signal(signal.SIGTERM)
        code = service.wait(timeout=120)
        asyncio.run(_delete_stream(stream_name))

    from lake import locate_lake, open_lake

    where = locate_lake({"BANDITLAKE_HOME": str(home)})
    with open_lake(where.database_url, where.lake_root) as lake:
        counts = dict(
            lake.duckdb()
            .execute(
                "select mode, count(*) from predictions where experiment = 'bench' group by mode"
            )
            .fetchall()
        )
        distinct = (
            lake.duckdb()
            .execute("select count(distinct request_id) from predictions")
            .fetchone()[0]
        )

    def med(name: str, attr: str) -> float:
        return statistics.median(getattr(w, attr) for w in results[name])

    summary = {
        "concurrency": args.concurrency,
        "windows": args.windows,
        "seconds": args.seconds,
        "durable": args.durable,
        "http": {
            "rps": med("http", "rps"),
            "p50_ms": med("http", "p50") * 1e3,
            "p99_ms": med("http", "p99") * 1e3,
        },
        "stream": {
            "rps": med("stream", "rps"),
            "p50_ms": med("stream", "p50") * 1e3,
            "p99_ms": med("stream", "p99") * 1e3,
        },
        "throughput_ratio": med("stream", "rps") / med("http", "rps"),
        "p50_ratio": med("stream", "p50") / med("http", "p50"),
        "p99_ratio": med("stream", "p99") / med("http", "p99"),
        "errors": sum(w.errors for ws in results.values() for w in ws),
        "served": served,
        "streamed": streamed,
        "lake_rows": counts,
        "lake_distinct_ids": distinct,
        "all_in_lake_once": sum(counts.values()) == served == distinct,
        "exit_code": code,
    }
    if args.json:
        print(json.dumps(summary))
        return
    print(
        f"concurrency {args.concurrency}, {args.windows} windows of {args.seconds}s, durable {args.durable}"
    )
    for name in ("http", "stream"):
        s = summary[name]
        per = ", ".join(f"{w.rps:.0f}" for w in results[name])
        print(
            f"{name:>7}: {s['rps']:8.0f} req/s  p50 {s['p50_ms']:6.2f} ms  p99 {s['p99_ms']:6.2f} ms  (windows: {per})"
        )
    print(
        f"stream / http: throughput {summary['throughput_ratio']:.3f}  p50 {summary['p50_ratio']:.3f}  p99 {summary['p99_ratio']:.3f}"
    )
    print(
        f"served {served:.0f} predictions ({streamed:.0f} stream messages); lake rows by mode {counts}, "
        f"{distinct} distinct ids ({'all in the lake once' if summary['all_in_lake_once'] else 'NOT all in the lake once'}); "
        f"{summary['errors']} errors; serve exited {code}"
    )


if __name__ == "__main__":
    main()
