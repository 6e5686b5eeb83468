"""The README's walkthrough, run as written against a real ``banditlake serve``.

The commands come from README.md itself (the ``sh`` block between ``<!-- walkthrough -->``
and ``<!-- /walkthrough -->``), so the README cannot drift from what works. Only the
address changes: ``localhost:8000`` becomes the test server's free loopback port. The
commands run in order in one bash process (``RID=…`` must reach the next command), from
a fresh directory whose ``.venv`` is this interpreter's environment, as if it were the
repository root after ``make run``. Each command must exit 0, and a command the README
marks ``# → 201`` must print that HTTP status as its last line.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

README = Path(__file__).resolve().parents[2] / "README.md"
BEGIN, END = "<!-- walkthrough -->", "<!-- /walkthrough -->"
ADDRESS = "localhost:8000"
STATUS = re.compile(r"#\s*→\s*(\d{3})\s*$")


@dataclass(frozen=True)
class Command:
    text: str
    status: int | None


def _complete(text: str) -> bool:
    """Whether bash can parse ``text`` as it stands (no open quote, pipe or ``\\``)."""
    if text.rstrip().endswith("\\"):
        return False
    return subprocess.run(["bash", "-n", "-c", text], capture_output=True).returncode == 0


def walkthrough(readme: str) -> list[Command]:
    """The walkthrough's commands, each with the status its README comment promises."""
    assert readme.count(BEGIN) == 1 and readme.count(END) == 1, "walkthrough markers"
    section = readme[readme.index(BEGIN) : readme.index(END)]
    block = re.search(r"```sh\n(.*?)```", section, re.DOTALL)
    assert block is not None, "no ```sh block between the walkthrough markers"
    commands: list[Command] = []
    pending: list[str] = []
    for line in block.group(1).splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        pending.append(line)
        text = "\n".join(pending)
        if not _complete(text):
            continue
        found = STATUS.search(pending[-1])
        commands.append(Command(text, int(found.group(1)) if found else None))
        pending = []
    assert not pending, f"the walkthrough ends inside a command: {pending}"
    return commands


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class Server:
    port: int
    log: Path

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BANDITLAKE_", "PROMETHEUS_"))}
    env |= {
        "BANDITLAKE_HOME": str(tmp_path / "home"),
        "BANDITLAKE_DEVICE": "cpu",
        "BANDITLAKE_REALLOCATE": "true",
    }
    port = _free_port()
    log = tmp_path / "serve.log"
    cli = Path(sys.prefix) / "bin" / "banditlake"
    with log.open("wb") as sink:
        proc = subprocess.Popen(
            [str(cli), "serve", "--port", str(port)],
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    server = Server(port, log)
    try:
        deadline = time.monotonic() + 90
        while True:
            assert proc.poll() is None, log.read_text()
            try:
                if httpx.get(server.url("/readyz"), timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the server did not become ready\n" + (
                log.read_text()
            )
            time.sleep(0.2)
        yield server
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_the_walkthrough_is_parsed_with_a_status_for_every_curl() -> None:
    commands = walkthrough(README.read_text(encoding="utf-8"))
    curls = [c for c in commands if re.search(r"(^|\|\s*\n?)\s*curl ", c.text, re.MULTILINE)]
    assert len(curls) >= 9
    assert all(c.status is not None for c in curls), [c.text for c in curls if c.status is None]
    assert all(ADDRESS in c.text for c in curls)
    assert all(c.status is None for c in commands if "curl " not in c.text)
    # Every CLI call works from the repository root after make run, where banditlake
    # is not on PATH.
    cli = [c for c in commands if "banditlake " in c.text.split("#")[0]]
    assert cli and all(c.text.startswith(".venv/bin/banditlake ") for c in cli)


def test_the_readme_walkthrough_runs_verbatim(tmp_path: Path, server: Server) -> None:
    assert shutil.which("curl"), "the README's walkthrough needs curl"
    venv = Path(sys.prefix)
    assert (venv / "bin" / "banditlake").exists(), f"{venv} has no banditlake script"
    commands = walkthrough(README.read_text(encoding="utf-8"))
    work = tmp_path / "repo"
    work.mkdir()
    (work / ".venv").symlink_to(venv)
    script = ["set -o pipefail"]
    for i, command in enumerate(commands):
        text = command.text.replace(ADDRESS, f"127.0.0.1:{server.port}")
        script += [f"printf '\\n@@begin {i}\\n'", text, f"printf '\\n@@end {i} %s\\n' \"$?\""]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BANDITLAKE_", "VIRTUAL_ENV"))}
    # PATH without this venv: the walkthrough must reach the CLI through ./.venv itself.
    env["PATH"] = os.pathsep.join(
        p for p in env.get("PATH", "").split(os.pathsep) if Path(p) != venv / "bin"
    )
    result = subprocess.run(
        ["bash", "-c", "\n".join(script)],
        cwd=work,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=600,
    )
    sections = {
        int(m.group(1)): (m.group(2), int(m.group(3)))
        for m in re.finditer(r"@@begin (\d+)\n(.*?)\n@@end \1 (\d+)\n", result.stdout, re.DOTALL)
    }
    assert sorted(sections) == list(range(len(commands))), result.stdout[-4000:]
    for i, command in enumerate(commands):
        output, code = sections[i]
        where = f"README command {i + 1}:\n{command.text}\n--- output ---\n{output[-2000:]}"
        assert code == 0, where
        if command.status is not None:
            lines = [ln for ln in output.splitlines() if ln.strip()]
            assert lines and lines[-1].strip() == str(command.status), where

    # The bandit is at work: the reallocation moved traffic to the variant that earned
    # more and kept the default floor on the other.
    allocation = httpx.get(server.url("/v1/experiments/churn/allocation"), timeout=10).json()
    assert allocation["version"] >= 2, allocation
    weights = allocation["weights"]
    assert weights["gbm"] > 0.9 and weights["logreg"] >= 0.02 - 1e-9, allocation
    report = httpx.get(server.url("/v1/experiments/churn/report"), timeout=10).json()
    requests = {v["name"]: v["requests"] for v in report["variants"]}
    assert sum(requests.values()) == 401, report
    # The walkthrough cleans up after itself.
    assert sorted(p.name for p in work.iterdir()) == [".venv"]
