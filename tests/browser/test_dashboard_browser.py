"""The dashboard in a real browser: the service on a free port, headless Debian Chromium.

Playwright drives ``/usr/bin/chromium`` (never a downloaded browser). The lake is built
through the HTTP API: three arms, a few hundred predictions with feedback in four rounds
of about a second, and a reallocation after each round, so every chart has data and the
allocation chart has steps; beside it an experiment with 64 features whose later rows
drift by degrees, and one whose first drift window holds a single row. The test saves a screenshot under ``tmp_path``; with
``BANDITLAKE_UPDATE_SCREENSHOT=1`` it also refreshes ``api/static/dashboard-screenshot.png``,
the README's picture.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import uvicorn
from pydantic import SecretStr

from api.app import create_app
from api.store.migrate import upgrade
from tests.conftest import make_settings
from tests.onnx_models import linear_model

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOT = Path(__file__).resolve().parents[2] / "api" / "static" / "dashboard-screenshot.png"
TOKEN = "dashboard-admin-token"
EXPERIMENT = "checkout-ranker"
ARMS = {"control": 0.10, "ranker-v2": 0.16, "ranker-v3": 0.22}
CHARTS = ["allocation", "pbest", "requests", "reward", "latency", "errors"]
WIDE = "wide-features"
WIDE_FEATURES = [f"feature_{i:02d}" for i in range(64)]
THIN = "thin-start"
# search-rerank's data settings, shown under its title.
REDACTION = {"drop": ["query_text", "ip"], "hash": ["user_id"]}
# The dashboard's one time format, with seconds (and tenths) where the span needs them.
UTC_TEXT = r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}(:\d{2}(\.\d)?)? UTC"

if not CHROMIUM.exists():
    pytest.skip(
        f"{CHROMIUM} is missing: install Debian's chromium (apt-get install chromium, or "
        "`make browser`) to run the dashboard's browser test.",
        allow_module_level=True,
    )
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _Service:
    """The app under uvicorn in a background thread, on 127.0.0.1."""

    def __init__(self, home: Path) -> None:
        url = f"sqlite:///{home / 'store.db'}"
        upgrade(url)
        settings = make_settings(
            home / "home",
            url,
            reallocate=False,
            admin_token=SecretStr(TOKEN),
            serve_token=SecretStr("serve-token"),
            redaction_secret=SecretStr("dashboard-redaction-secret"),
        )
        self.app = create_app(settings)
        port = _free_port()
        self.base = f"http://127.0.0.1:{port}"
        config = uvicorn.Config(self.app, host="127.0.0.1", port=port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> _Service:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                msg = "The service did not start within 20 s."
                raise RuntimeError(msg)
            time.sleep(0.02)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)

    def flush(self) -> None:
        self.app.state.serving.predictions.flush()
        self.app.state.serving.feedback_writer.flush()


def _build(service: _Service) -> dict[str, Any]:
    """Traffic in four rounds of about a second, a reallocation after each; the report."""
    rng = np.random.default_rng(3)
    features = '["price", "recency", "clicks"]'
    with httpx.Client(
        base_url=service.base, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30
    ) as http:

        def ok(response: httpx.Response) -> dict[str, Any]:
            assert response.status_code < 300, response.text
            return dict(response.json())

        ok(
            http.post(
                "/v1/experiments",
                json={
                    "name": EXPERIMENT,
                    "description": "Ranking models for the checkout page.",
                    "reward": {"kind": "binary"},
                    "policy": {"kind": "thompson"},
                    "min_weight": 0.05,
                    "retention_days": 90,
                },
            )
        )
        ok(
            http.post(
                "/v1/experiments",
                json={
                    "name": "search-rerank",
                    "reward": {"kind": "binary"},
                    "retention_days": 1,
                    "redaction": REDACTION,
                },
            )
        )
        for i, arm in enumerate(ARMS):
            weights = [0.0, 0.0, 0.0]
            weights[i] = 1.0
            ok(
                http.post(
                    f"/v1/experiments/{EXPERIMENT}/variants",
                    data={"name": arm, "role": "arm", "features": features},
                    files={"model": ("m.onnx", linear_model(weights), "application/octet-stream")},
                )
            )
        ok(http.patch(f"/v1/experiments/{EXPERIMENT}", json={"status": "running"}))
        for round_ in range(4):
            # Each round's requests arrive through its second, as real traffic would, so
            # the charts' fine buckets (a few seconds of data) are not mostly empty.
            for _ in range(8):
                rows = [
                    {
                        "features": {
                            "price": float(rng.lognormal(3, 0.3)),
                            "recency": float(rng.exponential(2)),
                            # Clicks drift upward in the later rounds.
                            "clicks": float(rng.poisson(2 + 3 * (round_ >= 2))),
                        }
                    }
                    for _ in range(40)
                ]
                results = ok(
                    http.post(f"/v1/experiments/{EXPERIMENT}/predict/batch", json={"rows": rows})
                )["results"]
                items = [
                    {
                        "request_id": r["request_id"],
                        "reward": float(rng.random() < ARMS[r["variant"]]),
                    }
                    for r in results
                ]
                assert http.post("/v1/feedback/batch", json={"items": items}).status_code == 202
                time.sleep(0.12)
            service.flush()
            ok(http.post(f"/v1/experiments/{EXPERIMENT}/reallocate"))
        report = ok(http.get(f"/v1/experiments/{EXPERIMENT}/report"))
        _drifting(http, ok, service, rng)
        return report


def _drifting(http: httpx.Client, ok: Any, service: _Service, rng: np.random.Generator) -> None:
    """``WIDE``: 64 features, feature i shifted by 0.03 i later; ``THIN``: 1 row, then 150."""
    for name, features in ((WIDE, WIDE_FEATURES), (THIN, ["x"])):
        ok(http.post("/v1/experiments", json={"name": name, "reward": {"kind": "binary"}}))
        for arm in ("a", "b"):
            ok(
                http.post(
                    f"/v1/experiments/{name}/variants",
                    data={"name": arm, "role": "arm", "features": json.dumps(features)},
                    files={
                        "model": (
                            "m.onnx",
                            linear_model([0.01] * len(features)),
                            "application/octet-stream",
                        )
                    },
                )
            )
        ok(http.patch(f"/v1/experiments/{name}", json={"status": "running"}))
    for shift, rows in ((0.0, 300), (0.03, 300)):
        batch = [
            {"features": {f: float(rng.normal() + shift * i) for i, f in enumerate(WIDE_FEATURES)}}
            for _ in range(rows)
        ]
        ok(http.post(f"/v1/experiments/{WIDE}/predict/batch", json={"rows": batch}))
        time.sleep(0.5)
    for rows in (1, 150):
        batch = [{"features": {"x": float(rng.normal())}} for _ in range(rows)]
        ok(http.post(f"/v1/experiments/{THIN}/predict/batch", json={"rows": batch}))
        time.sleep(0.5)
    service.flush()


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[_Service, dict[str, Any]]]:
    with _Service(tmp_path_factory.mktemp("browser")) as running:
        yield running, _build(running)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield chromium
        finally:
            chromium.close()


def _listen(page: Any) -> list[str]:
    problems: list[str] = []
    page.on(
        "console",
        lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None,
    )
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    return problems


_PAINTED = """
(ids) => ids.map((id) => {
  const panel = document.getElementById("panel-" + id);
  const canvas = panel.querySelector(".chart canvas");
  if (!canvas || !canvas.width || !canvas.height) return [id, 0, 0];
  const pixels = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
  let painted = 0;
  for (let i = 3; i < pixels.length; i += 4) if (pixels[i] !== 0) painted++;
  return [id, Number(panel.querySelector(".chart").dataset.points || 0), painted];
})
"""


def test_every_panel_renders_without_errors(
    service: tuple[_Service, dict[str, Any]], browser: Any, tmp_path: Path
) -> None:
    running, report = service
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    problems = _listen(page)
    # The token is taken from the address, kept in localStorage and sent as a bearer header.
    page.goto(f"{running.base}/dashboard?token={TOKEN}")
    page.wait_for_selector("#experiments tbody tr >> nth=1", timeout=10_000)
    listing = page.inner_text("#experiments")
    assert EXPERIMENT in listing and "search-rerank" in listing
    assert report["verdict"] in listing
    assert "token=" not in page.url
    _check_lake_panel(page, running)

    page.click(f"text={EXPERIMENT}")
    page.wait_for_function(
        """(ids) => ids.every((id) => {
          const chart = document.querySelector("#panel-" + id + " .chart");
          return chart && Number(chart.dataset.points || 0) > 0 && chart.querySelector("canvas");
        }) && document.querySelectorAll("#tests tbody tr").length === 3
          && document.querySelectorAll("#drift tbody tr").length === 3""",
        arg=CHARTS,
        timeout=15_000,
    )
    for chart, points, painted in page.evaluate(_PAINTED, CHARTS):
        assert points > 0, f"the {chart} chart has no data"
        assert painted > 500, f"the {chart} chart painted {painted} pixels"
    text = page.inner_text("main")
    for arm in ARMS:
        assert arm in text
    assert page.inner_text("#verdict") == report["verdict"]
    assert page.inner_text("#card-srm .value") in ("ok", "mismatch")
    assert "clicks" in page.inner_text("#drift")
    assert page.inner_text("#exp-status") == "running"
    assert page.inner_text("#exp-retention") == "90 days"
    assert page.inner_text("#exp-redaction") == "none: every feature is logged"
    # The test table fits a 1400 px window without a horizontal scroll bar.
    assert page.evaluate(_NO_SCROLL, "#panel-tests .scroll") == []
    assert page.is_visible("#tests-legend")
    assert page.inner_text("#tests tbody tr:nth-child(1) td.decision") == "control"

    copy = tmp_path / "dashboard-screenshot.png"
    page.screenshot(path=str(copy), full_page=True)
    assert copy.stat().st_size > 10_000
    if os.environ.get("BANDITLAKE_UPDATE_SCREENSHOT"):
        # Refreshes the README's picture on request only: a test run leaves the tree clean.
        shutil.copyfile(copy, SCREENSHOT)
    assert problems == []
    page.close()


def test_without_a_token_the_page_says_how_to_give_one(
    service: tuple[_Service, dict[str, Any]], browser: Any
) -> None:
    running, _ = service
    context = browser.new_context()
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(f"{running.base}/dashboard")
    page.wait_for_selector("#banner:not([hidden])", timeout=10_000)
    banner = page.inner_text("#banner")
    assert "admin bearer token" in banner and "?token=" in banner
    assert errors == []
    context.close()


def test_an_experiment_without_traffic_renders_empty_panels(
    service: tuple[_Service, dict[str, Any]], browser: Any
) -> None:
    running, _ = service
    page = browser.new_page()
    problems = _listen(page)
    page.goto(f"{running.base}/dashboard?token={TOKEN}#/experiments/search-rerank")
    page.wait_for_function(
        """() => document.getElementById("verdict").textContent.length > 0
          && document.querySelectorAll(".chart canvas").length === 6""",
        timeout=10_000,
    )
    assert page.inner_text("#verdict") == "No rewarded requests yet."
    assert page.inner_text("#exp-status") == "draft"
    page.wait_for_function(
        "() => document.getElementById('exp-retention').textContent.includes('day')",
        timeout=10_000,
    )
    assert page.inner_text("#exp-retention") == "1 day"
    assert page.inner_text("#exp-redaction") == "drops query_text, ip · hashes user_id"
    assert page.is_hidden("#banner")
    assert problems == []
    page.close()


def _bytes_text(n: int) -> str:
    """What the dashboard shows for a size: binary units, three significant digits."""
    units = ["B", "KiB", "MiB", "GiB"]
    value, unit = float(n), 0
    while value >= 1024 and unit < len(units) - 1:
        value /= 1024
        unit += 1
    shown = f"{n:,}" if unit == 0 else f"{float(f'{value:.3g}'):g}"
    return f"{shown} {units[unit]}"


def _check_lake_panel(page: Any, running: _Service) -> None:
    """The list's lake panel shows /v1/lake's size, files and version per table."""
    with httpx.Client(base_url=running.base, headers={"Authorization": f"Bearer {TOKEN}"}) as http:
        lake = http.get("/v1/lake").json()["tables"]
    page.wait_for_selector("#lake-tables tbody tr >> nth=1", timeout=10_000)
    cells = page.eval_on_selector_all(
        "#lake-tables tbody tr",
        """rows => rows.map(r => [r.dataset.table,
          ...[".lake-bytes", ".lake-files", ".lake-rows", ".lake-version"]
            .map(c => r.querySelector(c).textContent)])""",
    )
    shown = {table: rest for table, *rest in cells}
    assert set(shown) == {"predictions", "feedback"}
    for table, (size, files, rows, version) in shown.items():
        counted = lake[table]
        assert counted["live_files"] > 0 and counted["bytes"] > 0 and counted["rows"] > 0
        assert size == _bytes_text(counted["bytes"]), (table, size, counted["bytes"])
        assert int(files.replace(",", "")) == counted["live_files"]
        assert int(rows.replace(",", "")) == counted["rows"]
        # Nothing is compacted in this test: no Delta version yet.
        assert counted["delta_version"] is None and version == "not published yet"


def test_navigation_during_a_slow_refresh_shows_the_new_view_at_once(
    service: tuple[_Service, dict[str, Any]], browser: Any
) -> None:
    running, _ = service
    page = browser.new_page()
    problems = _listen(page)
    page.goto(f"{running.base}/dashboard?token={TOKEN}#/experiments/{EXPERIMENT}")
    page.wait_for_function(
        "() => document.querySelectorAll('#tests tbody tr').length === 3", timeout=10_000
    )
    # One panel of the next refresh hangs until released: the refresh stays in flight.
    held: list[Any] = []

    def hold(route: Any) -> None:
        held.append(route)

    page.route(f"**/dashboard/api/experiments/{EXPERIMENT}/drift*", hold)
    page.evaluate("() => { window.banditlakeDashboard.refresh(); }")
    deadline = time.monotonic() + 10
    while not held and time.monotonic() < deadline:
        page.wait_for_timeout(20)
    assert held, "the refresh never asked for the drift panel"

    page.evaluate("() => { window.location.hash = '#/experiments/search-rerank'; }")
    # Well inside the 5 s refresh interval: the navigation's own refresh renders the view.
    page.wait_for_function(
        """() => document.getElementById("exp-name").textContent === "search-rerank"
          && document.getElementById("exp-status").textContent === "draft"
          && document.getElementById("verdict").textContent === "No rewarded requests yet."
          && document.querySelectorAll("#tests tbody tr").length === 0""",
        timeout=2_000,
    )
    # The superseded refresh, answered late, must not paint the old experiment over it.
    page.unroute_all(behavior="ignoreErrors")
    for route in held:
        # The dashboard may have abandoned the request already.
        with contextlib.suppress(sync_api.Error):
            route.continue_()
    page.wait_for_timeout(500)
    assert page.inner_text("#exp-name") == "search-rerank"
    assert page.inner_text("#exp-status") == "draft"
    assert page.inner_text("#verdict") == "No rewarded requests yet."
    assert problems == []
    page.close()


_NO_SCROLL = """
(selector) => [...document.querySelectorAll(selector)]
  .filter((node) => node.scrollWidth > node.clientWidth)
  .map((node) => [node.scrollWidth, node.clientWidth])
"""


def _token_page(browser: Any, base: str, path: str) -> tuple[Any, Any, list[str]]:
    """A page in a fresh context that has been given the token once, then at ``path``."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    problems = _listen(page)
    page.goto(f"{base}/dashboard?token={TOKEN}{path}")
    return context, page, problems


def _showing(page: Any, name: str) -> None:
    page.wait_for_function(
        """(name) => document.getElementById("exp-name").textContent === name
          && !document.getElementById("experiment-view").hidden
          && document.querySelectorAll("#tests tbody tr").length > 0""",
        arg=name,
        timeout=10_000,
    )


@pytest.mark.parametrize(
    "path", [f"&experiment={EXPERIMENT}", f"#/experiments/{EXPERIMENT}", f"#/{EXPERIMENT}"]
)
def test_a_deep_link_to_an_experiment_survives_a_reload(
    service: tuple[_Service, dict[str, Any]], browser: Any, path: str
) -> None:
    running, _ = service
    context, page, problems = _token_page(browser, running.base, path)
    _showing(page, EXPERIMENT)
    assert "token=" not in page.url
    page.reload()
    _showing(page, EXPERIMENT)
    assert page.title() == f"{EXPERIMENT} · banditlake"
    # A link to the list and back works from the deep link too.
    page.click("text=← all experiments")
    page.wait_for_selector("#list-view:not([hidden])", timeout=5_000)
    page.go_back()
    _showing(page, EXPERIMENT)
    assert problems == []
    context.close()


def _drift_rows(page: Any) -> list[str]:
    return list(
        page.eval_on_selector_all("#drift tbody tr", "rows => rows.map(r => r.dataset.feature)")
    )


def test_drift_with_64_features_shows_the_top_ten_and_finds_the_rest(
    service: tuple[_Service, dict[str, Any]], browser: Any, tmp_path: Path
) -> None:
    running, _ = service
    with httpx.Client(base_url=running.base, headers={"Authorization": f"Bearer {TOKEN}"}) as http:
        drift = http.get(f"/dashboard/api/experiments/{WIDE}/drift").json()
    assert len(drift["features"]) == 64
    assert drift["reference"]["rows"] == drift["current"]["rows"] == 300
    ranked = sorted(drift["features"], key=lambda f: -f["psi"])
    top = [f["name"] for f in ranked[:10]]
    context, page, problems = _token_page(browser, running.base, f"#/experiments/{WIDE}")
    page.wait_for_function(
        "() => document.querySelectorAll('#drift tbody tr').length > 0", timeout=10_000
    )
    assert _drift_rows(page) == top
    assert "10 most drifted of 64 features" in page.inner_text("#drift-shown")
    # Every label is whole: no name cell is cut or wider than its column.
    assert page.evaluate(_NO_SCROLL, "#drift td.name, #panel-drift .scroll") == []
    page.screenshot(path=str(tmp_path / "drift-64.png"), full_page=True)

    hidden = ranked[-1]["name"]
    assert hidden not in top
    page.fill("#drift-filter", hidden[-2:])
    page.wait_for_function(
        "(name) => [...document.querySelectorAll('#drift tbody tr')]"
        ".some((r) => r.dataset.feature === name)",
        arg=hidden,
        timeout=5_000,
    )
    assert set(_drift_rows(page)) == {f for f in WIDE_FEATURES if f.endswith(hidden[-2:])}
    assert "match" in page.inner_text("#drift-shown")
    # The search survives the 5 s refresh.
    page.evaluate("() => window.banditlakeDashboard.refresh(true)")
    page.wait_for_timeout(500)
    assert hidden in _drift_rows(page)
    page.fill("#drift-filter", "")
    page.wait_for_function(
        "() => document.querySelectorAll('#drift tbody tr').length === 10", timeout=5_000
    )
    assert problems == []
    context.close()


def test_a_first_drift_window_below_the_minimum_raises_no_alarm(
    service: tuple[_Service, dict[str, Any]], browser: Any, tmp_path: Path
) -> None:
    running, _ = service
    context, page, problems = _token_page(browser, running.base, f"#/experiments/{THIN}")
    page.wait_for_function(
        "() => document.querySelectorAll('#drift tbody tr').length === 1", timeout=10_000
    )
    assert page.inner_text("#drift tbody tr td:nth-child(4)") == "not enough data"
    assert page.query_selector("#drift tr.flagged, #drift .badge.bad") is None
    assert page.inner_text("#card-drift .value") == "not enough data"
    windows = page.inner_text("#drift-windows")
    assert "1 row." in windows and "150 rows." in windows and "250 rows" in windows
    assert re.search(f"First window: {UTC_TEXT} → {UTC_TEXT}, 1 row", windows), windows
    page.screenshot(path=str(tmp_path / "drift-thin.png"), full_page=True)
    assert problems == []
    context.close()


_AXES = """
(ids) => ids.map((id) => {
  const chart = window.banditlakeDashboard.state.charts["panel-" + id].chart;
  return [id, chart.scales.x.min, chart.scales.x.max, chart.axes[0]._values || []];
})
"""


def test_time_axes_fit_the_data_and_read_in_utc(
    service: tuple[_Service, dict[str, Any]], browser: Any
) -> None:
    running, _ = service
    with httpx.Client(base_url=running.base, headers={"Authorization": f"Bearer {TOKEN}"}) as http:
        history = http.get(f"/dashboard/api/experiments/{EXPERIMENT}/allocations").json()
        series = http.get(f"/dashboard/api/experiments/{EXPERIMENT}/timeseries").json()
    first = datetime.fromisoformat(history["steps"][0]["created_at"]).timestamp()
    # The last reallocation may follow the last request: the axis ends at the later one.
    last = max(
        datetime.fromisoformat(t).timestamp()
        for t in (history["last_request"], history["steps"][-1]["created_at"])
    )
    span = last - first
    # Look at it later than its own length: an axis stretched to "now" would show it.
    time.sleep(max(0.0, last + 2 * span - time.time()))
    context, page, problems = _token_page(browser, running.base, f"#/experiments/{EXPERIMENT}")
    _showing(page, EXPERIMENT)
    page.wait_for_function(
        "(ids) => ids.every((id) => window.banditlakeDashboard.state.charts['panel-' + id])",
        arg=CHARTS,
        timeout=10_000,
    )
    axes = {id_: (lo, hi, ticks) for id_, lo, hi, ticks in page.evaluate(_AXES, CHARTS)}
    for id_ in ("allocation", "pbest"):
        lo, hi, _ = axes[id_]
        assert lo == pytest.approx(first, abs=0.01) and hi == pytest.approx(last, abs=0.01), id_
    bucket_start = datetime.fromisoformat(series["times"][0]).timestamp()
    bucket_last = datetime.fromisoformat(series["times"][-1]).timestamp()
    assert len(series["times"]) >= 20, "a few seconds of traffic still get a few dozen buckets"
    for id_ in ("requests", "reward", "latency", "errors"):
        lo, hi, _ = axes[id_]
        assert (lo, hi) == (pytest.approx(bucket_start), pytest.approx(bucket_last)), id_
    tick = re.compile(r"\d{2}:\d{2}(:\d{2}(\.\d)?)?(\n\d{4}-\d{2}-\d{2})?")
    for id_, (_, _, ticks) in axes.items():
        assert ticks and all(tick.fullmatch(t) for t in ticks), (id_, ticks)
        assert re.search(r"\n\d{4}-\d{2}-\d{2}$", ticks[0]), (id_, ticks)
    assert re.fullmatch(f"updated {UTC_TEXT}", page.inner_text("#updated"))
    note = page.inner_text("#series-note")
    assert re.search(UTC_TEXT, note)
    # A few seconds of traffic in a 24 h window: the server says it shows the whole of it.
    assert series["whole_experiment"] and note.startswith("The whole experiment"), note
    assert re.search(f"First window: {UTC_TEXT}", page.inner_text("#drift-windows"))
    # No other clock format anywhere in the page's text.
    assert not re.search(r"\d{1,2}/\d{1,2}/\d{2}|\d(am|pm)\b", page.inner_text("body"))
    assert problems == []
    context.close()


def test_the_sequential_decision_reads_in_words(
    service: tuple[_Service, dict[str, Any]], browser: Any, tmp_path: Path
) -> None:
    """A report where one arm beats the control and one loses to it, significantly."""
    running, _ = service
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    problems = _listen(page)

    def decided(route: Any) -> None:
        body = route.fetch().json()
        for variant, diff in zip(body["variants"][1:], (-0.05, 0.12), strict=True):
            variant["test"].update(diff=diff, sequential_decision="reject", sequential_p_value=1e-4)
        route.fulfill(json=body)

    page.route(f"**/dashboard/api/experiments/{EXPERIMENT}/report", decided)
    page.goto(f"{running.base}/dashboard?token={TOKEN}#/experiments/{EXPERIMENT}")
    _showing(page, EXPERIMENT)
    cells = page.eval_on_selector_all(
        "#tests tbody td.decision .decision-text", "nodes => nodes.map(n => n.textContent)"
    )
    assert cells == ["worse than control (significant)", "beats control (significant)"]
    titles = page.eval_on_selector_all(
        "#tests tbody td.decision .decision-text", "nodes => nodes.map(n => n.title)"
    )
    assert all("rejects" in t and "5% level" in t for t in titles)
    assert page.evaluate(_NO_SCROLL, "#panel-tests .scroll, #tests td") == []
    page.locator("#panel-tests").screenshot(path=str(tmp_path / "tests-table.png"))
    assert problems == []
    context.close()
