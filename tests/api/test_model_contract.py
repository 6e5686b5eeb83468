"""The model contract: one text in the README and the upload's API docs, true to the code.

The README's "Model contract" section must be :data:`api.control.model_contract.MODEL_CONTRACT`
word for word, the upload endpoint's OpenAPI description must carry it, the facts it
states must match :mod:`api.control.model_spec`, and its scikit-learn export must give a model
the service accepts.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.control import model_spec
from api.control.model_contract import MODEL_CONTRACT
from api.routes.variants import UPLOAD_DESCRIPTION
from api.settings import Settings
from tests.api.helpers import create_experiment, error_code, start, upload

ROOT = Path(__file__).resolve().parents[2]
UPLOAD = ("/v1/experiments/{name}/variants", "post")

# What a user must know, as the contract words it; each must be in both places.
KEY_FACTS = [
    "Exactly one graph input",
    "`float32` or `float64`",
    "dynamic batch dimension `N`",
    "fixed number of features `d`",
    "`features` form field",
    "in input-column order",
    "the first graph output, or the one named by the `output` form",
    "`[N]` or `[N, 1]`: the value is the `prediction`",
    "`[N, k]`: the row is returned as\n  `scores` and the `prediction` is the index of the largest score",
    "`output=probabilities`",
    "ZipMap",
    "refused at\n  upload (`invalid_model_output`)",
    'options={id(model): {"zipmap": False}}',
    "convert_xgboost(xgb_model, initial_types=initial_types)",
    "convert_lightgbm(lgbm_model, initial_types=initial_types, zipmap=False)",
    "FloatTensorType([None, 3])",
    "torch.onnx.export(",
    'dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}}',
]


@pytest.fixture(scope="module")
def document_app() -> Any:
    # The OpenAPI document depends neither on settings nor on the lifespan's resources.
    return create_app(Settings(_env_file=None, home=Path("unused"), device="cpu"))


def _readme_section(title: str) -> str:
    text = (ROOT / "README.md").read_text()
    match = re.search(rf"^## {re.escape(title)}\n\n(.*?)(?=^## )", text, re.M | re.S)
    assert match, f"README.md has no section {title!r}"
    return match.group(1)


def _sklearn_snippet() -> str:
    section = _readme_section("Model contract")
    after = section[section.index("**scikit-learn**") :]
    match = re.search(r"```python\n(.*?)```", after, re.S)
    assert match, "the Model contract section has no scikit-learn snippet"
    return match.group(1)


def _upload_description(app: Any) -> str:
    path, method = UPLOAD
    return str(app.openapi()["paths"][path][method]["description"])


def test_readme_section_is_the_contract_word_for_word() -> None:
    assert _readme_section("Model contract") == MODEL_CONTRACT + "\n", (
        "README.md's Model contract section and api/control/model_contract.py differ; edit the "
        "constant and copy it into the README (or the other way round)."
    )


def test_the_upload_docs_carry_the_contract(document_app: Any) -> None:
    description = _upload_description(document_app)
    assert description.strip() == UPLOAD_DESCRIPTION.strip()
    assert MODEL_CONTRACT.strip() in description


@pytest.mark.parametrize("fact", KEY_FACTS)
def test_readme_and_api_docs_state_each_key_fact(fact: str, document_app: Any) -> None:
    assert fact in _readme_section("Model contract"), fact
    assert fact in _upload_description(document_app), fact


def test_the_stated_facts_match_the_validation_code() -> None:
    source = Path(model_spec.__file__).read_text()
    assert sorted(model_spec._FLOAT_TYPES.values()) == ["float32", "float64"]
    for code in re.findall(r"\(`([a-z_]+)`\)", MODEL_CONTRACT):
        if code != "feature_out_of_range":  # checked per request, by the serving code
            assert f'code="{code}"' in source, code
    serving = (ROOT / "api" / "serving" / "features.py").read_text()
    assert 'code="feature_out_of_range"' in serving


def _export_snippet(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: str) -> bytes:
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "README.md (Model contract)", "exec"), {"__name__": "readme_snippet"})
    return (tmp_path / "churn-logreg.onnx").read_bytes()


def test_the_scikit_learn_export_uploads_and_serves(
    client: TestClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("skl2onnx")
    model = _export_snippet(tmp_path, monkeypatch, _sklearn_snippet())
    create_experiment(client, "churn")
    body = upload(
        client,
        "churn",
        "logreg",
        model,
        features='["age","tenure","spend"]',
        output="probabilities",
    )
    assert body["input_shape"] == [None, 3]
    assert body["features"] == ["age", "tenure", "spend"]
    assert body["output"] == "probabilities"
    start(client, "churn")
    response = client.post(
        "/v1/experiments/churn/predict",
        json={"features": {"age": 1.0, "tenure": -1.0, "spend": 0.5}},
    )
    assert response.status_code == 200, response.text
    result = response.json()
    scores = result["scores"]
    assert len(scores) == 2 and sum(scores) == pytest.approx(1.0, abs=1e-5)
    assert result["prediction"] == float(np.argmax(scores)) == 1.0


def test_the_default_zipmap_output_is_refused_as_the_contract_says(
    client: TestClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("skl2onnx")
    snippet = _sklearn_snippet()
    assert 'options={id(model): {"zipmap": False}}' in snippet
    model = _export_snippet(
        tmp_path, monkeypatch, snippet.replace(', options={id(model): {"zipmap": False}}', "")
    )
    create_experiment(client, "churn")
    response = client.post(
        "/v1/experiments/churn/variants",
        data={"name": "zipmap", "output": "output_probability"},
        files={"model": ("m.onnx", model, "application/octet-stream")},
    )
    assert response.status_code == 422, response.text
    assert error_code(response) == "invalid_model_output"
    assert "zipmap=False" in response.json()["error"]["message"]
