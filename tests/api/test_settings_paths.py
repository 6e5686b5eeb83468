"""The service's default paths and ``lake.locate_lake`` (used by the notebooks) agree."""

from __future__ import annotations

from pathlib import Path

import pytest

from api.settings import Settings
from lake import locate_lake


@pytest.mark.parametrize("legacy", [False, True])
def test_settings_and_locate_lake_agree(
    tmp_path: Path, legacy: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("BANDITLAKE_DATABASE_URL", "BANDITLAKE_LAKE_URI"):
        monkeypatch.delenv(name, raising=False)
    if legacy:
        (tmp_path / "lake").mkdir()
    settings = Settings(_env_file=None, home=tmp_path)  # type: ignore[call-arg]
    where = locate_lake({"BANDITLAKE_HOME": str(tmp_path)})
    assert settings.database_url == where.database_url
    assert settings.lake_root == where.lake_root
    assert settings.models_dir == where.models_dir
    assert settings.lake_root.name == ("lake" if legacy else "inference-lake")
