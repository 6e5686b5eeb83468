"""Operations endpoints: open probes that reveal nothing, metrics and health behind a token."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.settings import Settings
from api.store.migrate import upgrade
from tests.api.helpers import create_experiment, error_code, start, upload
from tests.conftest import make_client, make_settings
from tests.onnx_models import linear_model

ADMIN = {"Authorization": "Bearer admin-secret"}
SERVE = {"Authorization": "Bearer serve-secret"}
METRICS = {"Authorization": "Bearer metrics-secret"}
PROBE_WORDS = {"ok", "failing", "unavailable"}


def _with_a_failed_model(settings: Settings, headers: dict[str, str]) -> None:
    """Experiment ``secret-exp`` with arm ``good`` and arm ``bad``, whose file is corrupted."""
    with make_client(settings, headers=headers) as client:
        create_experiment(client, "secret-exp")
        upload(client, "secret-exp", "good")
        bad = upload(client, "secret-exp", "bad", linear_model([4.0, 5.0, 6.0]))
        start(client, "secret-exp")
    (settings.models_dir / f"{bad['sha256']}.onnx").write_bytes(b"corrupted on disk")


@pytest.fixture
def secured(tmp_path: Path, sqlite_url: str) -> Iterator[tuple[TestClient, Settings]]:
    upgrade(sqlite_url)
    settings = make_settings(
        tmp_path / "home",
        sqlite_url,
        admin_token="admin-secret",
        serve_token="serve-secret",
        metrics_token="metrics-secret",
    )
    _with_a_failed_model(settings, ADMIN)
    with make_client(settings) as client:
        yield client, settings


def test_probes_are_open_and_reveal_no_names_paths_or_errors(
    secured: tuple[TestClient, Settings],
) -> None:
    client, settings = secured
    assert client.get("/healthz").json() == {"status": "ok"}
    response = client.get("/readyz")
    assert response.status_code == 200
    body = response.json()
    # A model that failed to load is reported as a coarse word: predict still serves.
    assert body == {
        "ready": True,
        "checks": {"store": "ok", "lake": "ok", "models": "failing"},
        "degraded": ["models"],
    }
    text = json.dumps(body)
    for secret in ("secret-exp", "bad", "good", str(settings.home), "onnx", "Error"):
        assert secret not in text


@pytest.mark.parametrize("path", ["/metrics", "/v1/health"])
def test_metrics_and_health_need_the_metrics_or_admin_token(
    secured: tuple[TestClient, Settings], path: str
) -> None:
    client, _ = secured
    missing = client.get(path)
    assert missing.status_code == 401
    assert error_code(missing) == "missing_token"
    assert missing.headers["www-authenticate"] == "Bearer"
    assert error_code(client.get(path, headers={"Authorization": "Bearer guess"})) == (
        "invalid_token"
    )
    wrong = client.get(path, headers=SERVE)
    assert wrong.status_code == 403
    assert error_code(wrong) == "wrong_role"
    assert client.get(path, headers=METRICS).status_code == 200
    assert client.get(path, headers=ADMIN).status_code == 200


def test_the_metrics_token_opens_nothing_else(secured: tuple[TestClient, Settings]) -> None:
    client, _ = secured
    policy = client.get("/v1/experiments", headers=METRICS)
    assert policy.status_code == 403
    assert error_code(policy) == "wrong_role"
    predict = client.post(
        "/v1/experiments/secret-exp/predict", json={"features": [1, 2, 3]}, headers=METRICS
    )
    assert predict.status_code == 403
    assert error_code(predict) == "wrong_role"


def test_detailed_health_names_the_failed_model(secured: tuple[TestClient, Settings]) -> None:
    client, _ = secured
    health = client.get("/v1/health", headers=METRICS).json()
    assert health["ready"] is True
    assert health["degraded"] == ["models"]
    assert health["models"]["secret-exp/good"] == {
        "provider": "CPUExecutionProvider",
        "failed": None,
    }
    assert health["models"]["secret-exp/bad"]["provider"] is None
    assert health["models"]["secret-exp/bad"]["failed"]
    metrics = client.get("/metrics", headers=METRICS).text
    assert 'experiment="secret-exp"' in metrics


def test_without_tokens_metrics_and_health_stay_open_to_loopback(
    tmp_path: Path, sqlite_url: str
) -> None:
    upgrade(sqlite_url)
    settings = make_settings(tmp_path / "home", sqlite_url)
    with make_client(settings) as client:
        create_experiment(client, "e")
        upload(client, "e", "a")
        assert client.get("/metrics").status_code == 200
        health = client.get("/v1/health")
        assert health.status_code == 200
        assert health.json()["models"]["e/a"]["provider"] == "CPUExecutionProvider"
        assert client.get("/readyz").json()["degraded"] == []


def test_a_metrics_token_alone_keeps_the_policy_api_loopback_only(
    tmp_path: Path, sqlite_url: str
) -> None:
    upgrade(sqlite_url)
    settings = make_settings(tmp_path / "home", sqlite_url, metrics_token="metrics-secret")
    with make_client(settings, client=("10.1.2.3", 5000)) as remote:
        assert remote.get("/metrics", headers=METRICS).status_code == 200
        assert remote.get("/metrics").status_code == 401
        assert remote.get("/readyz").status_code == 200
        refused = remote.get("/v1/experiments", headers=METRICS)
        assert refused.status_code == 403
        assert error_code(refused) == "loopback_only"
