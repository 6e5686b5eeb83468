"""The first start: ``--version``, help on every flag, ``/``, and a quiet, honest log.

``make run`` is ``banditlake migrate``, ``banditlake demo`` and ``banditlake serve``; the
last test runs the same commands as subprocesses and reads what a newcomer would see.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from api.cli import _parser
from api.serving.sessions import CPU, cuda_status, provider_reason

CLI = str(Path(sys.executable).with_name("banditlake"))
# ONNX Runtime's own log lines look like "2026-01-01 00:00:00.0 [E:onnxruntime:Default, ...".
ORT_LOG = re.compile(r"\[[EWF]:onnxruntime")
ANSI = "\x1b["


def _parsers(parser: argparse.ArgumentParser) -> list[tuple[str, argparse.ArgumentParser]]:
    found = [(parser.prog, parser)]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                found += _parsers(sub)
    return found


def test_version_prints_the_installed_version() -> None:
    result = subprocess.run([CLI, "--version"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"banditlake {importlib.metadata.version('banditlake')}"


def test_every_flag_of_every_command_has_help() -> None:
    missing = [
        f"{prog} {'/'.join(action.option_strings) or action.dest}"
        for prog, parser in _parsers(_parser())
        for action in parser._actions
        if not isinstance(action, argparse._SubParsersAction)
        and (not action.help or action.help == argparse.SUPPRESS)
    ]
    assert missing == []


def test_the_root_links_the_dashboard_and_the_docs(client: TestClient) -> None:
    response = client.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    for href in ("/dashboard", "/docs", "/redoc"):
        assert f'href="{href}"' in response.text
    assert "/" not in client.get("/openapi.json").json()["paths"]


def test_the_provider_reason_names_the_setting_or_the_missing_device() -> None:
    assert provider_reason("cpu", CPU) == "BANDITLAKE_DEVICE=cpu"
    status = cuda_status()
    if status.available:
        pytest.skip("this machine runs CUDA; the CPU fallback cannot be shown")
    assert provider_reason("auto", CPU) == status.reason
    assert status.reason.startswith(("no CUDA device", "this onnxruntime package"))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _serve_output(env: dict[str, str], port: int, cwd: Path) -> str:
    """Start ``banditlake serve``, wait for ``/`` to answer, stop it with Ctrl-C."""
    proc = subprocess.Popen(
        [CLI, "serve", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        cwd=cwd,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, proc.communicate()[0]
            try:
                if httpx.get(f"http://127.0.0.1:{port}/", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "serve did not answer within 120 s"
            time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        output, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return output


@pytest.mark.slow
def test_make_run_says_what_it_does_without_alembic_or_onnxruntime_noise(tmp_path: Path) -> None:
    # The defaults of `make run`: none of the caller's BANDITLAKE_* settings, and no .env.
    env = {k: v for k, v in os.environ.items() if not k.startswith("BANDITLAKE_")}
    env["BANDITLAKE_HOME"] = str(tmp_path / "home")
    port = _free_port()
    steps = [
        [CLI, "migrate"],
        [CLI, "demo", "--rows", "300", "--port", str(port)],
    ]
    outputs = []
    for step in steps:
        result = subprocess.run(
            step, capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path, check=False
        )
        assert result.returncode == 0, result.stdout + result.stderr
        outputs.append(result.stdout + result.stderr)
    outputs.append(_serve_output(env, port, tmp_path))
    text = "\n".join(outputs)

    assert [line for line in text.splitlines() if "alembic" in line.lower()] == []
    assert [line for line in text.splitlines() if ORT_LOG.search(line)] == []
    assert ANSI not in text
    # The demo ends with where to go next, and serve says it again at its start.
    for url in (f"http://127.0.0.1:{port}/dashboard", f"http://127.0.0.1:{port}/docs"):
        assert text.count(url) == 2
    assert str((tmp_path / "home").resolve()) in outputs[1]
    # One line per variant, naming the provider and why, said by serve once.
    serve = outputs[2]
    for variant in ("logreg", "naive-bayes", "tree-depth4"):
        (line,) = [ln for ln in serve.splitlines() if f"variant digits/{variant} on " in ln]
        assert re.search(r" on (CPU|CUDA)ExecutionProvider \(.+\)$", line), line


def test_next_steps_name_the_urls_and_the_data_without_credentials(tmp_path: Path) -> None:
    from api.next_steps import next_steps
    from tests.conftest import make_settings

    embedded = make_settings(tmp_path, f"sqlite:///{tmp_path / 'banditlake.db'}")
    assert next_steps(embedded, host="0.0.0.0", port=9000) == [
        "  dashboard  http://127.0.0.1:9000/dashboard",
        "  API docs   http://127.0.0.1:9000/docs",
        f"  data       {tmp_path.resolve()} (SQLite store, Parquet lake, model files)",
    ]
    remote = make_settings(tmp_path, "postgresql+psycopg://bl:s3cret@db.internal:5432/bl")
    (data,) = [line for line in next_steps(remote, host="::1", port=80) if "data" in line]
    assert "s3cret" not in data
    assert data.startswith("  data       store db.internal:5432/bl, lake ")
    assert "http://[::1]:80/docs" in next_steps(remote, host="::1", port=80)[1]
