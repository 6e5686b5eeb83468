"""Lake fixtures: a manifest in a fresh SQL store and a lake root on each backend.

``database_url`` comes from the suite's root conftest: SQLite, and PostgreSQL when the
server at ``BANDITLAKE_TEST_PG_URL`` is reachable (skipped otherwise).

``root`` is parametrized over the two storage backends, so every test that touches the
lake's files runs twice: on a temp directory (``local``) and under a fresh bucket of the
moto S3 server the session starts (``s3``), reached over HTTP with the standard
``AWS_*`` variables set for the test. ``storage`` is the same root opened with
:func:`lake.storage.open_storage`; tests reach files through it, never through pathlib,
so one test body covers both.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine

from lake import metadata
from lake.storage import LakeStorage, open_storage
from tests.s3_server import S3Server, s3_server  # noqa: F401  (the session fixture)

BACKENDS = ("local", "s3")


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = create_engine(database_url)
    metadata.create_all(engine, tables=[metadata.tables["lake_files"]])
    yield engine
    engine.dispose()


@pytest.fixture(params=BACKENDS)
def root(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """The lake root as a URI string: a missing directory, or ``s3://<new bucket>/lake``."""
    if request.param == "local":
        return str(tmp_path / "lake")
    server: S3Server = request.getfixturevalue("s3_server")
    for name, value in server.environment().items():
        monkeypatch.setenv(name, value)
    return f"s3://{server.create_bucket()}/lake"


@pytest.fixture
def storage(root: str) -> LakeStorage:
    return open_storage(root)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Run PostgreSQL with the local backend only.

    The SQL dialect and the storage backend are independent: PostgreSQL with a local lake
    and SQLite with S3 cover both sides, and PostgreSQL with S3 would only double the time
    (``make test`` has 15 minutes on two cores). Those items are deselected (pytest
    reports the count), never skipped.
    """
    keep: list[pytest.Item] = []
    dropped: list[pytest.Item] = []
    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        backend = params.get("root", params.get("storage"))
        if params.get("database_url") == "postgresql" and backend == "s3":
            dropped.append(item)
        else:
            keep.append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep
