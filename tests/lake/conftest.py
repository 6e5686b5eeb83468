"""Lake fixtures: a manifest in a fresh SQL store and a lake root in a temp directory.

``database_url`` comes from the suite's root conftest: SQLite, and PostgreSQL when the
server at ``BANDITLAKE_TEST_PG_URL`` is reachable (skipped otherwise).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine

from lake import metadata


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = create_engine(database_url)
    metadata.create_all(engine, tables=[metadata.tables["lake_files"]])
    yield engine
    engine.dispose()


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "lake"
