"""The hash-pinned locks that ``make run`` and ``make test`` install from match pyproject.toml.

``make lock`` writes ``requirements/dev.lock`` (the dev and demo extras) and
``requirements/run.lock`` (the demo extra, constrained by the dev lock) from pyproject.toml's
ranges. A dependency
added to pyproject.toml without running ``make lock`` fails here, offline: every direct
requirement must be pinned in the lock that installs it, at a version its range allows,
with the packages its extras pull in, and every pin must carry a hash.
"""

from __future__ import annotations

import importlib.metadata
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest
from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
LOCKS = ROOT / "requirements"
_PIN = re.compile(
    r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>\S+)(?:\s*;\s*(?P<marker>[^\\]+?))?\s*\\?$"
)
_HASH = re.compile(r"^\s+--hash=sha256:[0-9a-f]{64}")


@dataclass(frozen=True)
class Pin:
    name: str
    version: Version
    marker: Marker | None
    hashes: int


def _read_lock(path: Path) -> list[Pin]:
    pins: list[Pin] = []
    lines = path.read_text().splitlines()
    for i, line in enumerate(lines):
        match = _PIN.match(line)
        if match is None:
            continue
        hashes = 0
        for following in lines[i + 1 :]:
            if not _HASH.match(following):
                break
            hashes += 1
        marker = match["marker"]
        pins.append(
            Pin(
                canonicalize_name(match["name"]),
                Version(match["version"]),
                Marker(marker.strip()) if marker else None,
                hashes,
            )
        )
    return pins


def _project() -> dict[str, object]:
    with (ROOT / "pyproject.toml").open("rb") as f:
        project: dict[str, object] = tomllib.load(f)["project"]
    return project


def _requirements(*extras: str) -> list[Requirement]:
    """The direct requirements of the core and these extras; self-references expanded."""
    project = _project()
    optional: dict[str, list[str]] = project["optional-dependencies"]  # type: ignore[assignment]
    found: list[Requirement] = [Requirement(r) for r in project["dependencies"]]  # type: ignore[attr-defined]
    todo, seen = list(extras), set()
    while todo:
        extra = todo.pop()
        if extra in seen:
            continue
        seen.add(extra)
        for text in optional[extra]:
            req = Requirement(text)
            if canonicalize_name(req.name) == "banditlake":
                todo += sorted(req.extras)
            else:
                found.append(req)
    return found


# The extras each lock installs, as the Makefile's `lock` target compiles them.
LOCK_EXTRAS = {"run.lock": ("demo",), "dev.lock": ("demo", "dev")}


@pytest.mark.parametrize(("lock", "extras"), sorted(LOCK_EXTRAS.items()))
def test_every_direct_requirement_is_pinned_within_its_range(
    lock: str, extras: tuple[str, ...]
) -> None:
    pins = _read_lock(LOCKS / lock)
    problems = []
    for req in _requirements(*extras):
        versions = [p.version for p in pins if p.name == canonicalize_name(req.name)]
        if not versions:
            problems.append(f"{req} is not in {lock}")
        problems += [
            f"{req} is pinned at {v} in {lock}" for v in versions if v not in req.specifier
        ]
    assert not problems, "; ".join(problems) + ": run `make lock`."


@pytest.mark.parametrize(("lock", "extras"), sorted(LOCK_EXTRAS.items()))
def test_the_extras_of_requirements_are_pinned(lock: str, extras: tuple[str, ...]) -> None:
    """``uvicorn[standard]`` needs uvloop and friends: read from the installed metadata."""
    names = {p.name for p in _read_lock(LOCKS / lock)}
    missing = []
    for req in _requirements(*extras):
        if not req.extras:
            continue
        for text in importlib.metadata.requires(req.name) or []:
            needed = Requirement(text)
            applies = needed.marker is not None and any(
                needed.marker.evaluate({"extra": extra}) for extra in req.extras
            )
            if applies and canonicalize_name(needed.name) not in names:
                missing.append(f"{needed.name} (for {req.name}[{','.join(sorted(req.extras))}])")
    assert not missing, f"{lock} lacks {', '.join(missing)}: run `make lock`."


@pytest.mark.parametrize("lock", sorted(LOCK_EXTRAS))
def test_every_pin_has_a_hash(lock: str) -> None:
    pins = _read_lock(LOCKS / lock)
    assert len(pins) > 10
    assert [p.name for p in pins if p.hashes == 0] == []


def test_the_run_lock_agrees_with_the_dev_lock() -> None:
    """``make run`` and ``make test`` install the same version of every shared package."""
    dev = {(p.name, p.version) for p in _read_lock(LOCKS / "dev.lock")}
    run = {(p.name, p.version) for p in _read_lock(LOCKS / "run.lock")}
    assert run - dev == set()


def test_the_installed_environment_is_the_locked_one() -> None:
    """What ``make test`` runs on is what the lock says (a stale venv would hide a bad lock)."""
    pins = _read_lock(LOCKS / "dev.lock")
    differ = {}
    for pin in pins:
        if pin.marker is not None and not pin.marker.evaluate():
            continue
        try:
            installed = Version(importlib.metadata.version(pin.name))
        except importlib.metadata.PackageNotFoundError:
            differ[pin.name] = "not installed"
            continue
        if installed != pin.version:
            differ[pin.name] = f"{installed} installed, {pin.version} locked"
    assert differ == {}, (
        "the venv differs from requirements/dev.lock: .venv/bin/pip install --require-hashes "
        "-r requirements/dev.lock"
    )
