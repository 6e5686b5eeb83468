"""The text the demo ends with: allocation history, per-variant accuracy, verdict, next steps."""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence

from api.report import Report, VariantReport
from api.schemas import AllocationOut

__all__ = ["render_summary"]

_WIDTH = 100
_REASON_INDENT = " " * 8


def _number(value: float | None, spec: str = ".3f") -> str:
    return "n/a" if value is None else format(value, spec)


def _history(history: Sequence[AllocationOut]) -> list[str]:
    """One entry per change of weights: a run of versions that kept them is one line."""
    lines = ["Allocation history (oldest first):"]
    i = 0
    while i < len(history):
        row = history[i]
        weights = "  ".join(f"{name} {weight:.3f}" for name, weight in row.weights.items())
        lines.append(f"  v{row.version:<3d} {weights}")
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


def _shown(row: AllocationOut) -> dict[str, str]:
    """The weights as printed: versions that differ only past the third decimal look alike."""
    return {name: f"{weight:.3f}" for name, weight in row.weights.items()}


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
