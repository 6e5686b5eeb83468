"""The API docs: every operation documented with examples, pages served from the package.

``/openapi.json`` is what Swagger UI, ReDoc and client generators read: every operation
needs a summary, a description, a request example where it takes a body, an example of
its success answer, and every error status it declares in the one error envelope with
an example of it. Every example must validate against the schema it illustrates.
``/docs`` and ``/redoc`` must load nothing from another host.
"""

from __future__ import annotations

import copy
import hashlib
import re
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from api.app import create_app
from api.settings import Settings

VENDOR = Path(__file__).resolve().parents[2] / "api" / "static" / "vendor"
ERROR_ENVELOPE = {"$ref": "#/components/schemas/ErrorOut"}
# /readyz answers 503 with its probe, not with an error: a load balancer reads the parts.
NOT_AN_ERROR = {("get", "/readyz", "503")}


@pytest.fixture(scope="module")
def app() -> FastAPI:
    # The document and the docs pages need neither the lifespan nor real settings.
    return create_app(Settings(_env_file=None, home=Path("unused"), device="cpu"))


@pytest.fixture(scope="module")
def document(app: FastAPI) -> dict[str, Any]:
    return app.openapi()


def _operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method, path, operation)
        for path, item in document["paths"].items()
        for method, operation in item.items()
    ]


def _examples(media: dict[str, Any]) -> list[Any]:
    found = [media["example"]] if "example" in media else []
    return found + [e["value"] for e in media.get("examples", {}).values()]


def _resolve(node: Any, document: dict[str, Any]) -> Any:
    """The schema with every ``#/components/...`` reference replaced by its target."""
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str):
            target: Any = document
            for part in ref.removeprefix("#/").split("/"):
                target = target[part]
            return _resolve(target, document)
        return {k: _resolve(v, document) for k, v in node.items()}
    if isinstance(node, list):
        return [_resolve(v, document) for v in node]
    return node


def test_every_operation_has_a_summary_and_a_description(document: dict[str, Any]) -> None:
    missing = [
        f"{method.upper()} {path}: {field}"
        for method, path, operation in _operations(document)
        for field in ("summary", "description")
        if len(str(operation.get(field, "")).strip()) < 10
    ]
    assert missing == []


def test_every_request_body_has_an_example(document: dict[str, Any]) -> None:
    missing = [
        f"{method.upper()} {path} ({media_type})"
        for method, path, operation in _operations(document)
        for media_type, media in operation.get("requestBody", {}).get("content", {}).items()
        if not _examples(media)
    ]
    assert missing == []


def test_every_success_answer_has_an_example(document: dict[str, Any]) -> None:
    missing = []
    for method, path, operation in _operations(document):
        successes = {s: r for s, r in operation["responses"].items() if s.startswith("2")}
        assert successes, f"{method.upper()} {path} documents no success status"
        for status, response in successes.items():
            media = response.get("content", {}).get("application/json", {})
            if not _examples(media):
                missing.append(f"{method.upper()} {path} {status}")
    assert missing == []


def test_every_error_status_uses_the_envelope_with_an_example(document: dict[str, Any]) -> None:
    problems = []
    for method, path, operation in _operations(document):
        for status, response in operation["responses"].items():
            if status.startswith("2") or (method, path, status) in NOT_AN_ERROR:
                continue
            where = f"{method.upper()} {path} {status}"
            media = response.get("content", {}).get("application/json", {})
            if media.get("schema") != ERROR_ENVELOPE:
                problems.append(f"{where}: schema {media.get('schema')}")
            examples = _examples(media)
            if not examples:
                problems.append(f"{where}: no example")
            for example in examples:
                if set(example) != {"error"} or set(example["error"]) != {
                    "code",
                    "message",
                    "details",
                }:
                    problems.append(f"{where}: example {example} is not the envelope")
    assert problems == []


def test_the_statuses_the_issue_lists_are_all_documented(document: dict[str, Any]) -> None:
    documented = {
        status for _, _, operation in _operations(document) for status in operation["responses"]
    }
    assert {"401", "403", "404", "409", "413", "422", "503"} <= documented


def test_every_example_validates_against_its_schema(document: dict[str, Any]) -> None:
    problems = []
    for method, path, operation in _operations(document):
        where = f"{method.upper()} {path}"
        media_by_place = [
            (f"{where} request ({t})", m)
            for t, m in operation.get("requestBody", {}).get("content", {}).items()
        ] + [
            (f"{where} {status}", m)
            for status, response in operation["responses"].items()
            for m in response.get("content", {}).values()
        ]
        for place, media in media_by_place:
            if "schema" not in media:
                continue
            schema = _resolve(media["schema"], document)
            if place.endswith("(multipart/form-data)"):
                # The file part cannot be shown in an example; the other fields must fit.
                schema = copy.deepcopy(schema)
                schema["required"] = [f for f in schema.get("required", []) if f != "model"]
            for example in _examples(media):
                try:
                    jsonschema.validate(example, schema)
                except jsonschema.ValidationError as exc:
                    problems.append(f"{place}: {exc.message} at {list(exc.absolute_path)}")
    assert problems == [], "fix the examples in api/routes/_examples.py or _responses.py"


def test_the_docs_pages_load_only_the_vendored_assets(app: FastAPI) -> None:
    client = TestClient(app)
    for page in ("/docs", "/redoc"):
        response = client.get(page)
        assert response.status_code == 200
        html = response.text
        urls = re.findall(r"""(?:src|href)=["']([^"']+)["']""", html)
        assert urls, html
        assert all(url.startswith("/static/vendor/") for url in urls), urls
        assert "https://" not in html and "http://" not in html
        for url in urls:
            asset = client.get(url)
            assert asset.status_code == 200, url
            assert len(asset.content) > 500, url
    assert "fonts.googleapis" not in client.get("/redoc").text
    assert client.get("/docs/oauth2-redirect").status_code == 200
    assert client.get("/openapi.json").status_code == 200


def test_only_vendored_files_are_served(app: FastAPI) -> None:
    client = TestClient(app)
    response = client.get("/static/vendor/..%2Fdashboard.html")
    assert response.status_code == 404
    assert response.json()["error"]["code"] in ("asset_not_found", "not_found")
    assert client.get("/static/vendor/nope.js").json()["error"]["code"] == "asset_not_found"


def test_the_vendor_readme_records_every_file_and_its_checksum() -> None:
    readme = (VENDOR / "README.md").read_text()
    for path in VENDOR.iterdir():
        if path.name == "README.md":
            continue
        assert f"`{path.name}`" in readme, f"{path.name} is not recorded in the vendor README"
    for name, digest in re.findall(r"^\| `([^`]+)` \|[^|]*sha256 `([0-9a-f]{64})`", readme, re.M):
        actual = hashlib.sha256((VENDOR / name).read_bytes()).hexdigest()
        assert actual == digest, f"{name}: the README records {digest}, the file is {actual}"
