"""``locate_lake``: the data directory, store and lake root from the environment."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from lake import LakeLocation, default_lake_root, locate_lake


def test_defaults_follow_home(tmp_path: Path) -> None:
    home = tmp_path / "data"
    where = locate_lake({"BANDITLAKE_HOME": str(home)})
    assert where == LakeLocation(
        home, f"sqlite:///{home / 'banditlake.db'}", home / "inference-lake"
    )
    assert where.model_path("ab" * 32) == home / "models" / f"{'ab' * 32}.onnx"


def test_explicit_variables_win(tmp_path: Path) -> None:
    env = {
        "BANDITLAKE_HOME": str(tmp_path / "home"),
        "BANDITLAKE_DATABASE_URL": "postgresql+psycopg://db/banditlake",
        "BANDITLAKE_LAKE_URI": str(tmp_path / "elsewhere"),
    }
    where = locate_lake(env)
    assert where.database_url == "postgresql+psycopg://db/banditlake"
    assert where.lake_root == tmp_path / "elsewhere"
    assert where.models_dir == tmp_path / "home" / "models"


def test_relative_paths_resolve_against_cwd(tmp_path: Path) -> None:
    env = {"BANDITLAKE_HOME": "data", "BANDITLAKE_LAKE_URI": "old/lake"}
    where = locate_lake(env, cwd=tmp_path)
    assert where.home == tmp_path / "data"
    assert where.lake_root == tmp_path / "old" / "lake"


@pytest.mark.parametrize(
    ("existing", "start", "home"),
    [
        ((), ".", "var"),  # nothing yet: the service's ./var
        (("var",), ".", "var"),
        (("var",), "notebooks", "var"),  # a Jupyter kernel starts in notebooks/
        (("var", "notebooks/var"), "notebooks", "notebooks/var"),
    ],
)
def test_home_without_the_variable(
    tmp_path: Path, existing: tuple[str, ...], start: str, home: str
) -> None:
    for name in (*existing, "notebooks"):
        (tmp_path / name).mkdir(parents=True, exist_ok=True)
    where = locate_lake({}, cwd=tmp_path / start)
    assert where.home == tmp_path / home
    assert where.lake_root == tmp_path / home / "inference-lake"


def test_an_older_release_lake_is_kept(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "lake" / "predictions").mkdir(parents=True)
    with caplog.at_level(logging.WARNING, logger="lake.location"):
        root = default_lake_root(tmp_path)
    assert root == tmp_path / "lake"
    assert f"Using the lake at {tmp_path / 'lake'}, written by an older release" in caplog.text
    assert f"BANDITLAKE_LAKE_URI={tmp_path / 'lake'}" in caplog.text


def test_the_new_lake_wins_once_it_exists(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "lake").mkdir()
    (tmp_path / "inference-lake").mkdir()
    with caplog.at_level(logging.WARNING, logger="lake.location"):
        assert default_lake_root(tmp_path) == tmp_path / "inference-lake"
    assert caplog.records == []


def test_the_lake_root_is_not_an_importable_name() -> None:
    # A kernel started in the data directory must import the lake package, not the data.
    assert not default_lake_root(Path("home")).name.isidentifier()
