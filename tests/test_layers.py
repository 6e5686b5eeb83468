"""Layers point one way, api -> lake -> bandit: checked on the source's import statements."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
STDLIB = frozenset(sys.stdlib_module_names) | {"__future__"}

ALLOWED = {
    "bandit": STDLIB | {"bandit", "numpy", "scipy"},
    "lake": STDLIB | {"lake", "bandit", "pyarrow", "duckdb", "polars", "sqlalchemy", "numpy"},
}


def imported_roots(path: Path) -> set[str]:
    """Top-level package of every absolute import in ``path``; relative imports stay inside."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    roots: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


def violations(package: str) -> list[str]:
    found = []
    for path in sorted((ROOT / package).rglob("*.py")):
        for root in sorted(imported_roots(path) - ALLOWED[package]):
            found.append(f"{path.relative_to(ROOT)} imports {root}")
    return found


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_package_imports_only_what_its_layer_allows(package: str) -> None:
    assert (ROOT / package / "__init__.py").exists()
    assert violations(package) == []


def test_lake_never_imports_api() -> None:
    offenders = [
        str(path.relative_to(ROOT))
        for path in sorted((ROOT / "lake").rglob("*.py"))
        if "api" in imported_roots(path)
    ]
    assert offenders == []


def test_the_check_sees_forbidden_imports(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text(
        "import os\nimport numpy as np\nfrom api.app import x\nfrom . import sibling\n"
        "from pandas import DataFrame\n",
        encoding="utf-8",
    )
    assert imported_roots(module) - ALLOWED["bandit"] == {"api", "pandas"}
