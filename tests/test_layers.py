"""Layers point one way, api -> lake -> bandit: checked on the source's import statements.

``bandit`` is pure: besides numpy and scipy it may import only the standard library
modules below, none of which does I/O, reads a clock or starts a thread. Time comes
in as an argument, randomness as a ``numpy.random.Generator``.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
STDLIB = frozenset(sys.stdlib_module_names) | {"__future__"}
PURE_STDLIB = frozenset(
    {
        "__future__",
        "abc",
        "collections",
        "dataclasses",
        "enum",
        "functools",
        "itertools",
        "math",
        "numbers",
        "operator",
        "typing",
        "warnings",
    }
)

ALLOWED = {
    "bandit": PURE_STDLIB | {"bandit", "numpy", "scipy"},
    "lake": STDLIB
    | {
        "lake",
        "bandit",
        "pyarrow",
        "duckdb",
        "polars",
        "sqlalchemy",
        "numpy",
        "deltalake",
        "fsspec",
    },
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
    assert imported_roots(module) - ALLOWED["bandit"] == {"os", "api", "pandas"}


@pytest.mark.parametrize(
    "statement",
    [
        "import time",
        "from datetime import datetime",
        "import os.path",
        "from pathlib import Path",
        "import random",
        "import logging",
        "import threading",
        "import subprocess",
        "from urllib.request import urlopen",
        "import socket",
        "import sqlite3",
        "import pickle",
    ],
)
def test_bandit_may_not_do_io_or_read_a_clock(tmp_path: Path, statement: str) -> None:
    module = tmp_path / "m.py"
    module.write_text(f"from __future__ import annotations\n\n{statement}\nimport math\n")
    forbidden = statement.split()[1].split(".")[0]
    assert imported_roots(module) - ALLOWED["bandit"] == {forbidden}
    assert forbidden in STDLIB  # forbidden although it is the standard library


def imported_modules(path: Path) -> set[str]:
    """Every absolute module ``path`` imports, in full (``from a.b import c`` gives ``a.b``)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    modules: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules.add(node.module)
            modules.update(f"{node.module}.{alias.name}" for alias in node.names)
    return modules


def test_serving_reads_control_only_through_allocation_versions() -> None:
    """The request path depends on the allocation versions it serves, not on the rest of
    the control plane (variants, experiments), which depends on it the other way round."""
    offenders = sorted(
        f"{path.relative_to(ROOT)} imports {module}"
        for path in (ROOT / "api" / "serving").rglob("*.py")
        for module in imported_modules(path)
        if module.startswith("api.control.")
        and not module.startswith("api.control.allocation_versions")
    )
    assert offenders == []
