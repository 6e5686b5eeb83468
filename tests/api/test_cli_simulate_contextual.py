"""``banditlake simulate --contextual``: a supervised file replayed as a bandit, and its errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from api.cli import main

CLI = str(Path(sys.executable).with_name("banditlake"))
PIXELS = [f"p{i}" for i in range(64)]


def _digits_table(rows: int = 600) -> pa.Table:
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    columns = {name: x[:rows, i] for i, name in enumerate(PIXELS)}
    return pa.table({**columns, "digit": y[:rows]})


@pytest.fixture(scope="module")
def digits_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("digits") / "digits.csv"
    pacsv.write_csv(_digits_table(), path)
    return path


def test_digits_replay_as_json_through_the_installed_command(digits_csv: Path) -> None:
    result = subprocess.run(
        [
            CLI, "simulate", "--contextual", "--data", str(digits_csv), "--features",
            ",".join(PIXELS), "--label", "digit", "--policy", "lints,thompson,random",
            "--seeds", "3", "--json",
        ],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    body = json.loads(result.stdout)
    assert body["rounds"] == 600
    assert body["arms"] == [str(d) for d in range(10)]
    assert body["seeds"] == 3
    assert body["batch"] == 100
    figures = body["policies"]
    assert set(figures) == {"lints", "thompson", "random"}
    for row in figures.values():
        # The best per-context choice is always the label: regret = rounds - reward.
        assert row["regret_context"]["mean"] == pytest.approx(
            600 - row["cumulative_reward"]["mean"]
        )
        assert row["average_reward"] == pytest.approx(row["cumulative_reward"]["mean"] / 600)
    assert figures["lints"]["average_reward"] > figures["random"]["average_reward"] + 0.3
    assert figures["lints"]["average_reward"] > figures["thompson"]["average_reward"] + 0.3
    # LinTS beats every fixed arm in hindsight (one class is right about 10% of the time).
    assert figures["lints"]["regret_fixed"]["mean"] < -200


def test_parquet_text_output_names_each_policy(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 2))
    label = np.where(x[:, 0] > x[:, 1], "left", "right")
    path = tmp_path / "two.parquet"
    pq.write_table(pa.table({"a": x[:, 0], "b": x[:, 1], "side": label}), path)
    args = ["simulate", "--contextual", "--data", str(path), "--features", "a,b"]
    code = main([*args, "--label", "side", "--policy", "linucb,random", "--seeds", "2"])
    out = capsys.readouterr().out
    assert code == 0
    assert "400 rounds, 2 arms (classes of 'side'), 2 features" in out
    lines = out.splitlines()
    assert [line.split()[0] for line in lines[2:]] == ["linucb", "random"]
    linucb, random = (float(line.split()[2]) for line in lines[2:])
    assert linucb > random + 0.2


@pytest.fixture
def bad_csv(tmp_path: Path) -> Path:
    path = tmp_path / "bad.csv"
    path.write_text("a,b,word,y\n1,2,x,0\n3,,y,1\n5,6,z,\n", encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("extra", "phrase"),
    [
        (["--features", "a,c", "--label", "y"], "--data has no column 'c'; its columns are a, b"),
        (["--features", "a,word", "--label", "y"], "feature column 'word' must be numeric"),
        (["--features", "a,b", "--label", "y"], "feature 'b' is missing or not finite in row 2"),
        (["--features", "a", "--label", "y"], "the label 'y' is missing in row 3"),
        (["--features", "a", "--label", "a"], "the label 'a' cannot also be a feature"),
        (
            ["--features", "a", "--label", "y", "--policy", "ucb1"],
            "--policy with --contextual lists lints, linucb, thompson, random; not ucb1",
        ),
        (["--features", "a"], "simulate --contextual needs --data, --features and --label"),
        (["--features", "a", "--label", "y", "--seeds", "0"], "--seeds and --batch must be"),
        (["--features", "a", "--label", "y", "--exploration", "0"], "exploration must be positive"),
    ],
)
def test_bad_input_is_one_line_and_exit_code_2(
    bad_csv: Path, extra: list[str], phrase: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["simulate", "--contextual", "--data", str(bad_csv), *extra])
    err = capsys.readouterr().err
    assert code == 2
    assert phrase in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("args", "phrase"),
    [
        (["simulate", "--contextual", "--data", "/nonexistent.csv", "--features", "a", "--label", "y"], "is not a file"),
        (["simulate", "--policy", "lints", "--arms", "0.1,0.2"], "needs --contextual and --data"),
        (["simulate"], "simulate needs --arms (or --contextual with --data)"),
    ],
)  # fmt: skip
def test_misused_flags_are_one_line(
    args: list[str], phrase: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(args) == 2
    assert phrase in capsys.readouterr().err


def test_an_unknown_policy_in_the_list_is_argparses_invalid_choice(
    bad_csv: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["simulate", "--contextual", "--data", str(bad_csv), "--features", "a", "--label", "y"]
    with pytest.raises(SystemExit) as exit_info:
        main([*args, "--policy", "lints,ucb9"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'lints,ucb9'" in capsys.readouterr().err


def test_a_file_of_another_format_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "data.json"
    path.write_text("{}", encoding="utf-8")
    args = ["simulate", "--contextual", "--data", str(path), "--features", "a", "--label", "y"]
    assert main(args) == 2
    assert "must be a .parquet or .csv file" in capsys.readouterr().err


def test_an_unreadable_csv_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "ragged.csv"
    path.write_text("a,y\n1,2,3\n", encoding="utf-8")
    args = ["simulate", "--contextual", "--data", str(path), "--features", "a", "--label", "y"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "cannot be read" in err
    assert len(err.strip().splitlines()) == 1
