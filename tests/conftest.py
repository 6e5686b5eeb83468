"""Shared fixtures: a migrated SQL store (SQLite, or PostgreSQL when reachable) and an app."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from api.app import create_app
from api.settings import Settings
from api.store.migrate import upgrade

PG_ADMIN_URL = os.environ.get(
    "BANDITLAKE_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)


def _pg_unreachable_reason() -> str | None:
    try:
        engine = create_engine(PG_ADMIN_URL, connect_args={"connect_timeout": 3})
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        engine.dispose()
    except Exception as exc:
        return f"PostgreSQL at {make_url(PG_ADMIN_URL).render_as_string()} unreachable: {exc}"
    return None


@pytest.fixture(scope="session")
def pg_server() -> str:
    reason = _pg_unreachable_reason()
    if reason is not None:
        pytest.skip(reason)
    return PG_ADMIN_URL


@pytest.fixture
def pg_url(pg_server: str) -> Iterator[str]:
    """A throwaway PostgreSQL database, dropped after the test."""
    name = f"banditlake_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(pg_server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(pg_server).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    url: str = request.getfixturevalue("pg_url")
    return url


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'store.db'}"


def make_settings(home: Path, database_url: str, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "home": home,
        "database_url": database_url,
        "lake_uri": str(home / "inference-lake"),  # the service's default under home
        "device": "cpu",
        **overrides,
    }
    return Settings(_env_file=None, **values)  # type: ignore[call-arg, arg-type]


@pytest.fixture
def settings(tmp_path: Path, sqlite_url: str) -> Settings:
    upgrade(sqlite_url)
    return make_settings(tmp_path / "home", sqlite_url)


def _no_server_errors(response: httpx.Response) -> None:
    # Bad input must never produce a 500: every request in the suite goes through this.
    assert response.status_code < 500 or response.status_code == 503, (
        f"{response.request.method} {response.request.url} -> {response.status_code}: "
        f"{response.read()[:500]!r}"
    )


def make_client(settings: Settings, **kwargs: object) -> TestClient:
    client = TestClient(create_app(settings), raise_server_exceptions=False, **kwargs)  # type: ignore[arg-type]
    client.event_hooks = {"request": [], "response": [_no_server_errors]}
    return client


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with make_client(settings) as c:
        yield c


@pytest.fixture(scope="session")
def spark() -> Iterator[Any]:
    """One local Spark session for the suite (its JVM takes seconds to start)."""
    from pyspark.sql import SparkSession

    session = (
        SparkSession.builder.master("local[1]")
        .appName("banditlake-tests")
        .config("spark.sql.shuffle.partitions", "1")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.session.timeZone", "UTC")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    try:
        yield session
    finally:
        session.stop()
