"""Redaction and retention settings: validated and audited by the policy API, and applied to
the lake rows (dropped or keyed-hashed features) before they are buffered; the models still
get every feature, and the secret shows up nowhere."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import select

from api.serving.redaction import HASH_BITS, compile_redaction, hash_value, keyed_hash, redact
from api.settings import Settings
from api.store.models import AuditEvent
from tests.api.helpers import create_experiment, error_code, start, upload
from tests.api.serving_support import W_A, W_B, flush, lake_rows, running_experiment
from tests.conftest import make_client, make_settings
from tests.onnx_models import linear_model

SECRET = "redaction-secret-d41d8cd98f00b204e9800998ecf8427e"


@pytest.fixture
def keyed_settings(tmp_path: Path, settings: Settings) -> Settings:
    return make_settings(
        tmp_path / "home", settings.database_url, redaction_secret=SecretStr(SECRET)
    )


@pytest.fixture
def keyed(keyed_settings: Settings) -> Iterator[TestClient]:
    with make_client(keyed_settings) as c:
        yield c


def _audits(client: TestClient, action: str) -> list[dict[str, Any]]:
    factory = client.app.state.session_factory  # type: ignore[attr-defined]
    with factory() as session:
        rows = session.scalars(
            select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id)
        )
        return [dict(r.details) for r in rows]


def _problem(response: Any) -> tuple[int, str, str]:
    body = response.json()
    return response.status_code, body["error"]["code"], body["error"]["message"]


# The policy API.


def test_the_settings_are_returned_with_defaults(client: TestClient) -> None:
    body = create_experiment(client, "plain")
    assert body["retention_days"] is None
    assert body["redaction"] == {"drop": [], "hash": []}
    kept = create_experiment(client, "kept", retention_days=90, redaction={"drop": ["f0"]})
    assert kept["retention_days"] == 90
    assert kept["redaction"] == {"drop": ["f0"], "hash": []}
    assert client.get("/v1/experiments/kept").json()["redaction"] == {"drop": ["f0"], "hash": []}


@pytest.mark.parametrize("days", [0, -1, 3651, 1.5, "30", True])
def test_retention_out_of_range_is_422_naming_the_field(client: TestClient, days: Any) -> None:
    create_experiment(client, "r")
    for response in (
        client.patch("/v1/experiments/r", json={"retention_days": days}),
        client.post(
            "/v1/experiments",
            json={"name": "r2", "reward": {"kind": "binary"}, "retention_days": days},
        ),
    ):
        status, code, message = _problem(response)
        assert (status, code) == (422, "invalid_request")
        assert "retention_days" in message


def test_retention_is_set_cleared_and_audited(client: TestClient) -> None:
    create_experiment(client, "r")
    for days in (1, 3650, None):
        response = client.patch("/v1/experiments/r", json={"retention_days": days})
        assert response.status_code == 200, response.text
        assert response.json()["retention_days"] == days
    # Sending the value it has already changes nothing and records nothing.
    assert client.patch("/v1/experiments/r", json={"retention_days": None}).status_code == 200
    assert _audits(client, "retention") == [
        {"from": None, "to": 1},
        {"from": 1, "to": 3650},
        {"from": 3650, "to": None},
    ]


def test_a_stopped_experiment_keeps_a_changeable_retention(client: TestClient) -> None:
    running_experiment(client, "s")
    assert client.patch("/v1/experiments/s", json={"status": "stopped"}).status_code == 200
    response = client.patch("/v1/experiments/s", json={"retention_days": 7})
    assert response.status_code == 200, response.text
    assert response.json()["retention_days"] == 7
    frozen = client.patch("/v1/experiments/s", json={"redaction": {"drop": ["f0"]}})
    assert frozen.status_code == 409
    assert error_code(frozen) == "experiment_stopped"


def test_redaction_names_must_be_features_of_the_variants(keyed: TestClient) -> None:
    running_experiment(keyed, "e")
    for part in ("drop", "hash"):
        response = keyed.patch("/v1/experiments/e", json={"redaction": {part: ["f1", "email"]}})
        status, code, message = _problem(response)
        assert (status, code) == (422, "unknown_feature")
        assert f"redaction.{part}" in message and "'email'" in message
        assert "'f1'" not in message.split(";")[0]
    assert keyed.get("/v1/experiments/e").json()["redaction"] == {"drop": [], "hash": []}
    assert _audits(keyed, "redaction") == []


@pytest.mark.parametrize(
    ("redaction", "words"),
    [
        ({"drop": ["f0"], "hash": ["f0"]}, ["'f0'", "in both drop and hash"]),
        ({"drop": ["f1", "f1"]}, ["redaction.drop", "'f1'", "more than once"]),
        ({"drop": [""]}, ["redaction.drop[0]"]),
        ({"drop": "f0"}, ["redaction.drop"]),
        ({"drop": [3]}, ["redaction.drop[0]"]),
        ({"drop": ["f0"], "mask": ["f1"]}, ["redaction.mask"]),
        ({"hash": [f"f{i}" for i in range(1025)]}, ["redaction.hash", "1024"]),
    ],
)
def test_malformed_redaction_is_422_naming_the_problem(
    keyed: TestClient, redaction: dict[str, Any], words: list[str]
) -> None:
    create_experiment(keyed, "m")
    for response in (
        keyed.patch("/v1/experiments/m", json={"redaction": redaction}),
        keyed.post(
            "/v1/experiments",
            json={"name": "m2", "reward": {"kind": "binary"}, "redaction": redaction},
        ),
    ):
        status, _, message = _problem(response)
        assert status == 422, response.text
        for word in words:
            assert word in message, message


def test_hash_without_the_secret_is_refused(client: TestClient) -> None:
    running_experiment(client, "e")
    for response in (
        client.patch("/v1/experiments/e", json={"redaction": {"hash": ["f1"]}}),
        client.post(
            "/v1/experiments",
            json={"name": "h", "reward": {"kind": "binary"}, "redaction": {"hash": ["f1"]}},
        ),
    ):
        status, code, message = _problem(response)
        assert (status, code) == (422, "redaction_secret_missing")
        assert "BANDITLAKE_REDACTION_SECRET" in message
    assert client.get("/v1/experiments/h").status_code == 404
    # Dropping needs no key.
    dropped = client.patch("/v1/experiments/e", json={"redaction": {"drop": ["f1"]}})
    assert dropped.status_code == 200, dropped.text


def test_names_given_before_the_variants_are_checked_when_it_starts(keyed: TestClient) -> None:
    create_experiment(keyed, "early", redaction={"drop": ["f0"], "hash": ["emial"]})
    upload(keyed, "early", "a", linear_model(W_A))
    response = keyed.patch("/v1/experiments/early", json={"status": "running"})
    status, code, message = _problem(response)
    assert (status, code) == (422, "unknown_feature")
    assert "'emial'" in message
    assert keyed.get("/v1/experiments/early").json()["status"] == "draft"
    fixed = keyed.patch(
        "/v1/experiments/early", json={"redaction": {"drop": ["f0"], "hash": ["f2"]}}
    )
    assert fixed.status_code == 200, fixed.text
    start(keyed, "early")


def test_redaction_changes_are_audited_with_both_lists(keyed: TestClient) -> None:
    running_experiment(keyed, "e")
    first = {"drop": ["f0"], "hash": ["f1"]}
    second = {"drop": [], "hash": ["f2", "f1"]}
    for redaction in (first, first, second, None):
        response = keyed.patch("/v1/experiments/e", json={"redaction": redaction})
        assert response.status_code == 200, response.text
    assert keyed.get("/v1/experiments/e").json()["redaction"] == {"drop": [], "hash": []}
    empty: dict[str, list[str]] = {"drop": [], "hash": []}
    assert _audits(keyed, "redaction") == [
        {"from": empty, "to": first},
        {"from": first, "to": second},
        {"from": second, "to": empty},
    ]
    actors = {e["actor"] for e in _audit_rows(keyed) if e["action"] == "redaction"}
    assert actors == {"loopback"}


def _audit_rows(client: TestClient) -> list[dict[str, Any]]:
    factory = client.app.state.session_factory  # type: ignore[attr-defined]
    with factory() as session:
        return [
            {"action": r.action, "actor": r.actor, "details": r.details}
            for r in session.scalars(select(AuditEvent).order_by(AuditEvent.id))
        ]


# The lake rows.


def _predictions(settings: Settings, experiment: str) -> dict[str, tuple[Any, ...]]:
    rows = lake_rows(
        settings,
        "select request_id, role, map_keys(features), features, prediction, variant "
        f"from predictions where experiment = '{experiment}'",
    )
    return {f"{r[0]}/{r[1]}": r for r in rows}


def _as_dict(features: Any) -> dict[str, float]:
    if isinstance(features, dict) and set(features) == {"key", "value"}:
        return dict(zip(features["key"], features["value"], strict=True))
    return dict(features)


def test_dropped_and_hashed_features_in_the_lake(
    keyed: TestClient, keyed_settings: Settings
) -> None:
    running_experiment(keyed, "e", shadow=linear_model([0.5, 0.5, 0.5]))
    response = keyed.patch(
        "/v1/experiments/e", json={"redaction": {"drop": ["f0"], "hash": ["f1"]}}
    )
    assert response.status_code == 200, response.text
    sent: list[Any] = [
        [0.3, 7.0, 2.0],  # f1 = 7 by position
        {"f0": -1.0, "f1": 7, "f2": 1.5},  # the same f1, by name and as an integer
        [0.3, -2.25, 2.0],  # another f1
        [0.0, -0.0, 0.0],  # -0.0 hashes as 0.0
        [1.0, 0.0, 1.0],
    ]
    answers = []
    for features in sent:
        answer = keyed.post("/v1/experiments/e/predict", json={"features": features})
        assert answer.status_code == 200, answer.text
        answers.append(answer.json())
    flush(keyed)
    rows = _predictions(keyed_settings, "e")
    hashes = []
    for features, answer in zip(sent, answers, strict=True):
        x = features if isinstance(features, list) else [features[f"f{i}"] for i in range(3)]
        # The model got the raw features: its answer is the raw dot product.
        w, b = (W_A, 0.5) if answer["variant"] == "a" else (W_B, -0.5)
        assert answer["prediction"] == pytest.approx(float(np.dot(x, w) + b), rel=1e-5)
        for role in ("arm", "shadow"):
            _, _, keys, logged, prediction, _ = rows[f"{answer['request_id']}/{role}"]
            logged = _as_dict(logged)
            assert sorted(keys) == ["f1", "f2"]
            assert logged["f2"] == x[2]
            assert logged["f1"] == hash_value(SECRET.encode(), "e", "f1", x[1])
            assert logged["f1"] != x[1]
            assert float(logged["f1"]).is_integer() and 0 <= logged["f1"] < 2**HASH_BITS
            if role == "shadow":
                assert prediction == pytest.approx(0.5 * sum(x), rel=1e-5)
        hashes.append(_as_dict(rows[f"{answer['request_id']}/arm"][3])["f1"])
    assert hashes[0] == hashes[1]
    assert hashes[3] == hashes[4]
    assert len({hashes[0], hashes[2], hashes[3]}) == 3


def test_an_experiment_without_redaction_logs_every_feature(
    keyed: TestClient, keyed_settings: Settings
) -> None:
    running_experiment(keyed, "e", redaction={"drop": ["f0"]})
    running_experiment(keyed, "open")
    redacted = keyed.post("/v1/experiments/e/predict", json={"features": [1.0, 2.0, 3.0]})
    cleared = keyed.patch("/v1/experiments/e", json={"redaction": None})
    assert cleared.status_code == 200, cleared.text
    after = keyed.post("/v1/experiments/e/predict", json={"features": [1.0, 2.0, 3.0]})
    other = keyed.post("/v1/experiments/open/predict", json={"features": [4.0, 5.0, 6.0]})
    flush(keyed)
    rows = _predictions(keyed_settings, "e") | _predictions(keyed_settings, "open")
    assert sorted(rows[f"{redacted.json()['request_id']}/arm"][2]) == ["f1", "f2"]
    assert _as_dict(rows[f"{after.json()['request_id']}/arm"][3]) == {
        "f0": 1.0,
        "f1": 2.0,
        "f2": 3.0,
    }
    assert _as_dict(rows[f"{other.json()['request_id']}/arm"][3]) == {
        "f0": 4.0,
        "f1": 5.0,
        "f2": 6.0,
    }


def test_without_the_secret_a_hashed_feature_is_dropped_not_logged_raw(
    tmp_path: Path, keyed_settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    with make_client(keyed_settings) as keyed:
        running_experiment(keyed, "e", redaction={"hash": ["f1"]})
    # The service restarts without the secret: the policy stays, the key is gone.
    unkeyed = make_settings(tmp_path / "home", keyed_settings.database_url)
    with make_client(unkeyed) as client, caplog.at_level(logging.WARNING):
        answer = client.post("/v1/experiments/e/predict", json={"features": [1.0, 2.0, 3.0]})
        assert answer.status_code == 200, answer.text
        flush(client)
    row = _predictions(unkeyed, "e")[f"{answer.json()['request_id']}/arm"]
    assert _as_dict(row[3]) == {"f0": 1.0, "f2": 3.0}
    assert any("BANDITLAKE_REDACTION_SECRET" in r.getMessage() for r in caplog.records)


def test_the_secret_appears_nowhere(
    keyed: TestClient, keyed_settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    seen: list[str] = []
    keyed.event_hooks["response"].append(lambda r: seen.append(r.read().decode("latin-1")))
    create_experiment(keyed, "e", redaction={"hash": ["f1"]}, retention_days=30)
    upload(keyed, "e", "a", linear_model(W_A, 0.5))
    start(keyed, "e")
    keyed.patch("/v1/experiments/e", json={"redaction": {"drop": ["f0"], "hash": ["f2"]}})
    keyed.patch("/v1/experiments/e", json={"redaction": {"hash": ["f0", "f1"]}})
    keyed.post("/v1/experiments/e/predict", json={"features": [1.0, 2.0, 3.0]})
    keyed.post(
        "/v1/experiments/e/predict/batch",
        json={"rows": [{"features": [float(i), 1.0, 2.0]} for i in range(20)]},
    )
    keyed.post("/v1/experiments/e/predict", json={"features": [1.0, 2.0, "x"]})
    keyed.patch("/v1/experiments/e", json={"redaction": {"hash": ["nope"]}})
    for path in ("/v1/experiments", "/v1/experiments/e", "/v1/health", "/v1/lake", "/metrics"):
        assert keyed.get(path).status_code == 200, path
    flush(keyed)
    assert len(seen) >= 10
    files = [p for p in keyed_settings.lake_root.rglob("*") if p.is_file()]
    assert any(p.suffix == ".parquet" for p in files)
    rows = lake_rows(keyed_settings, "select * from predictions")
    assert len(rows) == 21
    audits = _audit_rows(keyed)
    assert any(a["action"] == "redaction" for a in audits)
    needles = (SECRET, SECRET.encode().hex(), SECRET[:16])
    haystacks = {
        "responses": "\n".join(seen),
        "audit": json.dumps(audits),
        "lake rows": repr(rows),
        "logs": "\n".join(r.getMessage() for r in caplog.records) + caplog.text,
        "lake files": "\n".join(p.read_bytes().decode("latin-1") for p in files),
    }
    for where, text in haystacks.items():
        for needle in needles:
            assert needle not in text, f"the secret appears in the {where}"


# The hash itself.


def test_the_keyed_hash_is_an_exact_52_bit_float() -> None:
    key = SECRET.encode()
    values = [hash_value(key, "e", "f", v) for v in (0.0, 1.0, 2.5, -3.0, 1e300)]
    assert len(set(values)) == len(values)
    for h in values:
        assert h.is_integer() and 0 <= h < 2**HASH_BITS
        assert float(int(h)) == h
    assert hash_value(key, "e", "f", 41) == hash_value(key, "e", "f", 41.0)
    assert hash_value(key, "e", "f", -0.0) == hash_value(key, "e", "f", 0.0)
    # The experiment, the feature and the key are all part of it.
    assert hash_value(key, "e", "f", 1.0) != hash_value(key, "e2", "f", 1.0)
    assert hash_value(key, "e", "f", 1.0) != hash_value(key, "e", "g", 1.0)
    assert hash_value(key, "e", "f", 1.0) != hash_value(b"another key", "e", "f", 1.0)
    # Length prefixes: moving characters between the names changes the hash.
    assert hash_value(key, "ab", "c", 1.0) != hash_value(key, "a", "bc", 1.0)


def test_a_plan_changes_only_the_features_it_names() -> None:
    assert compile_redaction("e", None) is None
    assert compile_redaction("e", {"drop": [], "hash": []}) is None
    plan = compile_redaction("e", {"drop": ["a", "absent"], "hash": ["b", "gone"]})
    assert plan is not None
    named = {"a": 1.0, "b": 2.0, "c": 3.0}
    redact(plan, named, b"k")
    assert named == {"b": keyed_hash(b"k", plan.hashed[0][1], 2.0), "c": 3.0}
    unkeyed = {"a": 1.0, "b": 2.0, "c": 3.0}
    redact(plan, unkeyed, None)
    assert unkeyed == {"c": 3.0}
