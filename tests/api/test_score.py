"""``banditlake score``: batch inference through the server's variants, logged to the lake.

Real ONNX Runtime sessions, real Parquet and CSV files, the lake read back with DuckDB,
the command run in process (``api.cli.main``) and, for the interrupt, as a subprocess.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient

from api.batch import ScoreOptions
from api.cli import main
from api.settings import Settings
from api.store.migrate import upgrade
from tests.api.serving_support import W_A, W_B, lake_rows, running_experiment
from tests.conftest import make_client, make_settings
from tests.onnx_models import classifier_model, linear_model

FEATURES = ["f0", "f1", "f2"]


@pytest.fixture
def home(tmp_path: Path, sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Settings for the service and the same configuration for the command's environment."""
    upgrade(sqlite_url)
    settings = make_settings(tmp_path / "home", sqlite_url)
    monkeypatch.setenv("BANDITLAKE_HOME", str(settings.home))
    monkeypatch.setenv("BANDITLAKE_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("BANDITLAKE_LAKE_URI", settings.lake_uri)
    monkeypatch.setenv("BANDITLAKE_DEVICE", "cpu")
    return settings


@pytest.fixture
def client(home: Settings) -> Iterator[TestClient]:
    with make_client(home) as c:
        yield c


def _frame(n: int, seed: int = 0) -> pa.Table:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3))
    return pa.table(
        {
            "id": pa.array(np.arange(n, dtype=np.int64)),
            "f0": x[:, 0],
            "f1": x[:, 1],
            "f2": x[:, 2].astype(np.float32),
            "other": pa.array(["z"] * n),
        }
    )


def _score(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict[str, Any], str]:
    code = main(["score", *argv, "--json"])
    out, err = capsys.readouterr()
    summary = json.loads(out.strip().splitlines()[-1]) if code == 0 else {}
    return code, summary, err


def _onnx(model: bytes, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    out = session.run(None, {"x": x.astype(np.float32)})[0]
    return np.asarray(out, dtype=np.float64)


def test_a_100k_row_parquet_file_matches_onnxruntime_and_lands_in_the_lake(
    client: TestClient, home: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    running_experiment(client, weights={"a": 0.3, "b": 0.7})
    data = _frame(100_000)
    pq.write_table(data, tmp_path / "in.parquet", row_group_size=30_000)
    out = tmp_path / "out.parquet"
    code, summary, err = _score(
        capsys, "e", str(tmp_path / "in.parquet"), "--output", str(out), "--batch-size", "40000"
    )
    assert code == 0, err
    assert summary["rows"] == summary["logged"] == 100_000
    assert summary["assignment"] == "allocation"

    result = pq.read_table(out)
    assert result.column_names == ["id", "request_id", "variant", "propensity", "prediction"]
    assert result["id"].to_pylist() == data["id"].to_pylist()
    x = np.column_stack([data[c].to_numpy().astype(np.float64) for c in FEATURES])
    variant = np.asarray(result["variant"].to_pylist())
    expected = np.where(
        variant == "a",
        _onnx(linear_model(W_A, 0.5), x).reshape(-1),
        _onnx(linear_model(W_B, -0.5), x).reshape(-1),
    )
    assert np.max(np.abs(result["prediction"].to_numpy() - expected)) <= 1e-6
    shares = {v: float(np.mean(variant == v)) for v in ("a", "b")}
    assert abs(shares["a"] - 0.3) < 0.01, shares
    propensity = dict(zip(variant.tolist(), result["propensity"].to_pylist(), strict=True))
    assert propensity == pytest.approx({"a": 0.3, "b": 0.7})

    rows = lake_rows(
        home,
        "SELECT count(*), count(DISTINCT request_id), min(mode), max(mode), "
        "sum((variant = 'a')::INT), min(features['f2']) IS NOT NULL FROM predictions",
    )
    assert rows == [(100_000, 100_000, "batch", "batch", int(np.sum(variant == "a")), True)]
    joined = lake_rows(
        home,
        f"SELECT count(*) FROM predictions p JOIN read_parquet('{out}') o "
        "ON o.request_id = p.request_id AND o.variant = p.variant "
        "AND abs(o.prediction - p.prediction) < 1e-9 AND o.propensity = p.propensity "
        "AND p.features['f0'] = (SELECT f0 FROM read_parquet('"
        f"{tmp_path / 'in.parquet'}') i WHERE i.id = o.id)",
    )
    assert joined == [(100_000,)]
    # A batch row's request id is one the service issued: its feedback is accepted.
    request_id = result["request_id"][0].as_py()
    response = client.post("/v1/feedback", json={"request_id": request_id, "reward": 1.0})
    assert response.status_code == 202, response.text


def test_batch_rows_count_online_only_for_an_experiment_that_opts_in(
    client: TestClient, home: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    running_experiment(client, "plain", weights={"a": 0.5, "b": 0.5})
    running_experiment(client, "learns", weights={"a": 0.5, "b": 0.5})
    response = client.patch("/v1/experiments/learns", json={"learn_from_batch": True})
    assert response.status_code == 200 and response.json()["learn_from_batch"] is True
    assert client.get("/v1/experiments/plain").json()["learn_from_batch"] is False
    pq.write_table(_frame(2000), tmp_path / "in.parquet")
    for name in ("plain", "learns"):
        code, _, err = _score(
            capsys, name, str(tmp_path / "in.parquet"), "--output", str(tmp_path / f"{name}.pq")
        )
        assert code == 0, err
    # One online request, so the online path is counted beside the batch rows.
    response = client.post("/v1/experiments/plain/predict", json={"features": [1.0, 2.0, 3.0]})
    assert response.status_code == 200
    client.app.state.serving.predictions.flush()  # type: ignore[attr-defined]

    def served(name: str) -> int:
        report = client.get(f"/v1/experiments/{name}/report")
        assert report.status_code == 200, report.text
        return sum(v["requests"] for v in report.json()["variants"])

    assert served("plain") == 1
    assert served("learns") == 2000
    assert lake_rows(home, "SELECT mode, count(*) FROM predictions GROUP BY 1 ORDER BY 1") == [
        ("batch", 4000),
        ("online", 1),
    ]


def test_a_variant_or_all_variants_and_no_log(
    client: TestClient, home: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    running_experiment(client, shadow=classifier_model([[1, 0, 0], [0, 1, 0], [0, 0, 1]]))
    data = _frame(500)
    pq.write_table(data, tmp_path / "in.parquet")
    x = np.column_stack([data[c].to_numpy().astype(np.float64) for c in FEATURES])

    code, summary, err = _score(
        capsys, "e", str(tmp_path / "in.parquet"), "--output", str(tmp_path / "b.csv"),
        "--variant", "b", "--no-log",
    )  # fmt: skip
    assert code == 0, err
    assert summary["logged"] == 0 and summary["assignment"] == "variant"
    only_b = pa.csv.read_csv(tmp_path / "b.csv")
    assert only_b.column_names == ["id", "prediction_b"]
    want_b = _onnx(linear_model(W_B, -0.5), x).reshape(-1)
    assert np.max(np.abs(only_b["prediction_b"].to_numpy() - want_b)) <= 1e-6
    assert lake_rows(home, "SELECT count(*) FROM predictions") == [(0,)]

    code, summary, err = _score(
        capsys, "e", str(tmp_path / "in.parquet"), "--output", str(tmp_path / "all.parquet"),
        "--all-variants",
    )  # fmt: skip
    assert code == 0, err
    every = pq.read_table(tmp_path / "all.parquet")
    assert every.column_names == [
        "id",
        "request_id",
        "prediction_a",
        "prediction_b",
        "prediction_sh",
    ]
    want_sh = np.argmax(x @ np.eye(3), axis=1)
    assert every["prediction_sh"].to_pylist() == want_sh.astype(float).tolist()
    assert summary["variants"]["sh"]["role"] == "shadow"
    logged = lake_rows(
        home,
        "SELECT variant, role, count(*), min(propensity), count(DISTINCT request_id), "
        "min(len(scores)) FROM predictions GROUP BY ALL ORDER BY 1",
    )
    assert logged == [
        ("a", "arm", 500, 1.0, 500, None),
        ("b", "arm", 500, 1.0, 500, None),
        ("sh", "shadow", 500, 1.0, 500, 3),
    ]


def test_sticky_experiments_assign_each_unit_as_the_server_does(
    client: TestClient, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    running_experiment(client, "st", weights={"a": 0.5, "b": 0.5}, sticky=True)
    units = [f"user-{i}" for i in range(40)]
    pq.write_table(
        pa.table({"id": list(range(40)), "unit": units, **{c: [0.5] * 40 for c in FEATURES}}),
        tmp_path / "in.parquet",
    )
    code, _, err = _score(
        capsys, "st", str(tmp_path / "in.parquet"), "--output", str(tmp_path / "o.parquet"),
        "--unit-column", "unit", "--no-log",
    )  # fmt: skip
    assert code == 0, err
    batch = pq.read_table(tmp_path / "o.parquet")["variant"].to_pylist()
    online = [
        client.post(
            "/v1/experiments/st/predict", json={"features": [0.5] * 3, "unit_id": u}
        ).json()["variant"]
        for u in units
    ]
    assert batch == online
    assert set(batch) == {"a", "b"}


def test_an_interrupted_run_leaves_no_output_and_nothing_in_the_lake(
    client: TestClient, home: Settings, tmp_path: Path
) -> None:
    running_experiment(client)
    pq.write_table(_frame(400_000), tmp_path / "big.parquet", row_group_size=10_000)
    out = tmp_path / "out.parquet"
    lake_dir = Path(home.lake_uri) / "predictions"
    cli = Path(sys.executable).with_name("banditlake")
    process = subprocess.Popen(
        [str(cli), "score", "e", str(tmp_path / "big.parquet"), "--output", str(out),
         "--batch-size", "2000", "--threads", "1"],
        env=os.environ.copy(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        # Interrupt once the run has written lake files and output rows.
        deadline = time.monotonic() + 120
        while not list(lake_dir.glob("**/part-*.parquet")):
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "the run wrote no lake file"
            time.sleep(0.02)
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130, err
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".out")] == []
    assert list(lake_dir.glob("**/*.parquet")) == []
    assert lake_rows(home, "SELECT count(*) FROM predictions") == [(0,)]


def _error(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    code = main(["score", *argv])
    _, err = capsys.readouterr()
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        (
            ["1,0.5,0.5,0.5", "2,0.5,abc,0.5"],
            "Line 3 of {csv}: column 'f1' holds 'abc', which is not a number.",
        ),
        (["1,0.5,0.5,0.5", "2,0.5,,0.5"], "Line 3 of {csv}: column 'f1' has no value."),
        (
            ["1,0.5,0.5,0.5", "2,0.5,inf,0.5"],
            "Line 3 of {csv}: column 'f1' holds inf; a feature must be a finite number.",
        ),
        (
            ["1,0.5,0.5,0.5", "2,0.5,1e39,0.5"],
            "Line 3 of {csv}: column 'f1' holds 1e+39, outside the float32 range",
        ),
        (["1,0.5,0.5,0.5", "2,0.5,0.5"], "Line 3 of {csv} has 3 fields; the header has 4."),
    ],
)
def test_a_bad_csv_row_is_named_by_its_line(
    client: TestClient,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    rows: list[str],
    message: str,
) -> None:
    running_experiment(client)
    csv = tmp_path / "in.csv"
    good = [f"{i},0.1,0.2,0.3" for i in range(3, 3000)]
    csv.write_text("\n".join(["id,f0,f1,f2", *rows, *good]) + "\n")
    out = tmp_path / "out.parquet"
    line = _error(capsys, "e", str(csv), "--output", str(out), "--batch-size", "1000")
    assert message.format(csv=csv) in line
    assert not out.exists()


def test_a_bad_value_deep_in_a_csv_file_is_named_by_its_line(
    client: TestClient, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    running_experiment(client)
    csv = tmp_path / "in.csv"
    lines = [f"{i},0.1,0.2,0.3" for i in range(200_000)]
    lines[150_000] = "150000,0.1,0.2,x"
    csv.write_text("\n".join(["id,f0,f1,f2", *lines]) + "\n")
    line = _error(capsys, "e", str(csv), "--output", str(tmp_path / "o.csv"))
    assert line.endswith(f"Line 150002 of {csv}: column 'f2' holds 'x', which is not a number.")


def test_missing_columns_and_bad_arguments_are_named(
    client: TestClient, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    running_experiment(client)
    path = tmp_path / "in.parquet"
    pq.write_table(_frame(10).drop_columns(["f2"]), path)
    out = str(tmp_path / "o.parquet")
    assert "lacks column(s) ['f2'] that variant 'a' needs" in _error(
        capsys, "e", str(path), "--output", out
    )
    pq.write_table(_frame(10), path)
    assert "has no column 'key' (--id-column)" in _error(
        capsys, "e", str(path), "--output", out, "--id-column", "key"
    )
    assert "Experiment 'nope' does not exist" in _error(capsys, "nope", str(path), "--output", out)
    assert "has no variant 'zz'" in _error(
        capsys, "e", str(path), "--output", out, "--variant", "zz"
    )
    assert "does not exist" in _error(capsys, "e", str(tmp_path / "none.parquet"), "--output", out)
    assert "--batch-size must be between" in _error(
        capsys, "e", str(path), "--output", out, "--batch-size", "0"
    )
    (tmp_path / "bad.parquet").write_bytes(b"PAR1 not really")
    assert "is not a Parquet file, a directory of Parquet files or a .csv file" in _error(
        capsys, "e", str(tmp_path / "bad.parquet"), "--output", out
    )
    pq.write_table(_frame(10).set_column(1, "f0", pa.array(["a"] * 10)), path)
    assert "Column 'f0' holds string values; a feature must be numeric." in _error(
        capsys, "e", str(path), "--output", out
    )
    assert not Path(out).exists()


def test_a_directory_of_parquet_files_and_an_empty_input(
    client: TestClient, home: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    running_experiment(client)
    folder = tmp_path / "parts"
    folder.mkdir()
    data = _frame(3000)
    for i in range(3):
        pq.write_table(data.slice(i * 1000, 1000), folder / f"part-{i}.parquet")
    code, summary, err = _score(capsys, "e", str(folder), "--output", str(tmp_path / "o.parquet"))
    assert code == 0, err
    assert sorted(pq.read_table(tmp_path / "o.parquet")["id"].to_pylist()) == list(range(3000))
    assert summary["rows"] == 3000
    pq.write_table(data.slice(0, 0), tmp_path / "empty.parquet")
    code, summary, err = _score(
        capsys, "e", str(tmp_path / "empty.parquet"), "--output", str(tmp_path / "e.parquet")
    )
    assert code == 0, err
    assert summary["rows"] == 0
    assert pq.read_table(tmp_path / "e.parquet").column_names == [
        "id", "request_id", "variant", "propensity", "prediction",
    ]  # fmt: skip


def test_the_command_and_the_module_agree_on_the_default_batch_size() -> None:
    from api.batch import DEFAULT_BATCH_SIZE
    from api.cli import _SCORE_BATCH_SIZE

    assert _SCORE_BATCH_SIZE == DEFAULT_BATCH_SIZE == ScoreOptions("e", "i", "o").batch_size
