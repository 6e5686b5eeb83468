"""The ``banditlake`` command: help, simulate, and one-sentence errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

CLI = str(Path(sys.executable).with_name("banditlake"))


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CLI, *args], capture_output=True, text=True, timeout=120, env=env or dict(os.environ)
    )


def test_help_lists_every_command() -> None:
    result = _run("--help")
    assert result.returncode == 0
    lines = result.stdout.splitlines()
    for command in ("serve", "migrate", "reallocator", "simulate", "demo"):
        i = next(i for i, ln in enumerate(lines) if ln.strip().split(None, 1)[:1] == [command])
        # argparse puts the description beside the name, or below a long name.
        description = lines[i].strip()[len(command) :].strip() or lines[i + 1].strip()
        assert len(description.split()) >= 3, f"{command} has no description"


def test_simulate_json_shape_and_uniform_regret() -> None:
    result = _run(
        "simulate", "--arms", "0.05,0.06,0.07", "--horizon", "20000", "--batch", "1000",
        "--policy", "fixed", "--seeds", "10", "--json",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    body = json.loads(result.stdout)
    # The documented keys (shared/API.md), then the rest of what the text output shows.
    assert set(body) == {"policy", "arms", "horizon", "batch", "seeds", "regret"} | {
        "reward",
        "min_weight",
        "share",
    }
    assert set(body["regret"]) == {"mean", "p5", "p50", "p95"}
    assert (body["reward"], body["min_weight"]) == ("bernoulli", 0.0)
    assert (body["policy"], body["horizon"], body["batch"], body["seeds"]) == (
        "fixed",
        20000,
        1000,
        10,
    )
    # Uniform traffic over gaps (0.02, 0.01, 0): expected pseudo-regret T * 0.01 = 200,
    # with a standard deviation of about 1.2 per seed.
    assert body["regret"]["mean"] == pytest.approx(200.0, abs=3.0)
    assert body["regret"]["p5"] <= body["regret"]["p50"] <= body["regret"]["p95"]


def test_simulate_json_holds_every_number_of_the_text_rounded() -> None:
    args = ("simulate", "--arms", "0.05,0.1,0.123456", "--horizon", "5000", "--seeds", "3")
    text = _run(*args)
    as_json = _run(*args, "--json")
    assert text.returncode == as_json.returncode == 0, text.stderr + as_json.stderr
    body = json.loads(as_json.stdout)
    lines = text.stdout.splitlines()
    assert "floor 0.02 per arm" in lines[0] and body["min_weight"] == 0.02
    assert body["arms"] == [0.05, 0.1, 0.1235]
    regret = dict(zip(lines[1].split()[1::2], map(float, lines[1].split()[2::2]), strict=True))
    share = dict(zip(lines[2].split()[4::2], map(float, lines[2].split()[5::2]), strict=True))
    assert set(regret) == set(body["regret"]) and set(share) == set(body["share"]) == {
        "arm0",
        "arm1",
        "arm2",
    }
    for key, value in regret.items():
        assert body["regret"][key] == pytest.approx(value, abs=0.05)
    for key, value in share.items():
        assert body["share"][key] == pytest.approx(value, abs=5e-4)
    assert sum(body["share"].values()) == pytest.approx(1.0, abs=1e-3)
    numbers = [*body["arms"], *body["regret"].values(), *body["share"].values()]
    assert all(float(f"{v:.4g}") == v for v in numbers), numbers


def test_thompson_beats_uniform_in_the_simulator() -> None:
    result = _run("simulate", "--arms", "0.05,0.10", "--horizon", "20000", "--seeds", "5", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["regret"]["mean"] < 0.2 * 20000 * 0.05


@pytest.mark.parametrize(
    ("args", "phrase"),
    [
        (("simulate", "--arms", "0.1,x"), "--arms must be comma-separated numbers"),
        (("simulate", "--arms", "0.1,2"), "Bernoulli arms need means in [0, 1]"),
        (("simulate", "--arms", "0.1,0.2", "--horizon", "0"), "horizon"),
    ],
)
def test_errors_are_one_sentence_without_traceback(args: tuple[str, ...], phrase: str) -> None:
    result = _run(*args)
    assert result.returncode == 2
    assert phrase in result.stderr
    assert "Traceback" not in result.stderr


def test_invalid_setting_is_one_sentence(tmp_path: Path) -> None:
    env = {**os.environ, "BANDITLAKE_HOME": str(tmp_path), "BANDITLAKE_DEVICE": "tpu"}
    result = _run("migrate", env=env)
    assert result.returncode == 2
    assert "BANDITLAKE_DEVICE" in result.stderr
    assert "Traceback" not in result.stderr
