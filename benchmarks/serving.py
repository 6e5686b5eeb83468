"""banditlake's predict endpoint against a bare FastAPI + ONNX Runtime endpoint.

Both servers run side by side on this machine (pinned to CPU 0 when there are two or
more cores), each loaded in turn by the same generator (wrk on the other core when
installed, else an asyncio httpx client) at a fixed concurrency, after a warm-up, over
several alternating windows. Prints the throughput ratio and the p50/p99 latency
ratios (banditlake / bare), then checks that every request banditlake served is in the
lake.

    python benchmarks/serving.py [--concurrency 32] [--windows 5] [--seconds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.onnx_models import mlp_model  # noqa: E402

D = 16
BODY = json.dumps({"features": [0.1 * i for i in range(D)]})
WRK_SCRIPT = """
wrk.method = "POST"
wrk.body = [[%s]]
wrk.headers["Content-Type"] = "application/json"
done = function(summary, latency, requests)
  io.write(string.format('{"requests": %%d, "seconds": %%f, "p50": %%f, "p99": %%f, "errors": %%d}\\n',
    summary.requests, summary.duration / 1e6, latency:percentile(50) / 1e6,
    latency:percentile(99) / 1e6,
    summary.errors.status + summary.errors.connect + summary.errors.read + summary.errors.timeout))
end
"""


@dataclass(frozen=True)
class Window:
    rps: float
    p50: float
    p99: float
    errors: int
    requests: int


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _pin(cpu: int) -> list[str]:
    if shutil.which("taskset") and (os.cpu_count() or 1) >= 2:
        return ["taskset", "-c", str(cpu)]
    return []


def _wait(url: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited: {proc.stderr.read().decode() if proc.stderr else ''}")
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"{url} did not come up")


def _run_wrk(url: str, concurrency: int, seconds: float, script: Path) -> Window:
    cmd = [
        *_pin(1),
        "wrk",
        "-t1",
        f"-c{concurrency}",
        f"-d{max(1, round(seconds))}s",
        "-s",
        str(script),
        url,
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    data = json.loads(out.strip().splitlines()[-1])
    return Window(
        data["requests"] / data["seconds"],
        data["p50"],
        data["p99"],
        data["errors"],
        data["requests"],
    )


async def _httpx_load(url: str, concurrency: int, seconds: float) -> Window:
    latencies: list[float] = []
    errors = 0
    stop = time.perf_counter() + seconds

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal errors
        while time.perf_counter() < stop:
            t0 = time.perf_counter()
            r = await client.post(url, content=BODY, headers={"content-type": "application/json"})
            latencies.append(time.perf_counter() - t0)
            errors += r.status_code != 200

    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=30) as client:
        t0 = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
        elapsed = time.perf_counter() - t0
    latencies.sort()
    q = statistics.quantiles(latencies, n=100)
    return Window(len(latencies) / elapsed, q[49], q[98], errors, len(latencies))


def load(url: str, concurrency: int, seconds: float, script: Path | None) -> Window:
    if script is not None:
        return _run_wrk(url, concurrency, seconds, script)
    return asyncio.run(_httpx_load(url, concurrency, seconds))


def setup_experiment(url: str, model: bytes, name: str = "bench") -> None:
    """A running binary-reward experiment ``name`` with variants a and b on ``model``."""
    with httpx.Client(base_url=url, timeout=30) as api:
        api.post(
            "/v1/experiments", json={"name": name, "reward": {"kind": "binary"}}
        ).raise_for_status()
        for variant in ("a", "b"):
            api.post(
                f"/v1/experiments/{name}/variants",
                data={"name": variant},
                files={"model": ("m.onnx", model)},
            ).raise_for_status()
        api.patch(f"/v1/experiments/{name}", json={"status": "running"}).raise_for_status()


def _metric(port: int, name: str) -> float:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    return sum(
        float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name + "{")
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--windows", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda", "auto"])
    parser.add_argument("--microbatch", default="true", choices=["true", "false"])
    parser.add_argument("--json", action="store_true", help="print one JSON object at the end")
    parser.add_argument(
        "--set", action="append", default=[], metavar="NAME=VALUE",
        help="extra BANDITLAKE_* setting for the banditlake server (repeatable)",
    )  # fmt: skip
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="banditlake-bench-"))
    home = work / "home"
    model_path = work / "mlp.onnx"
    model_path.write_bytes(mlp_model(D))
    env = {k: v for k, v in os.environ.items() if not k.startswith("BANDITLAKE_")}
    env |= {
        "BANDITLAKE_HOME": str(home),
        "BANDITLAKE_DEVICE": args.device,
        "BANDITLAKE_MICROBATCH": args.microbatch,
        "BARE_MODEL": str(model_path),
        "BARE_PROVIDERS": "CUDAExecutionProvider,CPUExecutionProvider"
        if args.device != "cpu"
        else "CPUExecutionProvider",
        "PYTHONPATH": str(ROOT),
    }
    service_env = env | dict(item.split("=", 1) for item in args.set)
    bin_dir = Path(sys.executable).parent
    subprocess.run(
        [str(bin_dir / "banditlake"), "migrate"], env=env, check=True, capture_output=True
    )
    bare_port, bl_port = _free_port(), _free_port()
    bare = subprocess.Popen(
        [*_pin(0), str(bin_dir / "uvicorn"), "--factory", "benchmarks.bare_app:create_bare_app",
         "--port", str(bare_port), "--log-level", "warning", "--no-access-log"],
        env=env, cwd=ROOT, stderr=subprocess.PIPE,
    )  # fmt: skip
    service = subprocess.Popen(
        [*_pin(0), str(bin_dir / "banditlake"), "serve", "--port", str(bl_port)],
        env=service_env, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        _wait(f"http://127.0.0.1:{bare_port}/docs", bare)
        _wait(f"http://127.0.0.1:{bl_port}/healthz", service)
        setup_experiment(f"http://127.0.0.1:{bl_port}", model_path.read_bytes())
        api = httpx.Client(base_url=f"http://127.0.0.1:{bl_port}", timeout=30)
        provider = api.get("/v1/experiments/bench/variants").json()[0]["provider"]

        urls = {
            "bare": f"http://127.0.0.1:{bare_port}/predict",
            "banditlake": f"http://127.0.0.1:{bl_port}/v1/experiments/bench/predict",
        }
        script = None
        if shutil.which("wrk"):
            script = work / "post.lua"
            script.write_text(WRK_SCRIPT % BODY)
        for url in urls.values():
            load(url, args.concurrency, args.warmup, script)
        results: dict[str, list[Window]] = {"bare": [], "banditlake": []}
        for i in range(args.windows):
            # Alternate the order so drift on a shared machine hits both sides alike.
            order = ["bare", "banditlake"] if i % 2 == 0 else ["banditlake", "bare"]
            for name in order:
                results[name].append(load(urls[name], args.concurrency, args.seconds, script))

        served = _metric(bl_port, "banditlake_requests_total")
    finally:
        for proc in (bare, service):
            proc.send_signal(signal.SIGTERM)
        for proc in (bare, service):
            proc.wait(timeout=120)

    from lake import locate_lake, open_lake

    where = locate_lake({"BANDITLAKE_HOME": str(home)})
    with open_lake(where.database_url, where.lake_root) as lake:
        lake_rows = lake.duckdb().execute("select count(*) from predictions").fetchone()[0]

    def med(name: str, attr: str) -> float:
        return statistics.median(getattr(w, attr) for w in results[name])

    summary = {
        "generator": "wrk" if script else "httpx",
        "concurrency": args.concurrency,
        "windows": args.windows,
        "seconds": args.seconds,
        "provider": provider,
        "microbatch": args.microbatch == "true",
        "bare": {
            "rps": med("bare", "rps"),
            "p50_ms": med("bare", "p50") * 1e3,
            "p99_ms": med("bare", "p99") * 1e3,
        },
        "banditlake": {
            "rps": med("banditlake", "rps"),
            "p50_ms": med("banditlake", "p50") * 1e3,
            "p99_ms": med("banditlake", "p99") * 1e3,
        },
        "throughput_ratio": med("banditlake", "rps") / med("bare", "rps"),
        "p50_ratio": med("banditlake", "p50") / med("bare", "p50"),
        "p99_ratio": med("banditlake", "p99") / med("bare", "p99"),
        "errors": sum(w.errors for ws in results.values() for w in ws),
        "served": served,
        "lake_rows": lake_rows,
        "all_in_lake": lake_rows == served,
    }
    if args.json:
        print(json.dumps(summary))
        return
    print(
        f"generator {summary['generator']}, concurrency {args.concurrency}, {args.windows} windows of {args.seconds}s, provider {provider}"
    )
    for name in ("bare", "banditlake"):
        s = summary[name]
        per = ", ".join(f"{w.rps:.0f}" for w in results[name])
        print(
            f"{name:>11}: {s['rps']:8.0f} req/s  p50 {s['p50_ms']:6.2f} ms  p99 {s['p99_ms']:6.2f} ms  (windows: {per})"
        )
    print(
        f"throughput ratio {summary['throughput_ratio']:.3f}  p50 ratio {summary['p50_ratio']:.3f}  p99 ratio {summary['p99_ratio']:.3f}"
    )
    print(
        f"banditlake served {served:.0f} predictions; {lake_rows} rows in the lake ({'all' if summary['all_in_lake'] else 'NOT all'} landed); {summary['errors']} errors"
    )


if __name__ == "__main__":
    main()
