"""Variant uploads are validated and stored by checksum; enable and disable rebalance."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.settings import Settings
from tests.api.helpers import create_experiment, error_code, start, upload
from tests.conftest import make_client, make_settings
from tests.onnx_models import int_input_model, linear_model, rank3_model


def test_upload_success(client: TestClient, settings: Settings) -> None:
    create_experiment(client, "e")
    model = linear_model([0.5, -1.0])
    body = upload(client, "e", "v1", model, features='["age", "income"]')
    assert body["sha256"] == hashlib.sha256(model).hexdigest()
    assert body["input_shape"] == [None, 2]
    assert body["features"] == ["age", "income"]
    assert body["output"] == "y"
    assert body["provider"] == "CPUExecutionProvider"
    assert body["status"] == "active"
    stored = settings.models_dir / f"{body['sha256']}.onnx"
    assert stored.read_bytes() == model
    assert [p.name for p in settings.models_dir.iterdir()] == [stored.name]
    listed = client.get("/v1/experiments/e/variants").json()
    assert [v["name"] for v in listed] == ["v1"]
    assert client.get("/v1/experiments/e/variants/v1").json()["sha256"] == body["sha256"]


def test_default_feature_names_and_double_input(client: TestClient) -> None:
    from onnx import TensorProto

    create_experiment(client, "e")
    body = upload(client, "e", "d", linear_model([1, 2, 3], dtype=TensorProto.DOUBLE))
    assert body["features"] == ["f0", "f1", "f2"]


@pytest.mark.parametrize(
    ("model", "features", "output", "code", "phrase"),
    [
        (b"not an onnx model at all", None, None, "invalid_model", "not a valid ONNX model"),
        (linear_model([1.0])[:-7], None, None, "invalid_model", "not a valid ONNX model"),
        (int_input_model(), None, None, "invalid_model_input", "float tensor"),
        (rank3_model(), None, None, "invalid_model_input", "[N, d]"),
        (linear_model([1.0, 2.0], batch_dim=4), None, None, "invalid_model_input", "fixed batch"),
        (linear_model([1.0, 2.0]), '["a"]', None, "feature_count_mismatch", "takes 2"),
        (linear_model([1.0, 2.0]), '["a", "a"]', None, "invalid_features", "repeats"),
        (linear_model([1.0, 2.0]), "a,b", None, "invalid_features", "JSON"),
        (linear_model([1.0, 2.0]), '{"a": 1}', None, "invalid_features", "list of strings"),
        (linear_model([1.0, 2.0]), None, "proba", "invalid_model_output", "'proba'"),
    ],
)
def test_upload_rejects_bad_models(
    client: TestClient,
    settings: Settings,
    model: bytes,
    features: str | None,
    output: str | None,
    code: str,
    phrase: str,
) -> None:
    create_experiment(client, "e")
    response = client.post(
        "/v1/experiments/e/variants",
        data={
            "name": "bad",
            **({"features": features} if features else {}),
            **({"output": output} if output else {}),
        },
        files={"model": ("m.onnx", model)},
    )
    assert response.status_code == 422, response.text
    assert error_code(response) == code
    assert phrase in response.json()["error"]["message"]
    assert client.get("/v1/experiments/e/variants").json() == []
    assert not settings.models_dir.exists() or not any(settings.models_dir.iterdir())


@pytest.mark.parametrize("name", ["../../etc/passwd", "a/b", "", ".hidden", "x" * 65])
def test_variant_name_cannot_be_a_path(client: TestClient, settings: Settings, name: str) -> None:
    create_experiment(client, "e")
    response = client.post(
        "/v1/experiments/e/variants",
        data={"name": name},
        files={"model": ("../../x.onnx", linear_model([1.0]))},
    )
    assert response.status_code == 422
    assert not (settings.home / "x.onnx").exists()


def test_invalid_role_and_missing_file(client: TestClient) -> None:
    create_experiment(client, "e")
    response = client.post(
        "/v1/experiments/e/variants",
        data={"name": "v", "role": "boss"},
        files={"model": ("m", linear_model([1.0]))},
    )
    assert response.status_code == 422
    assert error_code(response) == "invalid_role"
    missing = client.post("/v1/experiments/e/variants", data={"name": "v"})
    assert missing.status_code == 422
    assert "model" in missing.json()["error"]["message"]


def test_duplicate_variant_and_unknown_experiment(client: TestClient) -> None:
    create_experiment(client, "e")
    upload(client, "e", "v")
    again = client.post(
        "/v1/experiments/e/variants",
        data={"name": "v"},
        files={"model": ("m", linear_model([1.0, 2.0, 3.0]))},
    )
    assert again.status_code == 409
    assert error_code(again) == "duplicate_name"
    nowhere = client.post(
        "/v1/experiments/ghost/variants",
        data={"name": "v"},
        files={"model": ("m", linear_model([1.0]))},
    )
    assert nowhere.status_code == 404
    assert client.get("/v1/experiments/ghost/variants").status_code == 404
    assert client.get("/v1/experiments/e/variants/ghost").status_code == 404
    assert (
        client.patch("/v1/experiments/e/variants/ghost", json={"enabled": False}).status_code == 404
    )


def test_oversize_upload_is_413(tmp_path: Path, sqlite_url: str) -> None:
    from api.store.migrate import upgrade

    upgrade(sqlite_url)
    settings = make_settings(tmp_path / "home", sqlite_url, max_upload_bytes=1000)
    with make_client(settings) as client:
        create_experiment(client, "e")
        # Just over the limit: refused while reading the file.
        small = client.post(
            "/v1/experiments/e/variants", data={"name": "v"}, files={"model": ("m", b"\0" * 1001)}
        )
        assert small.status_code == 413
        assert error_code(small) == "payload_too_large"
        # Far over the limit: refused from the Content-Length before parsing the form.
        huge = client.post(
            "/v1/experiments/e/variants",
            data={"name": "v"},
            files={"model": ("m", b"\0" * 200_000)},
        )
        assert huge.status_code == 413
        assert client.get("/v1/experiments/e/variants").json() == []


def test_enable_disable_rebalances_running_allocation(client: TestClient) -> None:
    create_experiment(client, "e")
    for name in ("a", "b", "c"):
        upload(client, "e", name)
    upload(client, "e", "s", role="shadow")
    start(client, "e")
    put = client.put(
        "/v1/experiments/e/allocation", json={"weights": {"a": 0.5, "b": 0.3, "c": 0.2}}
    )
    assert put.status_code == 200
    off = client.patch("/v1/experiments/e/variants/c", json={"enabled": False})
    assert off.status_code == 200
    assert off.json()["status"] == "disabled"
    allocation = client.get("/v1/experiments/e/allocation").json()
    assert allocation["version"] == 3
    assert set(allocation["weights"]) == {"a", "b"}
    assert allocation["weights"]["a"] / allocation["weights"]["b"] == pytest.approx(0.5 / 0.3)
    assert sum(allocation["weights"].values()) == pytest.approx(1.0)
    assert "'c' disabled" in allocation["reason"]
    on = client.patch("/v1/experiments/e/variants/c", json={"status": "active"})
    assert on.status_code == 200
    allocation = client.get("/v1/experiments/e/allocation").json()
    assert allocation["weights"]["c"] == pytest.approx(1 / 3)
    assert allocation["weights"]["a"] / allocation["weights"]["b"] == pytest.approx(0.5 / 0.3)
    # Adding an arm while running keeps the others' relative weights too.
    upload(client, "e", "d")
    allocation = client.get("/v1/experiments/e/allocation").json()
    assert allocation["weights"]["d"] == pytest.approx(0.25)
    assert allocation["weights"]["a"] / allocation["weights"]["b"] == pytest.approx(0.5 / 0.3)
    # Shadows never receive weight.
    assert "s" not in allocation["weights"]


def test_cannot_disable_last_active_arm_of_running_experiment(client: TestClient) -> None:
    create_experiment(client, "e")
    upload(client, "e", "only")
    start(client, "e")
    response = client.patch("/v1/experiments/e/variants/only", json={"enabled": False})
    assert response.status_code == 409
    assert error_code(response) == "last_active_arm"


@pytest.mark.parametrize(
    "body", [{}, {"enabled": True, "status": "active"}, {"status": "failed"}, {"enabled": "maybe"}]
)
def test_variant_patch_validation(client: TestClient, body: dict[str, object]) -> None:
    create_experiment(client, "e")
    upload(client, "e", "v")
    response = client.patch("/v1/experiments/e/variants/v", json=body)
    assert response.status_code == 422


def test_failed_model_is_marked_and_excluded(tmp_path: Path, sqlite_url: str) -> None:
    from api.store.migrate import upgrade

    upgrade(sqlite_url)
    settings = make_settings(tmp_path / "home", sqlite_url)
    with make_client(settings) as client:
        create_experiment(client, "e")
        good = upload(client, "e", "good")
        bad = upload(client, "e", "bad", linear_model([4.0, 5.0, 6.0]))
    (settings.models_dir / f"{bad['sha256']}.onnx").write_bytes(b"corrupted on disk")
    with make_client(settings) as client:
        variants = {v["name"]: v for v in client.get("/v1/experiments/e/variants").json()}
        assert variants["bad"]["status"] == "failed"
        assert variants["bad"]["provider"] is None
        assert variants["bad"]["status_reason"]
        assert variants["good"]["status"] == "active"
        assert variants["good"]["sha256"] == good["sha256"]
        start(client, "e")
        assert client.get("/v1/experiments/e/allocation").json()["weights"] == {"good": 1.0}
        enable = client.patch("/v1/experiments/e/variants/bad", json={"enabled": True})
        assert enable.status_code == 409
        health = client.get("/v1/health").json()
        assert health["models"]["e/bad"]["failed"]
        assert client.get("/readyz").json()["degraded"] == ["models"]


def _serves(client: TestClient, variant: str) -> bool:
    """Whether ``variant`` answers a predict within a few refresh intervals."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        body = client.post("/v1/experiments/e/predict", json={"features": [1, 2, 3]}).json()
        if body.get("variant") == variant:
            return True
        time.sleep(0.05)
    return False


def test_variant_disabled_before_a_restart_can_be_enabled(tmp_path: Path, sqlite_url: str) -> None:
    from api.store.migrate import upgrade

    upgrade(sqlite_url)
    settings = make_settings(tmp_path / "home", sqlite_url)
    with make_client(settings) as client:
        create_experiment(client, "e")
        upload(client, "e", "a")
        upload(client, "e", "b", linear_model([0.0, 0.0, 1.0]))
        start(client, "e")
        off = client.patch("/v1/experiments/e/variants/b", json={"enabled": False})
        assert off.status_code == 200, off.text
    # Two processes restart over the same store; the start loads no session for "b".
    with make_client(settings) as first, make_client(settings) as second:
        on = first.patch("/v1/experiments/e/variants/b", json={"enabled": True})
        assert on.status_code == 200, on.text
        assert (on.json()["status"], on.json()["provider"]) == ("active", "CPUExecutionProvider")
        put = first.put("/v1/experiments/e/allocation", json={"weights": {"a": 0.0, "b": 1.0}})
        assert put.status_code == 200, put.text
        assert _serves(first, "b")
        # The other process loads the model on its next snapshot refresh.
        assert _serves(second, "b")
        listed = {v["name"]: v for v in second.get("/v1/experiments/e/variants").json()}
        assert listed["b"]["provider"] == "CPUExecutionProvider"


def test_enabling_refuses_when_the_model_cannot_load(tmp_path: Path, sqlite_url: str) -> None:
    from api.store.migrate import upgrade

    upgrade(sqlite_url)
    settings = make_settings(tmp_path / "home", sqlite_url)
    with make_client(settings) as client:
        create_experiment(client, "e")
        upload(client, "e", "a")
        b = upload(client, "e", "b", linear_model([0.0, 0.0, 1.0]))
        start(client, "e")
        assert client.patch("/v1/experiments/e/variants/b", json={"enabled": False}).is_success
    (settings.models_dir / f"{b['sha256']}.onnx").write_bytes(b"corrupted on disk")
    with make_client(settings) as client:
        on = client.patch("/v1/experiments/e/variants/b", json={"enabled": True})
        assert on.status_code == 409
        assert error_code(on) == "variant_failed"
        message = on.json()["error"]["message"]
        assert message.startswith("Variant 'b' cannot be enabled: its model does not load (")
        # The file is checked against its checksum before ONNX Runtime sees it.
        assert f"not {b['sha256']} as recorded for the variant" in message
        listed = {v["name"]: v for v in client.get("/v1/experiments/e/variants").json()}
        assert listed["b"]["status"] == "disabled"
        assert client.get("/v1/experiments/e/allocation").json()["weights"] == {"a": 1.0}
