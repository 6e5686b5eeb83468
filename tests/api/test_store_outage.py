"""A real PostgreSQL outage under a running app: 503 for the policy API, predict serves on."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from api.store.migrate import upgrade
from tests.api.helpers import error_code
from tests.api.serving_support import running_experiment
from tests.conftest import make_client, make_settings

pytestmark = pytest.mark.postgres


@contextmanager
def _outage(pg_server: str, database_url: str) -> Iterator[None]:
    """Refuse new connections to the test database and cut the open ones, then restore."""
    name = make_url(database_url).database
    admin = create_engine(pg_server, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false'))
            conn.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = :name AND pid <> pg_backend_pid()"
                ),
                {"name": name},
            )
        yield
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true'))
        admin.dispose()


@pytest.fixture
def pg_client(tmp_path: Path, pg_server: str, pg_url: str) -> Iterator[TestClient]:
    upgrade(pg_url)
    settings = make_settings(tmp_path / "home", pg_url, reallocate=False)
    with make_client(settings) as client:
        running_experiment(client)
        yield client


def test_a_store_outage_is_503_for_the_policy_api_while_predict_serves(
    pg_client: TestClient, pg_server: str, pg_url: str
) -> None:
    client = pg_client
    with _outage(pg_server, pg_url):
        for method, path, body in [
            ("get", "/v1/experiments", None),
            ("get", "/v1/experiments/e/allocation", None),
            ("post", "/v1/experiments", {"name": "f", "reward": {"kind": "binary"}}),
            ("patch", "/v1/experiments/e", {"description": "during the outage"}),
        ]:
            response = client.request(method, path, json=body)
            assert response.status_code == 503, (path, response.text)
            assert error_code(response) == "store_unavailable"
            # The caller learns the store is down, not where it lives.
            assert "5432" not in response.text
        ready = client.get("/readyz")
        assert ready.status_code == 200
        assert ready.json()["ready"] is True
        assert ready.json()["checks"]["store"] == "unavailable"
        assert "store" in ready.json()["degraded"]
        predict = client.post("/v1/experiments/e/predict", json={"features": [1, 2, 3]})
        assert predict.status_code == 200, predict.text
    # The pool reconnects by itself once the store is back.
    assert client.get("/v1/experiments").status_code == 200
    ready = client.get("/readyz").json()
    assert ready["checks"]["store"] == "ok"
    assert "store" not in ready["degraded"]
