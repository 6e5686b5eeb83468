"""Attacks by a client holding only the serve token, through HTTP against a running app.

Each test reproduces a probe that once succeeded: predicting request ids to forge
feedback, poisoning a guardrail with inputs the model cannot take, unbounded bodies and
replayed feedback.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.serving.pool import VariantKey
from api.settings import Settings
from tests.api.helpers import create_experiment, error_code, start, upload
from tests.api.serving_support import flush, lake_rows, running_experiment
from tests.conftest import make_client, make_settings
from tests.onnx_models import linear_model

ADMIN = {"Authorization": "Bearer admin-secret-token"}
SERVE = {"Authorization": "Bearer serve-secret-token"}


@pytest.fixture
def secured(tmp_path: Path, sqlite_url: str) -> Iterator[tuple[TestClient, Settings]]:
    from api.store.migrate import upgrade

    upgrade(sqlite_url)
    settings = make_settings(
        tmp_path / "home",
        sqlite_url,
        admin_token="admin-secret-token",
        serve_token="serve-secret-token",
        reallocate=False,
        guardrail_min_requests=20,
        max_body_bytes=20_000,
        max_upload_bytes=60_000,
    )
    # The admin token by default (it opens every route); serving calls send the serve one.
    with make_client(settings, headers=ADMIN) as client:
        yield client, settings


def _two_arms(client: TestClient, name: str, **body: object) -> None:
    create_experiment(client, name, **body)
    upload(client, name, "a", linear_model([1.0, 2.0, 3.0]))
    upload(client, name, "b", linear_model([-1.0, 0.5, 2.0]))
    start(client, name)


# -- request ids ---------------------------------------------------------------------


def _untemper(y: int) -> int:
    """Invert the Mersenne Twister's output tempering (MT19937)."""

    def unshift_right(value: int, shift: int) -> int:
        result = value
        for _ in range(32 // shift + 1):
            result = value ^ (result >> shift)
        return result

    def unshift_left(value: int, shift: int, mask: int) -> int:
        result = value
        for _ in range(32 // shift + 1):
            result = value ^ ((result << shift) & mask)
        return result & 0xFFFFFFFF

    y = unshift_right(y, 18)
    y = unshift_left(y, 15, 0xEFC60000)
    y = unshift_left(y, 7, 0x9D2C5680)
    return unshift_right(y, 11)


def _clone_generator(ids: list[str]) -> random.Random:
    """Rebuild a ``random.Random`` from 208 ids made of its 96-bit outputs, if they were."""
    words: list[int] = []
    for rid in ids:
        value = int(rid.partition(".")[2][:24], 16)
        words += [(value >> (32 * i)) & 0xFFFFFFFF for i in range(3)]
    state = [_untemper(w) for w in words[:624]]
    clone = random.Random()
    clone.setstate((3, (*state, 624), None))
    return clone


def test_request_ids_cannot_be_predicted_or_forged(
    secured: tuple[TestClient, Settings],
) -> None:
    client, settings = secured
    _two_arms(client, "e", sticky=True)

    # Sticky routing with unit ids consumes no randomness, so 208 consecutive ids are all
    # a client needs to rebuild a Mersenne Twister that made them.
    rows = [{"features": [1, 2, 3], "unit_id": f"u{i}"} for i in range(208)]
    batch = client.post("/v1/experiments/e/predict/batch", json={"rows": rows}, headers=SERVE)
    assert batch.status_code == 200, batch.text
    seen = [r["request_id"] for r in batch.json()["results"]]
    clone = _clone_generator(seen)
    guesses = [f"1.{clone.getrandbits(96):024x}" for _ in range(5)]

    # Feedback sent ahead for the guessed ids is refused and stored nowhere.
    for guess in guesses:
        forged = client.post("/v1/feedback", json={"request_id": guess, "reward": 1}, headers=SERVE)
        assert forged.status_code == 422, forged.text
        assert error_code(forged) == "invalid_request_id"
    issued = []
    for i in range(5):
        one = client.post(
            "/v1/experiments/e/predict",
            json={"features": [1, 2, 3], "unit_id": f"v{i}"},
            headers=SERVE,
        )
        issued.append(one.json()["request_id"])
    nonces = {i.partition(".")[2][:24] for i in issued}
    assert nonces.isdisjoint(g.partition(".")[2] for g in guesses)

    # A tampered id (one hex digit changed) is not one this deployment issued.
    real = issued[0]
    tampered = real[:-1] + ("0" if real[-1] != "0" else "1")
    response = client.post(
        "/v1/feedback", json={"request_id": tampered, "reward": 1}, headers=SERVE
    )
    assert error_code(response) == "invalid_request_id"
    accepted = client.post("/v1/feedback", json={"request_id": real, "reward": 1}, headers=SERVE)
    assert accepted.status_code == 202, accepted.text
    flush(client)
    assert lake_rows(settings, "select request_id from feedback") == [(real,)]


def test_replicas_share_the_request_id_key(tmp_path: Path, sqlite_url: str) -> None:
    from api.store.migrate import upgrade

    upgrade(sqlite_url)
    # Replicas share the SQL store and the model files; nothing else of their state.
    one = make_settings(tmp_path / "home", sqlite_url, reallocate=False)
    two = make_settings(tmp_path / "home", sqlite_url, reallocate=False)
    with make_client(one) as first:
        running_experiment(first)
        rid = first.post("/v1/experiments/e/predict", json={"features": [1, 2, 3]}).json()[
            "request_id"
        ]
    # Another replica (same SQL store, its own process state) accepts the id: the key was
    # generated at the first start and is read back from the store, not made anew.
    with make_client(two) as second:
        answer = second.post("/v1/feedback", json={"request_id": rid, "reward": 1})
        assert answer.status_code == 202, answer.text
    # A replica configured with another secret rejects it.
    other = make_settings(
        tmp_path / "home", sqlite_url, reallocate=False, request_id_secret="x" * 32
    )
    with make_client(other) as third:
        answer = third.post("/v1/feedback", json={"request_id": rid, "reward": 1})
        assert error_code(answer) == "invalid_request_id"


def test_a_short_request_id_secret_is_refused(tmp_path: Path, sqlite_url: str) -> None:
    with pytest.raises(ValueError, match="at least 16 bytes"):
        make_settings(tmp_path, sqlite_url, request_id_secret="short")


# -- guardrails ----------------------------------------------------------------------


def _guarded_experiment(client: TestClient) -> None:
    _two_arms(client, "g", guardrails={"max_error_rate": 0.05})


def test_inputs_a_model_cannot_take_do_not_pull_a_healthy_variant(
    secured: tuple[TestClient, Settings],
) -> None:
    client, settings = secured
    _guarded_experiment(client)
    for i in range(60):
        ok = client.post("/v1/experiments/g/predict", json={"features": [1, 2, i]}, headers=SERVE)
        assert ok.status_code == 200, ok.text

    # Finite in float64, beyond float32: refused before any model runs, naming the feature.
    for value in (1e39, -1e308):
        response = client.post(
            "/v1/experiments/g/predict", json={"features": [0, value, 0]}, headers=SERVE
        )
        assert response.status_code == 422, response.text
        assert error_code(response) == "feature_out_of_range"
        assert "features[1]" in response.json()["error"]["message"]
    named = client.post(
        "/v1/experiments/g/predict",
        json={"features": {"f0": 0, "f1": 0, "f2": 1e300}},
        headers=SERVE,
    )
    assert error_code(named) == "feature_out_of_range"
    assert "features.f2" in named.json()["error"]["message"]

    # Within float32, but the model overflows to infinity on them: 400 such requests.
    attacks = [
        client.post(
            "/v1/experiments/g/predict", json={"features": [3e38, 3e38, 3e38]}, headers=SERVE
        )
        for _ in range(200)
    ] + [
        client.post(
            "/v1/experiments/g/predict/batch",
            json={"rows": [{"features": [3e38, -3e38, 3e38]}] * 200},
            headers=SERVE,
        )
    ]
    assert {error_code(r) for r in attacks[:-1]} == {"input_rejected_by_model"}
    batch_rows = attacks[-1].json()["results"]
    assert {r["error"]["code"] for r in batch_rows} == {"input_rejected_by_model"}

    flush(client)
    reallocated = client.post("/v1/experiments/g/reallocate", headers=ADMIN)
    assert reallocated.status_code == 200, reallocated.text
    assert set(reallocated.json()["weights"]) == {"a", "b"}
    variants = client.get("/v1/experiments/g/variants", headers=ADMIN).json()
    assert {v["name"]: v["status"] for v in variants} == {"a": "active", "b": "active"}
    counts = lake_rows(
        settings, "select status, count(*) from predictions group by status order by status"
    )
    assert counts == [("ok", 60), ("rejected", 400)]


def test_a_variant_that_fails_everything_is_still_pulled(
    secured: tuple[TestClient, Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    client, _ = secured
    _guarded_experiment(client)
    model = client.app.state.pool.get(VariantKey("g", "a"))  # type: ignore[attr-defined]

    def broken(*_: object, **__: object) -> object:
        raise RuntimeError("device lost")

    monkeypatch.setattr(model.session, "run", broken)
    codes = [
        client.post("/v1/experiments/g/predict", json={"features": [1, 2, 3]}, headers=SERVE)
        for _ in range(80)
    ]
    failed = [r for r in codes if r.status_code == 503]
    assert failed, "variant a should have been chosen at least once"
    assert {error_code(r) for r in failed} == {"model_error"}
    flush(client)
    assert client.post("/v1/experiments/g/reallocate", headers=ADMIN).status_code == 200
    variants = client.get("/v1/experiments/g/variants", headers=ADMIN).json()
    statuses = {v["name"]: v["status"] for v in variants}
    assert statuses == {"a": "disabled", "b": "active"}


# -- bodies --------------------------------------------------------------------------


def test_bodies_over_the_limit_are_refused_before_parsing(
    secured: tuple[TestClient, Settings],
) -> None:
    client, settings = secured
    _guarded_experiment(client)
    row = '{"features": [1.0, 2.0, 3.0]}'
    big = ('{"rows": [' + ",".join([row] * 1000) + "]}").encode()
    assert len(big) > 20_000
    declared = client.post(
        "/v1/experiments/g/predict/batch",
        content=big,
        headers={**SERVE, "content-type": "application/json"},
    )
    assert declared.status_code == 413
    assert error_code(declared) == "payload_too_large"
    assert "20000-byte limit" in declared.json()["error"]["message"]

    # Chunked: no Content-Length, the bytes are counted as they arrive.
    def chunks() -> Iterator[bytes]:
        for i in range(0, len(big), 4096):
            yield big[i : i + 4096]

    chunked = client.post(
        "/v1/experiments/g/predict/batch",
        content=chunks(),
        headers={**SERVE, "content-type": "application/json"},
    )
    assert chunked.status_code == 413
    assert error_code(chunked) == "payload_too_large"
    feedback = client.post(
        "/v1/feedback",
        content=b'{"request_id": "' + b"x" * 30_000 + b'"}',
        headers={**SERVE, "content-type": "application/json"},
    )
    assert feedback.status_code == 413
    # Nothing of the refused batches reached the lake; a body under the limit still serves.
    small = client.post(
        "/v1/experiments/g/predict/batch",
        json={"rows": [{"features": [1.0, 2.0, 3.0]}] * 10},
        headers=SERVE,
    )
    assert small.status_code == 200
    flush(client)
    assert lake_rows(settings, "select count(*) from predictions") == [(10,)]


def test_model_uploads_stream_to_disk_under_their_own_limit(
    secured: tuple[TestClient, Settings],
) -> None:
    client, settings = secured
    response = client.post(
        "/v1/experiments",
        json={"name": "u", "reward": {"kind": "binary"}},
        headers=ADMIN,
    )
    assert response.status_code == 201
    too_big = b"\x08\x08" + b"\x00" * 70_000
    response = client.post(
        "/v1/experiments/u/variants",
        data={"name": "big"},
        files={"model": ("m.onnx", too_big, "application/octet-stream")},
        headers=ADMIN,
    )
    assert response.status_code == 413, response.text
    assert error_code(response) == "payload_too_large"
    # A model over the 20 kB body limit of other routes but under the upload limit loads.
    fits = linear_model([0.5] * 10_000)
    assert 20_000 < len(fits) <= 60_000
    response = client.post(
        "/v1/experiments/u/variants",
        data={"name": "fits"},
        files={"model": ("m.onnx", fits, "application/octet-stream")},
        headers=ADMIN,
    )
    assert response.status_code == 201, response.text
    # No spooled temp file is left behind, whichever way the upload went.
    left = sorted(p.name for p in settings.models_dir.iterdir())
    assert left == [f"{response.json()['sha256']}.onnx"]


# -- feedback replays ----------------------------------------------------------------


def test_repeated_feedback_is_stored_and_counted_once(
    client: TestClient, settings: Settings
) -> None:
    running_experiment(client)
    rid = client.post("/v1/experiments/e/predict", json={"features": [1, 2, 3]}).json()[
        "request_id"
    ]
    answers = [
        client.post("/v1/feedback", json={"request_id": rid, "reward": r}).json() for r in (1, 1, 0)
    ]
    assert answers == [
        {"accepted": 1, "duplicate": False},
        {"accepted": 0, "duplicate": True},
        {"accepted": 0, "duplicate": True},
    ]
    batch = client.post(
        "/v1/feedback/batch",
        json={"items": [{"request_id": rid, "reward": 1}, {"request_id": rid, "reward": 0}]},
    )
    assert batch.json() == {"accepted": 0, "duplicates": 2}
    metrics = client.get("/metrics").text
    total = sum(
        float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith("banditlake_feedback_total{")
    )
    flush(client)
    stored = lake_rows(settings, "select count(*) from feedback")[0][0]
    decided = lake_rows(settings, "select count(reward) from decisions")[0][0]
    assert (total, stored, decided) == (1.0, 1, 1)
    assert "banditlake_feedback_duplicates_total 4.0" in metrics
