"""Bearer tokens: 401 without or with an unknown token, 403 with the wrong role."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.store.migrate import upgrade
from tests.conftest import make_client, make_settings

ADMIN = {"Authorization": "Bearer admin-secret"}
SERVE = {"Authorization": "Bearer serve-secret"}


@pytest.fixture
def secured(tmp_path: Path, sqlite_url: str) -> TestClient:
    upgrade(sqlite_url)
    settings = make_settings(
        tmp_path / "home", sqlite_url, admin_token="admin-secret", serve_token="serve-secret"
    )
    with make_client(settings) as client:
        yield client


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/v1/experiments"),
        ("post", "/v1/experiments"),
        ("get", "/v1/experiments/e"),
        ("patch", "/v1/experiments/e"),
        ("get", "/v1/experiments/e/variants"),
        ("post", "/v1/experiments/e/variants"),
        ("patch", "/v1/experiments/e/variants/v"),
        ("get", "/v1/experiments/e/allocation"),
        ("put", "/v1/experiments/e/allocation"),
        ("get", "/v1/experiments/e/allocations"),
        ("post", "/v1/experiments/e/promote"),
        ("post", "/v1/experiments/e/rollback"),
    ],
)
def test_policy_endpoints_need_the_admin_token(secured: TestClient, method: str, path: str) -> None:
    missing = secured.request(method, path)
    assert missing.status_code == 401
    assert missing.json()["error"]["code"] == "missing_token"
    assert missing.headers["www-authenticate"] == "Bearer"
    wrong = secured.request(method, path, headers={"Authorization": "Bearer guess"})
    assert wrong.status_code == 401
    assert wrong.json()["error"]["code"] == "invalid_token"
    malformed = secured.request(method, path, headers={"Authorization": "Basic abc"})
    assert malformed.status_code == 401
    role = secured.request(method, path, headers=SERVE)
    assert role.status_code == 403
    assert role.json()["error"]["code"] == "wrong_role"


def test_admin_token_works(secured: TestClient) -> None:
    created = secured.post(
        "/v1/experiments", json={"name": "e", "reward": {"kind": "binary"}}, headers=ADMIN
    )
    assert created.status_code == 201
    assert secured.get("/v1/experiments", headers=ADMIN).status_code == 200
    assert secured.get("/healthz").status_code == 200


def test_without_tokens_only_loopback_is_served(tmp_path: Path, sqlite_url: str) -> None:
    upgrade(sqlite_url)
    settings = make_settings(tmp_path / "home", sqlite_url)
    with make_client(settings, client=("10.1.2.3", 5000)) as remote:
        response = remote.get("/v1/experiments")
        assert response.status_code == 403
        assert response.json()["error"]["code"] == "loopback_only"
        assert "10.1.2.3" in response.json()["error"]["message"]
    with make_client(settings, client=("127.0.0.1", 5000)) as local:
        assert local.get("/v1/experiments").status_code == 200
    with make_client(settings, client=("::1", 5000)) as local6:
        assert local6.get("/v1/experiments").status_code == 200


def test_serve_refuses_public_bind_without_tokens(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BANDITLAKE_")}
    env["BANDITLAKE_HOME"] = str(tmp_path / "home")
    cli = Path(sys.executable).with_name("banditlake")
    result = subprocess.run(
        [str(cli), "serve", "--host", "0.0.0.0", "--port", "0"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "Refusing to listen on 0.0.0.0" in result.stderr
    assert "Traceback" not in result.stderr
