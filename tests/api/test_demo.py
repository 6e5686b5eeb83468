"""``banditlake demo``: the digits experiment end to end, through the real HTTP service.

The demo runs twice on one home (module fixture): the first run's state is snapshotted,
then a second run must reuse the experiment without duplicating anything.
"""

from __future__ import annotations

import io
import itertools
import re
from collections.abc import Iterator
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest

from api.cli import main
from api.demo import EXPERIMENT, DemoError, run_demo
from api.demo._digits import FEATURES, train_candidates
from api.demo._progress import ProgressBar
from api.settings import Settings
from lake.reader import open_lake
from tests.api.helpers import create_experiment
from tests.conftest import make_client, make_settings

ROWS = 800
PORT = 8765
VARIANTS = {"logreg", "naive-bayes", "tree-depth4"}


@dataclass(frozen=True)
class Snapshot:
    """What the service and the lake hold after a run, and what the run printed."""

    out: str
    err: str
    experiments: list[dict[str, Any]]
    variants: list[dict[str, Any]]
    history: list[dict[str, Any]]
    report: dict[str, Any]
    lake_predictions: int
    lake_feedback: int

    @property
    def final_weights(self) -> dict[str, float]:
        return dict(self.history[0]["weights"])

    def accuracy(self, variant: str) -> float:
        row = next(v for v in self.report["variants"] if v["name"] == variant)
        return float(row["reward_mean"])


def _lake_counts(settings: Settings) -> tuple[int, int]:
    with open_lake(settings.database_url, settings.lake_root) as lake:
        con = lake.duckdb()
        try:
            predictions = con.execute(
                f"SELECT count(*) FROM predictions WHERE experiment = '{EXPERIMENT}'"
            ).fetchone()
            feedback = con.execute("SELECT count(*) FROM feedback").fetchone()
        finally:
            con.close()
    assert predictions is not None and feedback is not None
    return int(predictions[0]), int(feedback[0])


def _snapshot(settings: Settings, out: str, err: str) -> Snapshot:
    with make_client(settings) as client:
        experiments = client.get("/v1/experiments").json()
        variants = client.get(f"/v1/experiments/{EXPERIMENT}/variants").json()
        history = client.get(f"/v1/experiments/{EXPERIMENT}/allocations").json()
        report = client.get(f"/v1/experiments/{EXPERIMENT}/report").json()
    predictions, feedback = _lake_counts(settings)
    return Snapshot(out, err, experiments, variants, history, report, predictions, feedback)


@dataclass(frozen=True)
class Runs:
    settings: Settings
    first: Snapshot
    second: Snapshot


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Runs:
    home = tmp_path_factory.mktemp("demo-home")
    settings = make_settings(home, f"sqlite:///{home / 'banditlake.db'}")
    # The first run writes to the default streams (sys.stdout, sys.stderr) ...
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        run_demo(settings, rows=ROWS, port=PORT, seed=0)
    first = _snapshot(settings, out.getvalue(), err.getvalue())
    # ... the second to the streams it is given.
    out, err = io.StringIO(), io.StringIO()
    run_demo(settings, rows=ROWS, port=PORT, seed=1, out=out, err=err)
    second = _snapshot(settings, out.getvalue(), err.getvalue())
    return Runs(settings, first, second)


@pytest.fixture(scope="module")
def offline_accuracy() -> dict[str, float]:
    """Each exported ONNX model's accuracy on the held-out split, run by ONNX Runtime."""
    candidates, holdout = train_candidates()
    accuracy = {}
    for candidate in candidates:
        session = ort.InferenceSession(candidate.onnx, providers=["CPUExecutionProvider"])
        (labels,) = session.run(["label"], {"X": holdout.features.astype(np.float32)})
        accuracy[candidate.name] = float(np.mean(labels == holdout.labels))
        # The export keeps scikit-learn's predictions.
        assert accuracy[candidate.name] == pytest.approx(candidate.accuracy)
    return accuracy


def test_the_models_are_genuinely_different(offline_accuracy: dict[str, float]) -> None:
    assert set(offline_accuracy) == VARIANTS
    assert offline_accuracy["logreg"] > 0.93
    assert 0.7 < offline_accuracy["naive-bayes"] < 0.9
    assert 0.45 < offline_accuracy["tree-depth4"] < 0.75
    assert len(FEATURES) == 64 and FEATURES[9] == "pixel_1_1"


def test_the_experiment_exists_once_with_three_running_variants(runs: Runs) -> None:
    first = runs.first
    assert [e["name"] for e in first.experiments] == [EXPERIMENT]
    (experiment,) = first.experiments
    assert experiment["status"] == "running"
    assert experiment["reward"] == {"kind": "label", "metric": "accuracy"}
    assert experiment["policy"]["kind"] == "thompson"
    assert experiment["min_weight"] == pytest.approx(0.02)
    assert {v["name"] for v in first.variants} == VARIANTS
    assert all(v["status"] == "active" and v["output"] == "label" for v in first.variants)
    assert all(v["features"] == list(FEATURES) for v in first.variants)


def test_the_most_accurate_variant_holds_most_traffic(
    runs: Runs, offline_accuracy: dict[str, float]
) -> None:
    first = runs.first
    best_offline = max(offline_accuracy, key=lambda name: offline_accuracy[name])
    best_online = max(VARIANTS, key=first.accuracy)
    weights = first.final_weights
    assert best_offline == best_online == max(weights, key=lambda name: weights[name])
    assert weights[best_online] > 0.9
    by_name = {v["name"]: v for v in first.report["variants"]}
    assert max(by_name, key=lambda name: by_name[name]["requests"]) == best_online
    for name in VARIANTS:
        # The online accuracy estimates the offline one: inside its 95% interval, or close.
        row = by_name[name]
        assert row["ci_low"] - 0.05 <= offline_accuracy[name] <= row["ci_high"] + 0.05


def test_every_request_and_label_is_in_the_report_and_the_lake(runs: Runs) -> None:
    first = runs.first
    assert sum(v["requests"] for v in first.report["variants"]) == ROWS
    assert sum(v["rewarded"] for v in first.report["variants"]) == ROWS
    assert first.lake_predictions == ROWS
    assert first.lake_feedback == ROWS
    assert first.report["srm_mismatch"] is False


def test_the_allocation_history_has_several_versions_with_reasons(runs: Runs) -> None:
    history = list(reversed(runs.first.history))
    # Version 1 at start, one every 250 requests, one at the end.
    assert [row["version"] for row in history] == list(range(1, 2 + ROWS // 250 + 1))
    assert all(row["reason"].strip() for row in history)
    assert history[0]["weights"] == pytest.approx({name: 1 / 3 for name in VARIANTS})
    assert all("Thompson sampling" in row["reason"] for row in history[1:])


def test_the_summary_shows_history_accuracies_verdict_and_dashboard(runs: Runs) -> None:
    out = runs.first.out
    lines = out.splitlines()
    assert lines[0] == "Allocation history (oldest first):"
    # Every version is listed, a run of versions with the same weights as one range.
    shown = []
    for match in re.finditer(r"^  v(\d+)(?:-v(\d+))? ", out, re.MULTILINE):
        first = int(match[1])
        shown += range(first, int(match[2] or first) + 1)
    assert shown == sorted(row["version"] for row in runs.first.history)
    # A reason is printed again only when its wording changes, not for new numbers.
    blocks: list[list[str]] = []
    for previous, line in itertools.pairwise(lines):
        if line.startswith(" " * 8):
            if not previous.startswith(" " * 8):
                blocks.append([])
            blocks[-1].append(line.strip())
    shapes = [re.sub(r"\d+(\.\d+)?", "#", " ".join(block)) for block in blocks]
    assert all(a != b for a, b in itertools.pairwise(shapes))
    for name in VARIANTS:
        (line,) = [line for line in lines if line.startswith(f"  {name} ")]
        assert f"{runs.first.accuracy(name):.3f}" in line
    assert f"Verdict: {runs.first.report['verdict']}" in lines
    assert "'logreg' is best" in runs.first.report["verdict"]
    assert lines[-3:-1] == [
        f"  dashboard  http://127.0.0.1:{PORT}/dashboard",
        f"  API docs   http://127.0.0.1:{PORT}/docs",
    ]
    assert lines[-1].startswith("  data       ")


def test_progress_goes_to_stderr_line_by_line_when_not_a_terminal(runs: Runs) -> None:
    err = runs.first.err
    assert "\r" not in err
    assert f"100%  {ROWS}/{ROWS} requests" in err
    assert "created the experiment 'digits'" in err
    assert "Allocation history" not in err


def test_a_second_run_adds_traffic_and_duplicates_nothing(runs: Runs) -> None:
    first, second = runs.first, runs.second
    assert [e["name"] for e in second.experiments] == [EXPERIMENT]
    assert sorted(v["sha256"] for v in second.variants) == sorted(
        v["sha256"] for v in first.variants
    )
    assert "the experiment 'digits' exists (running); reusing it" in second.err
    assert "registered" not in second.err
    # The history goes on from where the first run left it.
    assert second.history[len(second.history) - len(first.history) :] == first.history
    assert len(second.history) > len(first.history)
    assert second.lake_predictions == second.lake_feedback == 2 * ROWS
    assert sum(v["requests"] for v in second.report["variants"]) == 2 * ROWS
    weights = second.final_weights
    assert max(weights, key=lambda name: weights[name]) == "logreg"
    assert "Verdict:" in second.out


def test_tokens_are_sent_as_bearer_headers(tmp_path: Path) -> None:
    settings = make_settings(
        tmp_path,
        f"sqlite:///{tmp_path / 'banditlake.db'}",
        admin_token="admin-secret",
        serve_token="serve-secret",
    )
    out = io.StringIO()
    run_demo(settings, rows=40, port=PORT, out=out, err=io.StringIO())
    assert "Verdict:" in out.getvalue()
    with make_client(settings) as client:
        assert client.get("/v1/experiments").status_code == 401


def test_a_paused_experiment_gets_no_traffic_but_a_summary(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, f"sqlite:///{tmp_path / 'banditlake.db'}")
    run_demo(settings, rows=20, port=PORT, out=io.StringIO(), err=io.StringIO())
    with make_client(settings) as client:
        response = client.patch(f"/v1/experiments/{EXPERIMENT}", json={"status": "paused"})
        assert response.status_code == 200, response.text
    out, err = io.StringIO(), io.StringIO()
    run_demo(settings, rows=20, port=PORT, out=out, err=err)
    assert "the experiment is paused, so no traffic is sent" in err.getvalue()
    assert "Verdict:" in out.getvalue()
    assert _lake_counts(settings) == (20, 20)


def test_a_foreign_experiment_named_digits_is_left_alone(tmp_path: Path, sqlite_url: str) -> None:
    from api.store.migrate import upgrade

    upgrade(sqlite_url)
    settings = make_settings(tmp_path / "home", sqlite_url)
    with make_client(settings) as client:
        create_experiment(client, EXPERIMENT)
    with pytest.raises(DemoError) as caught:
        run_demo(settings, rows=10, out=io.StringIO(), err=io.StringIO())
    assert str(caught.value) == (
        "An experiment named 'digits' already exists with a binary reward, so it is not "
        "the demo's; the demo leaves it alone."
    )
    with make_client(settings) as client:
        assert client.get(f"/v1/experiments/{EXPERIMENT}/variants").json() == []


@pytest.mark.parametrize(
    ("rows", "port", "message"),
    [
        (0, 8000, "rows must be at least 1 request to replay; got 0."),
        (-5, 8000, "rows must be at least 1 request to replay; got -5."),
        (10, 0, "port must be a TCP port between 1 and 65535; got 0."),
        (10, 70_000, "port must be a TCP port between 1 and 65535; got 70000."),
    ],
)
def test_invalid_arguments_are_one_sentence(
    tmp_path: Path, rows: int, port: int, message: str
) -> None:
    settings = make_settings(tmp_path, f"sqlite:///{tmp_path / 'banditlake.db'}")
    with pytest.raises(DemoError) as caught:
        run_demo(settings, rows=rows, port=port)
    assert str(caught.value) == message


@pytest.fixture
def not_a_directory(tmp_path: Path) -> Iterator[str]:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory", encoding="utf-8")
    yield f"sqlite:///{blocker / 'banditlake.db'}"


@pytest.mark.parametrize(
    ("url", "where"),
    [
        ("postgresql+psycopg://nobody@127.0.0.1:1/none", "127.0.0.1:1/none"),
        ("not_a_directory", "sqlite:///"),
    ],
)
def test_an_unreachable_store_is_a_demo_error(
    tmp_path: Path, request: pytest.FixtureRequest, url: str, where: str
) -> None:
    if url == "not_a_directory":
        url = request.getfixturevalue("not_a_directory")
    settings = make_settings(tmp_path, url)
    with pytest.raises(DemoError) as caught:
        run_demo(settings, rows=10)
    message = str(caught.value)
    assert message.startswith(f"The SQL store at {where}")
    assert "cannot be reached or migrated: " in message
    assert message.endswith(".") and "\n" not in message


def test_the_cli_prints_the_error_and_exits_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("BANDITLAKE_HOME", str(tmp_path))
    monkeypatch.setenv("BANDITLAKE_DATABASE_URL", "postgresql+psycopg://nobody@127.0.0.1:1/x")
    assert main(["demo", "--rows", "10"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("banditlake: The SQL store at 127.0.0.1:1/x cannot be reached")
    assert "Traceback" not in err


def test_demo_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["demo", "--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    for option in ("--rows", "--port", "--seed"):
        assert option in out


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_progress_bar_redraws_in_place_on_a_terminal() -> None:
    stream = _Terminal()
    bar = ProgressBar(200, stream)
    bar.update(200, "allocation v3")
    bar.close()
    assert stream.getvalue() == (
        "\r[##############################] 100%  200/200 requests  allocation v3\x1b[K\n"
    )


def test_the_progress_bar_writes_a_line_per_tenth_elsewhere() -> None:
    stream = io.StringIO()
    bar = ProgressBar(100, stream)
    for done in range(1, 101):
        bar.update(done)
    bar.close()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 10
    assert lines[0] == "[###...........................]  10%  10/100 requests"
    assert lines[-1].endswith("100%  100/100 requests")


@pytest.mark.slow
@pytest.mark.parametrize(
    "name",
    [
        "experiment_readout.ipynb",
        "off_policy_evaluation.ipynb",
        "latency_drift.ipynb",
        "variant_explanations.ipynb",
    ],
)
def test_every_notebook_charts_the_demo_lake_from_its_data_directory(
    runs: Runs, name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The demo's own lake, found from BANDITLAKE_HOME alone, with the kernel started in
    # the data directory (where a lake/ folder once shadowed the package).
    import nbformat
    from nbclient import NotebookClient

    for variable in ("BANDITLAKE_DATABASE_URL", "BANDITLAKE_LAKE_URI", "BANDITLAKE_EXPERIMENT"):
        monkeypatch.delenv(variable, raising=False)
    home = runs.settings.home
    monkeypatch.setenv("BANDITLAKE_HOME", str(home))
    notebook = nbformat.read(Path(__file__).resolve().parents[2] / "notebooks" / name, 4)
    NotebookClient(
        notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(home)}}
    ).execute()
    outputs = [o for cell in notebook.cells for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o["output_type"] == "error"]
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert images, f"{name} drew no chart on the demo's lake"
    text = "".join(o.get("text", "") for o in outputs if o["output_type"] == "stream")
    assert EXPERIMENT in text or any(EXPERIMENT in str(o.get("data", "")) for o in outputs)
