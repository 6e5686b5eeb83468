"""Run each analyst notebook top to bottom against the generated lake and check its findings.

A failing cell raises ``nbclient.exceptions.CellExecutionError``, which fails the test. After
the notebook's own cells, a probe cell prints the notebook's results as JSON, so the tests
assert numbers rather than scrape tables. The kernel starts in the data directory
(``BANDITLAKE_HOME``) unless a test says otherwise, the hardest place to import ``lake``
from, and every notebook must draw its charts (``image/png`` outputs, no network).
"""

from __future__ import annotations

import ast
import json
import math
import sys
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient
from nbformat.v4 import new_code_cell

from tests.notebooks.conftest import (
    ARMS,
    DRIFTED_FEATURE,
    LABEL_EXPERIMENT,
    SHADOW,
    NotebookLake,
)

REPO = Path(__file__).resolve().parents[2]
NOTEBOOKS = REPO / "notebooks"
NAMES = (
    "experiment_readout.ipynb",
    "off_policy_evaluation.ipynb",
    "latency_drift.ipynb",
    "variant_explanations.ipynb",
)
# Notebooks reach the lake through the public APIs only: no service, no SQL models.
ALLOWED_IMPORTS = {
    "bandit",
    "lake",
    "numpy",
    "polars",
    "duckdb",
    "os",
    "pathlib",
    "datetime",
    "matplotlib",
    "onnxruntime",
    "shap",
}


def execute(name: str, probe: str, *, cwd: Path) -> tuple[str, dict[str, Any], int]:
    """Run notebook ``name`` with the kernel in ``cwd``, plus a probe cell.

    Returns the notebook's text output, the probe's JSON and the number of PNG images drawn.
    """
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    nb.cells.append(
        new_code_cell(
            "import json as _json, os as _os, sys as _sys\n"
            f"print(_json.dumps({{'cwd': _os.getcwd(), **{probe}}}, default=str))"
        )
    )
    client = NotebookClient(
        nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(cwd)}}
    )
    client.execute()
    texts = []
    images = 0
    for cell in nb.cells[:-1]:
        for output in cell.get("outputs", []):
            if output["output_type"] == "stream":
                texts.append(output["text"])
            elif "data" in output:
                texts.append(output["data"].get("text/plain", ""))
                images += "image/png" in output["data"]
    probe_output = "".join(o["text"] for o in nb.cells[-1].outputs if o["output_type"] == "stream")
    result: dict[str, Any] = json.loads(probe_output)
    assert result.pop("python") == sys.executable, "the kernel must run this interpreter"
    assert result.pop("cwd") == str(cwd)
    return "\n".join(texts), result, images


@pytest.mark.parametrize("name", NAMES)
def test_notebook_is_clean_and_uses_public_apis_only(name: str) -> None:
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata["kernelspec"]["name"] == "python3"
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        assert cell.outputs == [] and cell.execution_count is None, "outputs must be cleared"
        for node in ast.walk(ast.parse(cell.source)):
            if isinstance(node, ast.Import):
                modules = {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom):
                modules = {(node.module or "").split(".")[0]}
            else:
                continue
            assert modules <= ALLOWED_IMPORTS, f"{name} imports {modules - ALLOWED_IMPORTS}"


def test_experiment_readout(lake_env: NotebookLake) -> None:
    text, result, images = execute(
        "experiment_readout.ipynb",
        '{"python": _sys.executable, "experiment": EXPERIMENT, "control": CONTROL, "kind": KIND,'
        ' "summary": summary.to_dicts(), "ipw": ipw_records, "leader": LEADER,'
        ' "prob_best": bayes.prob_best.tolist(), "srm_p": srm.p_value, "observed": observed,'
        ' "tests": [t["method"] for t in TESTS], "sequential": [t["msprt"] for t in TESTS],'
        ' "regret": REGRET}',
        cwd=lake_env.home,
    )
    # Reward with intervals, posterior densities, cumulative regret, allocation over time.
    assert images == 4
    assert result["experiment"] == "nb"  # the experiment with the most predictions
    assert result["control"] == "alpha"
    assert result["kind"] == "binary"
    rows = {row["variant"]: row for row in result["summary"]}
    assert list(rows) == list(ARMS)  # arms only: the shadow is not an arm
    for arm, truth in lake_env.arms.items():
        row = rows[arm]
        assert (row["requests"], row["errors"]) == (truth.served, truth.errors)
        # Pending requests are not zeros, and a duplicated delivery counts once (the first).
        assert (row["rewarded"], row["pending"]) == (truth.rewarded, truth.pending)
        assert math.isclose(row["mean"], truth.reward_sum / truth.rewarded, rel_tol=1e-12)
        assert row["ci_low"] < row["mean"] < row["ci_high"]
    ipw = {row["variant"]: row for row in result["ipw"]}
    assert all(row["ipw_ci_low"] < row["ipw"] < row["ipw_ci_high"] for row in ipw.values())
    # alpha's weight fell to 0.1 in version 3, so its largest importance weight is 10.
    assert math.isclose(ipw["alpha"]["max_weight"], 10.0)
    assert result["leader"] == "beta"
    assert math.isclose(sum(result["prob_best"]), 1.0)
    # The allocation moved (versions with other weights): the adaptive-valid tests.
    assert result["tests"] == ["adaptive_aipw", "adaptive_aipw"]
    assert len(result["sequential"]) == 2
    # Traffic followed the logged weights of every version: no sample-ratio mismatch.
    assert result["observed"] == [lake_env.arms[a].served for a in ARMS]
    assert result["srm_p"] > 0.001
    for arm in ARMS:
        assert arm in text
    assert SHADOW not in text
    assert "Leader: beta" in text
    assert "SRM: chi2" in text and "(no mismatch)" in text
    regret = result["regret"]
    assert regret["requests"] == sum(truth.served for truth in lake_env.arms.values())
    assert 0.0 <= regret["low"] <= regret["median"] <= regret["high"]
    # The allocation moved toward beta, so it cost less than a uniform split would have.
    assert regret["median"] < regret["uniform"]


def test_experiment_readout_scores_label_feedback(
    lake_env: NotebookLake, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BANDITLAKE_EXPERIMENT", LABEL_EXPERIMENT)
    # The explicit variables instead of BANDITLAKE_HOME, and Jupyter's usual directory.
    monkeypatch.delenv("BANDITLAKE_HOME")
    monkeypatch.setenv("BANDITLAKE_DATABASE_URL", lake_env.database_url)
    monkeypatch.setenv("BANDITLAKE_LAKE_URI", str(lake_env.root))
    text, result, images = execute(
        "experiment_readout.ipynb",
        '{"python": _sys.executable, "rule": [RULE.kind, RULE.metric], "kind": KIND,'
        ' "summary": summary.to_dicts(), "lake": LAKE_URI}',
        cwd=NOTEBOOKS,
    )
    assert result["lake"] == str(lake_env.root)
    assert images == 4
    # The feedback carries labels and NULL rewards: the readout infers accuracy.
    assert result["rule"] == ["label", "accuracy"]
    assert result["kind"] == "binary"
    assert "Reward: label:accuracy" in text
    rows = {row["variant"]: row for row in result["summary"]}
    assert set(rows) == {"large", "small"}
    assert all(row["rewarded"] > 100 for row in rows.values())
    assert 0.85 < rows["large"]["mean"] < 0.95
    assert 0.7 < rows["small"]["mean"] < rows["large"]["mean"]


def test_off_policy_evaluation(lake_env: NotebookLake) -> None:
    text, result, images = execute(
        "off_policy_evaluation.ipynb",
        '{"python": _sys.executable, "estimates": estimates.to_dicts(),'
        ' "observed_mean": float(reward.mean()), "best": best_policy, "shape": action_dist('
        'policies["uniform"]).shape}',
        cwd=lake_env.home,
    )
    assert images == 1  # every estimator per policy, dr with its interval
    estimates = {row["policy"]: row for row in result["estimates"]}
    assert set(estimates) == {
        "logged (as served)",
        "uniform",
        "current weights (v3)",
        "all to alpha",
        "all to beta",
        "all to gamma",
    }
    n_rounds = sum(truth.rewarded for truth in lake_env.arms.values())
    assert result["shape"] == [n_rounds, len(ARMS), 1]
    for row in estimates.values():
        for estimator in ("ipw", "snipw", "dm", "dr", "sndr"):
            assert math.isfinite(row[estimator]) and 0.0 <= row[estimator] <= 1.0
        assert row["dr_low"] <= row["dr"] <= row["dr_high"]
    # Evaluating the logging policy on its own data: every weight is 1.
    logged = estimates["logged (as served)"]
    assert math.isclose(logged["ipw"], result["observed_mean"], rel_tol=1e-9)
    assert math.isclose(logged["snipw"], result["observed_mean"], rel_tol=1e-9)
    assert math.isclose(logged["ess"], n_rounds, rel_tol=1e-9)
    assert result["best"] == "all to beta"
    assert abs(estimates["all to beta"]["dr"] - 0.42) < 0.05
    assert estimates["all to gamma"]["sndr"] < estimates["uniform"]["sndr"]
    assert "Highest estimated value (sndr): all to beta" in text


def test_latency_drift(lake_env: NotebookLake) -> None:
    text, result, images = execute(
        "latency_drift.ipynb",
        '{"python": _sys.executable, "drifted": DRIFTED, "drift": drift_table.to_dicts(),'
        ' "latency": latency.to_dicts(), "bucket": BUCKET, "buckets": p95.height,'
        ' "predictions": prediction_drift.to_dicts()}',
        cwd=lake_env.home,
    )
    # Latency percentiles and error rate over time, feature drift, prediction drift.
    assert images == 4
    assert result["drifted"] == [DRIFTED_FEATURE]
    drift = {row["feature"]: row for row in result["drift"]}
    assert set(drift) == {"tenure", "clicks", DRIFTED_FEATURE}
    assert drift[DRIFTED_FEATURE]["psi"] > 1.0
    assert all(row["psi"] < 0.1 for name, row in drift.items() if name != DRIFTED_FEATURE)
    assert f"Drifted features (PSI > 0.2): {DRIFTED_FEATURE}" in text

    latency = {row["variant"]: row for row in result["latency"]}
    assert set(latency) == {*ARMS, SHADOW}
    assert latency[SHADOW]["role"] == "shadow"
    p50 = [latency[v]["p50_ms"] for v in (*ARMS, SHADOW)]
    assert p50 == sorted(p50)  # medians of 4, 9, 16 and 30 ms
    for v in (*ARMS, SHADOW):
        assert latency[v]["p50_ms"] < latency[v]["p95_ms"] < latency[v]["p99_ms"]
    gamma = lake_env.arms["gamma"]
    assert latency["gamma"]["errors"] == gamma.errors > 0
    assert math.isclose(latency["gamma"]["error_rate"], gamma.errors / gamma.served)
    assert latency["alpha"]["error_rate"] == 0.0
    # Three hours of traffic: 15-minute buckets, twelve of them.
    assert (result["bucket"], result["buckets"]) == ("15 minutes", 12)

    # beta and gamma weigh the drifted feature, alpha ignores it.
    predictions = {row["variant"]: row for row in result["predictions"]}
    assert set(predictions) == {*ARMS, SHADOW}
    assert predictions[SHADOW]["role"] == "shadow"
    assert not predictions["alpha"]["drifted"]
    assert predictions["beta"]["drifted"] and predictions["gamma"]["drifted"]
    assert predictions["beta"]["psi"] > 5 * predictions["alpha"]["psi"]
    assert "Variants whose predictions drifted (PSI > 0.2): beta, " in text


def test_variant_explanations(lake_env: NotebookLake) -> None:
    text, result, images = execute(
        "variant_explanations.ipynb",
        '{"python": _sys.executable, "leader": LEADER, "checks": checks.to_dicts(),'
        ' "summary": summary, "importance": importance_table.to_dicts(),'
        ' "shift": shift.to_dicts()}',
        cwd=lake_env.home,
    )
    # Side by side, first window against last, the leader's beeswarm.
    assert images == 3
    assert result["leader"] == "beta"
    checks = {row["variant"]: row for row in result["checks"]}
    assert set(checks) == {*ARMS, SHADOW}
    # Each model was found by its checksum and reproduces what the lake logged for it.
    assert all(row["explained"] and row["reproduced"] == 1.0 for row in checks.values())
    outputs = {name: row["output"] for name, row in checks.items()}
    assert outputs == {
        "alpha": "score",
        "beta": "probabilities",
        "gamma": "probabilities",
        SHADOW: "score",
    }
    assert all(row["additive"] and row["requests"] == 100 for row in result["summary"])
    importance = {row["feature"]: row for row in result["importance"]}
    assert importance[DRIFTED_FEATURE]["alpha"] == 0.0  # alpha's model ignores spend
    assert importance[DRIFTED_FEATURE]["beta"] > 0.0
    shift = {row["variant"]: row for row in result["shift"]}
    # spend drifted to where beta's weight on it dominates its answers.
    assert shift["beta"]["top_last"] == DRIFTED_FEATURE
    assert shift["beta"]["moved"] > shift["alpha"]["moved"]
    assert "Leader (largest weight in the latest allocation): beta" in text
