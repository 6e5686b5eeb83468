"""The prediction-drift and data-quality panels in a real browser, on the dashboard
browser test's service and lake (its fixtures, imported)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.browser.test_dashboard_browser import (  # noqa: F401  (fixtures)
    EXPERIMENT,
    WIDE,
    _listen,
    _Service,
    _token_page,
    browser,
    service,
)


def _rows(page: Any, table: str, key: str) -> list[str]:
    script = f"rows => rows.map(r => r.dataset.{key})"
    return list(page.eval_on_selector_all(f"#{table} tbody tr", script))


def test_both_panels_render_per_variant_and_per_feature(
    service: tuple[_Service, dict[str, Any]],  # noqa: F811
    browser: Any,  # noqa: F811
    tmp_path: Path,
) -> None:
    running, _ = service
    context, page, problems = _token_page(browser, running.base, f"#/experiments/{EXPERIMENT}")
    page.wait_for_function(
        """() => document.querySelectorAll('#prediction-drift tbody tr').length === 3
          && document.querySelectorAll('#quality tbody tr').length === 3""",
        timeout=15_000,
    )
    assert sorted(_rows(page, "prediction-drift", "variant")) == [
        "control",
        "ranker-v2",
        "ranker-v3",
    ]
    assert sorted(_rows(page, "quality", "feature")) == ["clicks", "price", "recency"]
    # Arms with fewer predictions than the minimum in a window say so rather than a PSI.
    statuses = page.eval_on_selector_all(
        "#prediction-drift tbody tr",
        """rows => rows.map(r => [r.cells[6].textContent, r.cells[3].textContent])""",
    )
    for counts, status in statuses:
        first, last = (int(n.replace(",", "")) for n in counts.split(" / "))
        if min(first, last) < 250:
            assert status == "not enough data", (counts, status)
        else:
            assert status in ("stable", "drifted"), (counts, status)
    assert "250 predictions in each window" in page.inner_text("#prediction-drift-hint")
    assert "NaN refused" in page.inner_text("#quality thead")
    page.locator("#panel-prediction-drift").screenshot(path=str(tmp_path / "prediction.png"))
    page.locator("#panel-quality").screenshot(path=str(tmp_path / "quality.png"))
    assert problems == []
    context.close()

    context, page, problems = _token_page(browser, running.base, f"#/experiments/{WIDE}")
    page.wait_for_function(
        "() => document.querySelectorAll('#quality tbody tr').length === 10", timeout=15_000
    )
    assert "The 10 worst of 64 features." in page.inner_text("#quality-hint")
    assert problems == []
    context.close()
