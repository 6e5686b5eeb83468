"""CPU cost of one predict through the whole ASGI app, in process, for two checkouts.

Each checkout (a directory holding this project, e.g. a ``git worktree`` of an older
commit) builds the app as ``serve`` does, with two arms over a 16-feature MLP, and sends
3,000 sequential predict requests straight to the ASGI app five times; the best CPU time
per request (``time.process_time``) is printed per run. Runs alternate between the
checkouts so both see the same machine; the last line is the ratio of the medians of the
best figures (second checkout / first).

    python benchmarks/predict_cpu.py OLD_CHECKOUT NEW_CHECKOUT [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

CHILD = r"""
import asyncio, json, os, sys, tempfile, time
from pathlib import Path
root = Path(sys.argv[1]); sys.path.insert(0, str(root)); os.chdir(root)
work = Path(tempfile.mkdtemp())
os.environ["BANDITLAKE_HOME"] = str(work / "home")
os.environ["BANDITLAKE_DEVICE"] = "cpu"
os.environ["BANDITLAKE_REALLOCATE"] = "false"
from api.settings import Settings
from api import app as app_mod
from api.store.migrate import upgrade
from tests.onnx_models import mlp_model
from fastapi.testclient import TestClient
import inspect
settings = Settings()
upgrade(settings.database_url)
# Commits before the GC tuning became serve's explicit step tuned it in every app.
tuned = "tune_gc" in inspect.signature(app_mod.create_app).parameters
kw = {"tune_gc": True} if tuned else {}
app = app_mod.create_app(settings, **kw)
D = 16
model = mlp_model(D)
body = json.dumps({"features": [0.1 * i for i in range(D)]}).encode()

async def call(path, payload, method="POST"):
    sent = []
    async def receive():
        return {"type": "http.request", "body": payload, "more_body": False}
    async def send(msg):
        sent.append(msg)
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
             "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"",
             "root_path": "", "headers": [(b"content-type", b"application/json"),
             (b"content-length", str(len(payload)).encode()), (b"host", b"127.0.0.1")],
             "client": ("127.0.0.1", 5000), "server": ("127.0.0.1", 8000), "state": {}, "app": app}
    await app(scope, receive, send)
    return sent[0]["status"]

async def main():
    # Set up through a TestClient (its own lifespan), then measure in a fresh lifespan.
    with TestClient(app) as c:
        c.post("/v1/experiments", json={"name": "bench", "reward": {"kind": "binary"}}).raise_for_status()
        for n in ("a", "b"):
            c.post("/v1/experiments/bench/variants", data={"name": n}, files={"model": ("m.onnx", model)}).raise_for_status()
        c.patch("/v1/experiments/bench", json={"status": "running"}).raise_for_status()
    async with app.router.lifespan_context(app):
        for _ in range(500):
            assert await call("/v1/experiments/bench/predict", body) == 200
        best = []
        for rep in range(5):
            n = 3000
            t = time.process_time()
            for _ in range(n):
                await call("/v1/experiments/bench/predict", body)
            best.append((time.process_time() - t) / n * 1e6)
        print(json.dumps({"us_per_request": sorted(best)}))

asyncio.run(main())
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkouts", nargs=2, type=Path)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    best: dict[Path, list[float]] = {c: [] for c in args.checkouts}
    for _ in range(args.rounds):
        for checkout in args.checkouts:
            run = subprocess.run(
                [sys.executable, "-c", CHILD, str(checkout.resolve())],
                capture_output=True,
                text=True,
                check=True,
            )
            figures = json.loads(run.stdout.strip().splitlines()[-1])["us_per_request"]
            best[checkout].append(min(figures))
            print(f"{checkout}: best {min(figures):.1f} us per request")
    old, new = (statistics.median(best[c]) for c in args.checkouts)
    print(f"new / old CPU per request: {new / old:.3f}")


if __name__ == "__main__":
    main()
