"""How numbers and arm names are written in the reasons policies give."""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["number", "quoted"]


def number(value: float) -> str:
    """Four significant digits: a reason is read by people, not parsed."""
    return f"{value:.4g}"


def quoted(names: Sequence[str]) -> str:
    """``'a'``, ``'a' and 'b'``, ``'a', 'b' and 'c'``."""
    parts = [repr(n) for n in names]
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
