"""The API docs in a real browser, offline: ``/docs`` and ``/redoc`` with no network.

The service runs on a free port of 127.0.0.1; headless Debian Chromium (driven by
Playwright, never a downloaded browser) may reach that address and nothing else: every
other request is aborted and recorded. Each page must render every operation of
``/openapi.json``, found by its operation id, without asking any other host for
anything it needs.

The one request to another host is ReDoc's: the "API docs by Redocly" link at the foot of
its menu always loads its logo from cdn.redoc.ly, and hides the image when that fails.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import uvicorn

from api.app import create_app
from api.store.migrate import upgrade
from tests.conftest import make_settings

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

if not CHROMIUM.exists():
    pytest.skip(
        f"{CHROMIUM} is missing: install Debian's chromium (apt-get install chromium, or "
        "`make browser`) to run the API docs' browser test.",
        allow_module_level=True,
    )
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")

# ReDoc 2.5's menu footer (see the module docstring); nothing else may leave 127.0.0.1.
REDOC_LOGO = "https://cdn.redoc.ly/redoc/logo-mini.svg"

# Swagger UI gives each operation the element id "operations-<tag>-<operationId>".
_SWAGGER_IDS = """
() => [...document.querySelectorAll(".opblock[id^='operations-']")].map((el) => el.id)
"""
# ReDoc gives each operation's section "tag/<tag>/operation/<operationId>".
_REDOC_IDS = """
() => [...document.querySelectorAll("[data-section-id*='/operation/']")]
  .map((el) => el.getAttribute("data-section-id"))
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def base_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    home = tmp_path_factory.mktemp("docs")
    url = f"sqlite:///{home / 'store.db'}"
    upgrade(url)
    app = create_app(make_settings(home / "home", url, reallocate=False))
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            msg = "The service did not start within 20 s."
            raise RuntimeError(msg)
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


@pytest.fixture(scope="module")
def operations(base_url: str) -> dict[str, str]:
    """Operation id → its tag, from the document the pages render."""
    document = httpx.get(f"{base_url}/openapi.json", timeout=30).json()
    found = {
        op["operationId"]: op["tags"][0]
        for item in document["paths"].values()
        for op in item.values()
    }
    assert len(found) >= 20
    return found


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


class _Offline:
    """A page that reaches 127.0.0.1 only; what it tried elsewhere, and what it logged."""

    def __init__(self, browser: Any) -> None:
        self.context = browser.new_context(viewport={"width": 1400, "height": 1000})
        self.page = self.context.new_page()
        self.blocked: list[str] = []
        self.problems: list[str] = []
        self.context.route("**/*", self._route)
        self.page.on(
            "console",
            lambda m: self.problems.append(f"console: {m.text}") if m.type == "error" else None,
        )
        self.page.on("pageerror", lambda e: self.problems.append(f"page error: {e}"))

    def _route(self, route: Any) -> None:
        url = route.request.url
        if urlsplit(url).hostname == "127.0.0.1":
            route.continue_()
        else:
            self.blocked.append(url)
            route.abort("internetdisconnected")

    def close(self) -> None:
        self.context.close()


def test_swagger_ui_renders_every_operation_offline(
    base_url: str, operations: dict[str, str], browser: Any
) -> None:
    offline = _Offline(browser)
    page = offline.page
    page.goto(f"{base_url}/docs")
    page.wait_for_function(
        f"() => document.querySelectorAll('.opblock').length >= {len(operations)}",
        timeout=30_000,
    )
    rendered = set(page.evaluate(_SWAGGER_IDS))
    expected = {f"operations-{tag}-{op_id}" for op_id, tag in operations.items()}
    assert rendered == expected
    # The upload's description carries the model contract, rendered as markdown.
    upload = next(i for i in expected if i.startswith("operations-variants-upload_variant"))
    page.click(f"#{upload} .opblock-summary")
    page.wait_for_selector(f"#{upload} .opblock-description-wrapper", timeout=10_000)
    description = page.inner_text(f"#{upload} .opblock-description-wrapper")
    assert "Model contract" in description and "zipmap=False" in description
    assert offline.blocked == []
    assert offline.problems == []
    offline.close()


def test_redoc_renders_every_operation_offline(
    base_url: str, operations: dict[str, str], browser: Any
) -> None:
    offline = _Offline(browser)
    page = offline.page
    page.goto(f"{base_url}/redoc")
    page.wait_for_function(
        "(n) => document.querySelectorAll(\"[data-section-id*='/operation/']\").length >= n",
        arg=len(operations),
        timeout=60_000,
    )
    rendered = {section.rsplit("/operation/", 1)[1] for section in page.evaluate(_REDOC_IDS)}
    assert rendered == set(operations)
    text = page.inner_text("body")
    assert "Upload a model as a variant" in text and "zipmap=False" in text
    assert set(offline.blocked) <= {REDOC_LOGO}
    # The failed logo is hidden, not shown broken.
    assert page.locator("img[alt='redocly logo']").count() == 0
    assert [p for p in offline.problems if "ERR_INTERNET_DISCONNECTED" not in p] == []
    offline.close()
