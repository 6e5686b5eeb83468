"""Where the service keeps its data, found from the ``BANDITLAKE_*`` environment.

One rule, shared by the service's settings and by code that runs without them (the
analyst notebooks, scripts):

=========================== ===========================================================
``BANDITLAKE_HOME``         data directory; ``./var`` when unset
``BANDITLAKE_DATABASE_URL`` SQL store holding the manifest; ``sqlite:///$HOME/banditlake.db``
``BANDITLAKE_LAKE_URI``     lake root; ``$HOME/inference-lake``
models                      ``$HOME/models/<sha256>.onnx``
=========================== ===========================================================

The lake root is named ``inference-lake`` rather than ``lake`` so that a Python process
started in the data directory (a Jupyter kernel, say) cannot import the data directory as
a namespace package in place of the ``lake`` package: a hyphen is not valid in a module
name. A data directory written by an older release holds ``lake/``; when it exists and
``inference-lake/`` does not, it stays the lake root (with a warning) so an existing
install keeps its history.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

__all__ = ["LAKE_DIR", "LEGACY_LAKE_DIR", "LakeLocation", "default_lake_root", "locate_lake"]

logger = logging.getLogger(__name__)

LAKE_DIR = "inference-lake"
LEGACY_LAKE_DIR = "lake"


@dataclass(frozen=True)
class LakeLocation:
    """The data directory, SQL store URL and lake root of one installation."""

    home: Path
    database_url: str
    lake_root: Path

    @property
    def models_dir(self) -> Path:
        """Where uploaded model files live, named ``<sha256>.onnx``."""
        return self.home / "models"

    def model_path(self, sha256: str) -> Path:
        """The stored ONNX file of the model with checksum ``sha256``."""
        return self.models_dir / f"{sha256}.onnx"


def default_lake_root(home: Path) -> Path:
    """The lake root under ``home`` when ``BANDITLAKE_LAKE_URI`` is not set.

    ``home/inference-lake``, unless only an older release's ``home/lake`` exists: then that
    one, so upgrading does not silently start an empty lake beside the old one.
    """
    current, legacy = home / LAKE_DIR, home / LEGACY_LAKE_DIR
    if legacy.is_dir() and not current.exists():
        logger.warning(
            "Using the lake at %s, written by an older release; the default is now %s. "
            "Move the directory there, or set BANDITLAKE_LAKE_URI=%s to keep it where it is.",
            legacy,
            current,
            legacy,
        )
        return legacy
    return current


def locate_lake(
    environ: Mapping[str, str] | None = None, *, cwd: Path | None = None
) -> LakeLocation:
    """Find the installation from the environment, as the service's settings do.

    Parameters
    ----------
    environ
        The variables to read; ``os.environ`` by default.
    cwd
        Directory that relative paths are resolved against; the working directory by
        default. Without ``BANDITLAKE_HOME``, the home is ``cwd/var``, or ``cwd/../var``
        when only that exists (a Jupyter kernel starts in ``notebooks/``).

    Returns
    -------
    LakeLocation
        With absolute paths, so a later change of directory does not move them.

    Examples
    --------
    >>> where = locate_lake({"BANDITLAKE_HOME": "/srv/banditlake"})
    >>> str(where.lake_root), where.database_url
    ('/srv/banditlake/inference-lake', 'sqlite:////srv/banditlake/banditlake.db')
    """
    env = os.environ if environ is None else environ
    base = Path.cwd() if cwd is None else cwd
    if env.get("BANDITLAKE_HOME"):
        home = base / Path(env["BANDITLAKE_HOME"]).expanduser()
    else:
        here, above = base / "var", base.parent / "var"
        home = above if above.is_dir() and not here.is_dir() else here
    home = Path(os.path.abspath(home))
    database_url = env.get("BANDITLAKE_DATABASE_URL") or f"sqlite:///{home / 'banditlake.db'}"
    lake_uri = env.get("BANDITLAKE_LAKE_URI")
    lake_root = base / Path(lake_uri).expanduser() if lake_uri else default_lake_root(home)
    return LakeLocation(home, database_url, Path(os.path.abspath(lake_root)))
