"""The text the demo ends with: allocation history, per-variant accuracy, verdict, next steps."""

from __future__ import annotations

import re
import textwrap
from collections.abc import Mapping, Sequence

from api.readout.report import Report, VariantReport
from api.schemas import AllocationOut

__all__ = ["render_summary"]

_WIDTH = 100
_REASON_INDENT = " " * 8
_NUMBERS = re.compile(r"\d+(\.\d+)?")


def _number(value: float | None, spec: str = ".3f") -> str:
    return "n/a" if value is None else format(value, spec)


def _history(history: Sequence[AllocationOut]) -> list[str]:
    """One entry per visible change of weights; a reason only when its wording changes.

    A run of versions whose weights print alike (two decimals) is one line, and a reason
    that differs from the last one printed only in its numbers is not repeated: the
    history then fits on a screen however many times the demo reallocated.
    """
    lines = ["Allocation history (oldest first):"]
    said = ""
    i = 0
    while i < len(history):
        row = history[i]
        weights = "  ".join(f"{name} {weight:.2f}" for name, weight in row.weights.items())
        lines.append(f"  v{row.version:<3d} {weights}")
        if _wording(row.reason) != said:
            said = _wording(row.reason)
            lines += textwrap.wrap(
                row.reason,
                width=_WIDTH,
                initial_indent=_REASON_INDENT,
                subsequent_indent=_REASON_INDENT,
            )
        last = i
        while last + 1 < len(history) and _shown(history[last + 1]) == _shown(row):
            last += 1
        if last > i:
            span = f"v{history[i + 1].version}" + (
                f"-v{history[last].version}" if last > i + 1 else ""
            )
            lines.append(f"  {span:<4} the same weights ({last - i} more reallocations)")
        i = last + 1
    return lines


def _wording(reason: str) -> str:
    return _NUMBERS.sub("#", reason)


def _shown(row: AllocationOut) -> dict[str, str]:
    """The weights as printed: versions that differ only past the second decimal look alike."""
    return {name: f"{weight:.2f}" for name, weight in row.weights.items()}


def _variant_line(variant: VariantReport, offline: float | None, width: int) -> str:
    interval = f"[{_number(variant.ci_low)}, {_number(variant.ci_high)}]"
    return (
        f"  {variant.name:<{width}}  {_number(variant.reward_mean):>8}  {interval:<16}  "
        f"{variant.requests:>8d}  {_number(variant.weight):>6}  {_number(offline):>7}"
    )


def _variants(report: Report, offline: Mapping[str, float]) -> list[str]:
    width = max([len("variant"), *(len(v.name) for v in report.variants)])
    header = (
        f"  {'variant':<{width}}  {'accuracy':>8}  {'95% interval':<16}  {'requests':>8}  "
        f"{'weight':>6}  {'offline':>7}"
    )
    lines = [
        "Variants (accuracy on the labelled requests; offline: on the whole held-out split):",
        header,
    ]
    lines += [_variant_line(v, offline.get(v.name), width) for v in report.variants]
    return lines


def render_summary(
    history: Sequence[AllocationOut],
    report: Report,
    offline: Mapping[str, float],
    next_steps: Sequence[str],
) -> str:
    """The summary as text, one line per row, ending with a newline.

    ``next_steps`` are the lines printed last, under "Next": where to look once
    ``banditlake serve`` runs.
    """
    lines = [*_history(history), "", *_variants(report, offline), ""]
    lines.append(f"Verdict: {report.verdict}")
    lines += [
        "",
        "Next: once `banditlake serve` runs (`make run` starts it now), open",
        *next_steps,
    ]
    return "\n".join(lines) + "\n"
