"""The dashboard in a real browser: the service on a free port, headless Debian Chromium.

Playwright drives ``/usr/bin/chromium`` (never a downloaded browser). The lake is built
through the HTTP API: three arms, a few hundred predictions with feedback in rounds a
second apart, and a reallocation after each round, so every chart has data and the
allocation chart has steps. The test saves a screenshot under ``tmp_path``; with
``BANDITLAKE_UPDATE_SCREENSHOT=1`` it also refreshes ``api/static/dashboard-screenshot.png``,
the README's picture.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
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
CHARTS = ["allocation", "pbest", "requests", "reward", "latency", "errors", "drift"]

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
    """Traffic in four rounds a second apart, a reallocation after each; the report."""
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
                },
            )
        )
        ok(
            http.post(
                "/v1/experiments", json={"name": "search-rerank", "reward": {"kind": "binary"}}
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
            rows = [
                {
                    "features": {
                        "price": float(rng.lognormal(3, 0.3)),
                        "recency": float(rng.exponential(2)),
                        # Clicks drift upward in the later rounds.
                        "clicks": float(rng.poisson(2 + 3 * (round_ >= 2))),
                    }
                }
                for _ in range(120)
            ]
            results = ok(
                http.post(f"/v1/experiments/{EXPERIMENT}/predict/batch", json={"rows": rows})
            )["results"]
            items = [
                {"request_id": r["request_id"], "reward": float(rng.random() < ARMS[r["variant"]])}
                for r in results
            ]
            assert http.post("/v1/feedback/batch", json={"items": items}).status_code == 202
            service.flush()
            ok(http.post(f"/v1/experiments/{EXPERIMENT}/reallocate"))
            if round_ < 3:
                time.sleep(1.0)
        return ok(http.get(f"/v1/experiments/{EXPERIMENT}/report"))


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
          && document.querySelectorAll(".chart canvas").length === 7""",
        timeout=10_000,
    )
    assert page.inner_text("#verdict") == "No rewarded requests yet."
    assert page.inner_text("#exp-status") == "draft"
    assert page.is_hidden("#banner")
    assert problems == []
    page.close()


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
