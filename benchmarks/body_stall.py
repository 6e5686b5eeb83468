"""How long a maximum-size batch predict holds up other clients' small predicts.

One banditlake server (pinned to CPU 0 when there are two or more cores) serves an
experiment of two 64-feature MLPs. A probe client sends single predicts one after the
other and records each latency; in alternating windows a second client sends batch
predicts of the largest allowed size (1024 rows with named features, about 1.8 MB of
JSON) back to back. The worst probe latency with the batches running, against the same
without them, is the stall the batches cause.

    python benchmarks/body_stall.py [--windows 6] [--seconds 4] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.serving import _free_port, _pin, _wait  # noqa: E402
from tests.onnx_models import mlp_model  # noqa: E402

D = 64
ROWS = 1024
NAMES = [f"feature_{i:02d}" for i in range(D)]
SMALL = json.dumps({"features": {n: 0.1 * i for i, n in enumerate(NAMES)}})
BIG = json.dumps(
    {
        "rows": [
            {"features": {n: round(0.123456789 * (i + r), 9) for i, n in enumerate(NAMES)}}
            for r in range(ROWS)
        ]
    }
)
HEADERS = {"content-type": "application/json"}


async def _window(base: str, seconds: float, *, heavy: bool) -> dict[str, float]:
    probe: list[float] = []
    batches: list[float] = []
    stop = time.perf_counter() + seconds
    url = f"{base}/v1/experiments/stall/predict"

    async def prober(client: httpx.AsyncClient) -> None:
        while time.perf_counter() < stop:
            t0 = time.perf_counter()
            r = await client.post(url, content=SMALL, headers=HEADERS)
            probe.append(time.perf_counter() - t0)
            r.raise_for_status()
            await asyncio.sleep(0.002)

    async def batcher(client: httpx.AsyncClient) -> None:
        while time.perf_counter() < stop:
            t0 = time.perf_counter()
            r = await client.post(url + "/batch", content=BIG, headers=HEADERS)
            batches.append(time.perf_counter() - t0)
            r.raise_for_status()

    async with httpx.AsyncClient(timeout=60) as a, httpx.AsyncClient(timeout=60) as b:
        await asyncio.gather(prober(a), *([batcher(b)] if heavy else []))
    return {
        "probe_max_ms": max(probe) * 1e3,
        "probe_p50_ms": statistics.median(probe) * 1e3,
        "probe_p99_ms": statistics.quantiles(probe, n=100)[98] * 1e3,
        "probe_count": len(probe),
        "batch_count": len(batches),
        "batch_p50_ms": statistics.median(batches) * 1e3 if batches else 0.0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--windows", type=int, default=6)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="banditlake-stall-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("BANDITLAKE_")}
    env |= {"BANDITLAKE_HOME": str(work / "home"), "BANDITLAKE_DEVICE": "cpu"}
    bin_dir = Path(sys.executable).parent
    subprocess.run([str(bin_dir / "banditlake"), "migrate"], env=env, check=True)
    port = _free_port()
    server = subprocess.Popen(
        [*_pin(0), str(bin_dir / "banditlake"), "serve", "--port", str(port)],
        env=env,
        stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        _wait(f"{base}/healthz", server)
        api = httpx.Client(base_url=base, timeout=60)
        api.post(
            "/v1/experiments", json={"name": "stall", "reward": {"kind": "binary"}}
        ).raise_for_status()
        for seed, name in enumerate(("a", "b")):
            api.post(
                "/v1/experiments/stall/variants",
                data={"name": name, "features": json.dumps(NAMES)},
                files={"model": ("m.onnx", mlp_model(D, seed=seed))},
            ).raise_for_status()
        api.patch("/v1/experiments/stall", json={"status": "running"}).raise_for_status()
        asyncio.run(_window(base, 1.0, heavy=True))  # warm-up
        quiet, loaded = [], []
        for i in range(args.windows):
            heavy = i % 2 == 1
            result = asyncio.run(_window(base, args.seconds, heavy=heavy))
            (loaded if heavy else quiet).append(result)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=120)

    summary = {
        "body_bytes": len(BIG),
        "rows": ROWS,
        "quiet_probe_max_ms": max(w["probe_max_ms"] for w in quiet),
        "loaded_probe_max_ms": max(w["probe_max_ms"] for w in loaded),
        "quiet_probe_p50_ms": statistics.median(w["probe_p50_ms"] for w in quiet),
        "loaded_probe_p50_ms": statistics.median(w["probe_p50_ms"] for w in loaded),
        "quiet_probe_p99_ms": statistics.median(w["probe_p99_ms"] for w in quiet),
        "loaded_probe_p99_ms": statistics.median(w["probe_p99_ms"] for w in loaded),
        "batches": sum(int(w["batch_count"]) for w in loaded),
        "batch_p50_ms": statistics.median(w["batch_p50_ms"] for w in loaded),
    }
    if args.json:
        print(json.dumps(summary))
        return
    print(
        f"max-size batch: {ROWS} rows, {len(BIG):,} bytes; {summary['batches']} batches served "
        f"(p50 {summary['batch_p50_ms']:.1f} ms each)"
    )
    print(
        f"small predicts, worst latency: {summary['loaded_probe_max_ms']:.1f} ms with batches, "
        f"{summary['quiet_probe_max_ms']:.1f} ms without; p50 "
        f"{summary['loaded_probe_p50_ms']:.2f} ms vs {summary['quiet_probe_p50_ms']:.2f} ms, p99 "
        f"{summary['loaded_probe_p99_ms']:.2f} ms vs {summary['quiet_probe_p99_ms']:.2f} ms"
    )


if __name__ == "__main__":
    main()
