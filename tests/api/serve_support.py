"""``banditlake serve`` as a real process, for the shutdown and rolling-restart tests."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.onnx_models import linear_model

CLI = str(Path(sys.executable).with_name("banditlake"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def serve_environment(home: Path, extra: Mapping[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BANDITLAKE_", "PROMETHEUS_"))}
    return env | {"BANDITLAKE_HOME": str(home), "BANDITLAKE_DEVICE": "cpu"} | dict(extra)


@dataclass
class Served:
    proc: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)


def start_serve(
    home: Path,
    env: Mapping[str, str],
    *,
    port: int | None = None,
    args: Sequence[str] = (),
    log: Path | None = None,
) -> Served:
    """Start ``banditlake serve`` and wait until ``/readyz`` answers 200."""
    home.mkdir(parents=True, exist_ok=True)
    port = free_port() if port is None else port
    log = home.parent / f"{home.name}-{port}-{time.monotonic_ns()}.log" if log is None else log
    with log.open("wb") as sink:
        proc = subprocess.Popen(
            [CLI, "serve", "--port", str(port), *args],
            env=serve_environment(home, env),
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    served = Served(proc, port, log)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        assert proc.poll() is None, served.output()
        try:
            if httpx.get(f"{served.url}/readyz", timeout=1).status_code == 200:
                return served
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    served.stop()
    raise AssertionError(f"serve on port {port} did not become ready:\n{served.output()}")


def running_experiment(url: str, name: str = "e") -> None:
    """An experiment with two linear arms (three features), running."""
    with httpx.Client(base_url=url, timeout=30) as http:
        r = http.post("/v1/experiments", json={"name": name, "reward": {"kind": "binary"}})
        assert r.status_code == 201, r.text
        for variant, weights in (("a", [1.0, 2.0, 3.0]), ("b", [-1.0, 0.5, 2.0])):
            r = http.post(
                f"/v1/experiments/{name}/variants",
                data={"name": variant},
                files={"model": (f"{variant}.onnx", linear_model(weights, 0.0))},
            )
            assert r.status_code == 201, r.text
        r = http.patch(f"/v1/experiments/{name}", json={"status": "running"})
        assert r.status_code == 200, r.text


@contextmanager
def unwritable(directory: Path) -> Iterator[None]:
    """Make a local lake directory unwritable for real while a server runs, then repair it.

    As a normal user, every directory in it loses its write bits; root ignores those, so
    as root the directory is moved away and a plain file takes its place.
    """
    if os.geteuid() == 0:
        parked = directory.with_name(directory.name + ".parked")
        directory.rename(parked)
        directory.write_bytes(b"not a directory\n")
        try:
            yield
        finally:
            directory.unlink()
            parked.rename(directory)
        return
    directories = [directory, *(p for p in directory.rglob("*") if p.is_dir())]
    for path in directories:
        path.chmod(0o555)
    try:
        yield
    finally:
        for path in directories:
            path.chmod(0o755)
