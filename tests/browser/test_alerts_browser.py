"""The dashboard's Alerts panel in a real browser (headless Debian Chromium).

An experiment with a ``reallocation_stalled`` rule is evaluated an hour ahead, so one alert
is open; the list page must show it, as text, without a console error.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from pydantic import SecretStr

from api.app import create_app
from api.store.migrate import upgrade
from api.store.types import utcnow
from tests.conftest import make_settings
from tests.onnx_models import linear_model

CHROMIUM = Path("/usr/bin/chromium")
TOKEN = "alerts-admin-token"

if not CHROMIUM.exists():
    pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium).", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")


@pytest.fixture
def base(tmp_path: Path) -> Iterator[tuple[str, Any]]:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    upgrade(url)
    settings = make_settings(
        tmp_path / "home",
        url,
        reallocate=False,
        admin_token=SecretStr(TOKEN),
        serve_token=SecretStr("serve-token"),
    )
    app = create_app(settings)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the service did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}", app
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def test_the_alerts_panel_lists_an_open_alert(base: tuple[str, Any]) -> None:
    url, app = base
    with httpx.Client(
        base_url=url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30
    ) as http:

        def ok(response: httpx.Response) -> Any:
            assert response.status_code < 300, response.text
            return response.json()

        ok(http.post("/v1/experiments", json={"name": "stall", "reward": {"kind": "binary"}}))
        for arm in ("a", "b"):
            ok(
                http.post(
                    "/v1/experiments/stall/variants",
                    data={"name": arm, "role": "arm"},
                    files={"model": ("m.onnx", linear_model([1.0, 2.0, 3.0]), "x/onnx")},
                )
            )
        ok(http.patch("/v1/experiments/stall", json={"status": "running"}))
        target = {"name": "ops", "kind": "webhook", "url": "http://127.0.0.1:9/hook"}
        ok(http.post("/v1/alert-targets", json=target))
        rule = {"kind": "reallocation_stalled", "threshold": 60, "targets": ["ops"]}
        ok(http.post("/v1/experiments/stall/alert-rules", json=rule))
    evaluation = app.state.reallocator.alerts.evaluate(now=utcnow() + timedelta(hours=1))
    assert len(evaluation.triggered) == 1
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=["--headless", "--no-sandbox"]
        )
        try:
            page = browser.new_page()
            problems: list[str] = []
            page.on("pageerror", lambda e: problems.append(str(e)))
            page.on(
                "console",
                lambda m: problems.append(m.text) if m.type == "error" else None,
            )
            page.goto(f"{url}/dashboard?token={TOKEN}")
            page.wait_for_selector("#alerts tbody tr", timeout=15_000)
            row = page.inner_text("#alerts tbody tr")
            assert "open" in row and "stall" in row and "reallocation_stalled" in row
            assert "experiment" in row and "0 sent · 1 pending" in row
            assert page.inner_text("#alerts-note") == "1 open alert."
            assert problems == []
        finally:
            browser.close()
