"""Alerts end to end: rules over real served traffic, a real HTTP receiver on loopback
standing in for Slack, PagerDuty and a retraining webhook, the outbox's retries, and the
API's validation and redaction."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from api.alerts import AlertEngine
from api.alerts.payloads import AlertMessage, message_body
from api.alerts.signals import DROPPED_METRIC, dropped_in_metrics_dir
from api.alerts.urls import redact_url
from api.cli import worker_environment
from api.metrics import Metrics
from api.reallocation.worker import workers_metrics_dir
from api.serving.pool import VariantKey
from api.store.engine import make_engine, make_session_factory
from api.store.migrate import upgrade
from api.store.models import AlertDelivery, AuditEvent
from api.store.types import utcnow
from tests.api.helpers import create_experiment, error_code, start, upload
from tests.api.serving_support import flush, running_experiment
from tests.conftest import make_client, make_settings
from tests.onnx_models import linear_model

ROUTING_KEY = "R0123456789abcdef0123456789ABCDE"
SLACK_SECRET = "XyZSlackToken0123456789"
HOOK_SECRET = "hooksecret987"
SEVERITIES = {"critical", "error", "warning", "info"}


class Receiver:
    """A real HTTP server on a loopback port that records every POST.

    ``script(path, [500, 500])`` makes the next POSTs to ``path`` answer those statuses,
    then 200 again.
    """

    def __init__(self) -> None:
        self.requests: list[tuple[str, int, Any]] = []
        self._scripts: dict[str, list[int]] = {}
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(length) or b"null")
                path = self.path.split("?", 1)[0]
                with receiver._lock:
                    script = receiver._scripts.get(path, [])
                    status = script.pop(0) if script else 200
                    receiver.requests.append((path, status, body))
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *_: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self._server.server_port}{path}"

    def script(self, path: str, statuses: list[int]) -> None:
        with self._lock:
            self._scripts[path] = list(statuses)

    def bodies(self, path: str, *, status: int | None = None) -> list[Any]:
        with self._lock:
            return [b for p, s, b in self.requests if p == path and status in (None, s)]

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    try:
        yield r
    finally:
        r.close()


@pytest.fixture
def client(tmp_path: Path, sqlite_url: str) -> Iterator[TestClient]:
    upgrade(sqlite_url)
    # The loop is driven by the tests, as its ticks would; retries are due at once.
    settings = make_settings(
        tmp_path / "home",
        sqlite_url,
        reallocate=False,
        alert_every_s=0,
        alert_retry_base_s=0.001,
    )
    with make_client(settings) as c:
        yield c


def _targets(client: TestClient, receiver: Receiver) -> None:
    bodies = [
        {
            "name": "slack",
            "kind": "slack",
            "url": receiver.url(f"/slack/services/T01/B02/{SLACK_SECRET}"),
        },
        {
            "name": "pager",
            "kind": "pagerduty",
            "routing_key": ROUTING_KEY,
            "url": receiver.url("/pd/v2/enqueue"),
        },
        {"name": "retrain", "kind": "webhook", "url": receiver.url(f"/hook?token={HOOK_SECRET}")},
    ]
    for body in bodies:
        response = client.post("/v1/alert-targets", json=body)
        assert response.status_code == 201, response.text


def _audit(client: TestClient, prefix: str = "alert") -> list[AuditEvent]:
    engine = make_engine(client.app.state.settings.database_url)  # type: ignore[attr-defined]
    try:
        with make_session_factory(engine)() as session:
            stmt = select(AuditEvent).where(AuditEvent.action.startswith(prefix))
            return list(session.scalars(stmt.order_by(AuditEvent.id)))
    finally:
        engine.dispose()


def _check_pagerduty(body: dict[str, Any]) -> None:
    """The Events API v2 field rules."""
    assert isinstance(body["routing_key"], str) and len(body["routing_key"]) == 32
    assert body["event_action"] in {"trigger", "acknowledge", "resolve"}
    assert isinstance(body["dedup_key"], str) and 0 < len(body["dedup_key"]) <= 255
    if body["event_action"] == "trigger":
        payload = body["payload"]
        assert isinstance(payload["summary"], str) and 0 < len(payload["summary"]) <= 1024
        assert payload["severity"] in SEVERITIES
        assert isinstance(payload["source"], str) and payload["source"]


def _serve(client: TestClient, experiment: str, n: int) -> None:
    for first in range(0, n, 500):
        rows = [{"features": [1.0, 2.0, 3.0]}] * min(500, n - first)
        client.post(f"/v1/experiments/{experiment}/predict/batch", json={"rows": rows})


def test_error_rate_triggers_once_then_resolves_once(
    client: TestClient, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    running_experiment(client, "e", weights={"a": 1.0, "b": 0.0})
    _targets(client, receiver)
    rule = client.post(
        "/v1/experiments/e/alert-rules",
        json={
            "kind": "error_rate",
            "threshold": 0.2,
            "window_s": 3600,
            "min_requests": 100,
            "targets": ["slack", "pager", "retrain"],
        },
    )
    assert rule.status_code == 201, rule.text
    assert rule.json()["severity"] == "error"
    reallocator = client.app.state.reallocator  # type: ignore[attr-defined]
    model = client.app.state.pool.get(VariantKey("e", "a"))  # type: ignore[attr-defined]

    def broken(*_: object, **__: object) -> object:
        raise RuntimeError("CUDA error: device lost")

    monkeypatch.setattr(model.session, "run", broken)
    _serve(client, "e", 300)
    flush(client)
    # Two ticks of the loop while the variant fails: one trigger per target, no repeat.
    reallocator.run_due()
    reallocator.run_due()
    slack, pager, hook = (
        receiver.bodies("/slack/services/T01/B02/" + SLACK_SECRET),
        receiver.bodies("/pd/v2/enqueue"),
        receiver.bodies("/hook"),
    )
    assert (len(slack), len(pager), len(hook)) == (1, 1, 1)
    assert "[TRIGGERED]" in slack[0]["text"] and "'a'" in slack[0]["text"]
    assert pager[0]["event_action"] == "trigger"
    assert pager[0]["payload"]["severity"] == "error"
    assert hook[0]["state"] == "triggered"
    assert (hook[0]["experiment"], hook[0]["subject"]) == ("e", "a")
    assert hook[0]["value"] == 1.0 and hook[0]["threshold"] == 0.2
    assert hook[0]["rule"]["kind"] == "error_rate"
    alerts = client.get("/v1/alerts").json()
    assert [a["subject"] for a in alerts["open"]] == ["a"]
    assert alerts["open"][0]["deliveries"] == {"pending": 0, "sent": 3, "failed": 0}

    # The variant recovers: 300 errors among 1800 requests is under the 0.2 threshold.
    monkeypatch.undo()
    _serve(client, "e", 1500)
    flush(client)
    reallocator.run_due()
    reallocator.run_due()
    slack = receiver.bodies("/slack/services/T01/B02/" + SLACK_SECRET)
    pager = receiver.bodies("/pd/v2/enqueue")
    hook = receiver.bodies("/hook")
    assert (len(slack), len(pager), len(hook)) == (2, 2, 2)
    assert "[RESOLVED]" in slack[1]["text"]
    assert [p["event_action"] for p in pager] == ["trigger", "resolve"]
    assert pager[0]["dedup_key"] == pager[1]["dedup_key"]
    for body in pager:
        _check_pagerduty(body)
    assert hook[1]["state"] == "resolved"
    assert hook[1]["value"] == pytest.approx(300 / 1800)
    alerts = client.get("/v1/alerts").json()
    assert alerts["open"] == []
    assert [a["state"] for a in alerts["recent"]] == ["resolved"]
    actions = [e.action for e in _audit(client, "alert_t") + _audit(client, "alert_r")]
    assert sorted(a for a in actions if a in ("alert_trigger", "alert_resolve")) == [
        "alert_resolve",
        "alert_trigger",
    ]


def test_a_flaky_receiver_gets_the_alert_once_and_a_4xx_is_not_retried(
    client: TestClient, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    create_experiment(client, "g", guardrails={"max_error_rate": 0.2})
    upload(client, "g", "good", linear_model([1.0, 1.0, 1.0]))
    upload(client, "g", "bad", linear_model([1.0, 0.0, 0.0]))
    start(client, "g")
    for name, path in (("flaky", "/flaky"), ("gone", "/gone")):
        body = {"name": name, "kind": "webhook", "url": receiver.url(path)}
        assert client.post("/v1/alert-targets", json=body).status_code == 201
    # A port nobody listens on: every attempt is a connection error, retried.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    body = {"name": "closed", "kind": "webhook", "url": f"http://127.0.0.1:{closed_port}/x"}
    assert client.post("/v1/alert-targets", json=body).status_code == 201
    receiver.script("/flaky", [500, 500])
    receiver.script("/gone", [410])
    body = {"kind": "guardrail_tripped", "targets": ["flaky", "gone", "closed"]}
    assert client.post("/v1/experiments/g/alert-rules", json=body).status_code == 201
    model = client.app.state.pool.get(VariantKey("g", "bad"))  # type: ignore[attr-defined]

    def broken(*_: object, **__: object) -> object:
        raise RuntimeError("CUDA error: device lost")

    monkeypatch.setattr(model.session, "run", broken)
    _serve(client, "g", 400)
    flush(client)
    # The pass that pulls the variant, then the alert it causes.
    assert client.post("/v1/experiments/g/reallocate").status_code == 200
    engine = client.app.state.reallocator.alerts  # type: ignore[attr-defined]
    evaluation = engine.evaluate()
    assert len(evaluation.triggered) == 1
    later = utcnow()
    for _ in range(6):
        later += timedelta(seconds=30)
        engine.deliver_due(now=later)
    assert len(engine.evaluate().triggered) == 0
    answered = [s for p, s, _ in receiver.requests if p == "/flaky"]
    assert answered == [500, 500, 200]
    assert len(receiver.bodies("/flaky", status=200)) == 1
    assert receiver.bodies("/flaky")[0]["subject"] == "bad"
    assert [s for p, s, _ in receiver.requests if p == "/gone"] == [410]
    db = make_engine(client.app.state.settings.database_url)  # type: ignore[attr-defined]
    with make_session_factory(db)() as session:
        rows = {d.target_id: d for d in session.scalars(select(AlertDelivery))}
    db.dispose()
    outcomes = sorted((d.status, d.attempts, d.last_error) for d in rows.values())
    assert outcomes == [
        ("failed", 1, "HTTP 410"),
        ("pending", 6, "ConnectError"),
        ("sent", 3, None),
    ]
    failures = _audit(client, "alert_delivery_failed")
    assert len(failures) == 1
    assert failures[0].details["error"] == "HTTP 410" and failures[0].details["retried"] is False

    # Re-enabled by hand, the variant is no longer pulled: one resolve.
    response = client.patch("/v1/experiments/g/variants/bad", json={"enabled": True})
    assert response.status_code == 200, response.text
    assert len(engine.evaluate().resolved) == 1
    engine.deliver_due(now=later + timedelta(seconds=30))
    assert [b["state"] for b in receiver.bodies("/flaky", status=200)] == ["triggered", "resolved"]


def test_pagerduty_payload_stays_within_the_events_v2_limits() -> None:
    message = AlertMessage(
        event="trigger",
        alert_id=1,
        rule_id=7,
        rule_kind="feature_drift",
        experiment="e" * 64,
        subject="f" * 300,
        value=0.9,
        threshold=0.2,
        window_s=86_400,
        severity="warning",
        summary="s" * 5000,
        time=utcnow(),
    )
    trigger = message_body("pagerduty", message, routing_key=ROUTING_KEY)
    _check_pagerduty(trigger)
    assert len(trigger["payload"]["summary"]) == 1024
    resolve = message_body("pagerduty", replace(message, event="resolve"), routing_key=ROUTING_KEY)
    _check_pagerduty(resolve)
    assert resolve["dedup_key"] == trigger["dedup_key"]


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"name": "t", "kind": "webhook", "url": f"ftp://u:{HOOK_SECRET}@h/x"}, "invalid_url"),
        ({"name": "t", "kind": "webhook", "url": "http://"}, "invalid_url"),
        ({"name": "t", "kind": "webhook", "url": f"not a url {HOOK_SECRET}"}, "invalid_url"),
        ({"name": "t", "kind": "slack", "url": f"https:///services/{HOOK_SECRET}"}, "invalid_url"),
        ({"name": "t", "kind": "webhook", "url": "http://h:99999/x"}, "invalid_url"),
        ({"name": "t", "kind": "slack"}, "invalid_url"),
        ({"name": "t", "kind": "pagerduty"}, "invalid_routing_key"),
        ({"name": "t", "kind": "pagerduty", "routing_key": HOOK_SECRET}, "invalid_routing_key"),
        (
            {"name": "t", "kind": "webhook", "url": "http://h/", "routing_key": ROUTING_KEY},
            "invalid_routing_key",
        ),
        ({"name": "t", "kind": "email", "url": "http://h/"}, "invalid_request"),
        ({"name": "", "kind": "webhook", "url": "http://h/"}, "invalid_request"),
        ({"name": "t", "kind": "webhook", "url": "http://h/" + "x" * 3000}, "invalid_url"),
    ],
)
def test_bad_targets_are_422s_that_do_not_echo_secrets(
    client: TestClient, body: dict[str, Any], code: str
) -> None:
    response = client.post("/v1/alert-targets", json=body)
    assert response.status_code == 422, response.text
    assert error_code(response) == code
    assert HOOK_SECRET not in response.text
    if code == "invalid_url":
        assert "url" in response.json()["error"]["message"]


def test_rule_validation(client: TestClient, receiver: Receiver) -> None:
    create_experiment(client, "v")
    assert (
        client.post(
            "/v1/alert-targets", json={"name": "h", "kind": "webhook", "url": receiver.url("/h")}
        ).status_code
        == 201
    )
    cases: list[tuple[dict[str, Any], int, str]] = [
        ({"kind": "cpu_temperature", "targets": ["h"]}, 422, "invalid_request"),
        ({"kind": "error_rate", "threshold": 1.5, "targets": ["h"]}, 422, "invalid_threshold"),
        ({"kind": "error_rate", "threshold": -0.1, "targets": ["h"]}, 422, "invalid_threshold"),
        ({"kind": "srm", "threshold": 0, "targets": ["h"]}, 422, "invalid_threshold"),
        ({"kind": "p99_latency_ms", "threshold": 0, "targets": ["h"]}, 422, "invalid_threshold"),
        (
            {"kind": "guardrail_tripped", "threshold": 0.3, "targets": ["h"]},
            422,
            "invalid_threshold",
        ),
        ({"kind": "feature_drift", "window_s": 5400, "targets": ["h"]}, 422, "invalid_window"),
        ({"kind": "error_rate", "window_s": 10, "targets": ["h"]}, 422, "invalid_request"),
        ({"kind": "error_rate", "targets": ["nobody"]}, 422, "unknown_target"),
        ({"kind": "error_rate", "targets": []}, 422, "invalid_request"),
        ({"kind": "error_rate", "targets": ["h"], "extra": 1}, 422, "invalid_request"),
    ]
    for body, status, code in cases:
        response = client.post("/v1/experiments/v/alert-rules", json=body)
        assert (response.status_code, error_code(response)) == (status, code), (body, response.text)
    missing = client.post(
        "/v1/experiments/nope/alert-rules", json={"kind": "srm", "targets": ["h"]}
    )
    assert (missing.status_code, error_code(missing)) == (404, "experiment_not_found")
    created = client.post(
        "/v1/experiments/v/alert-rules", json={"kind": "feature_drift", "targets": ["h"]}
    )
    assert created.status_code == 201, created.text
    rule = created.json()
    assert (rule["threshold"], rule["window_s"], rule["severity"]) == (0.2, 86_400, "warning")
    path = f"/v1/experiments/v/alert-rules/{rule['id']}"
    patched = client.patch(path, json={"threshold": 0.5, "enabled": False})
    assert patched.status_code == 200 and patched.json()["threshold"] == 0.5
    assert patched.json()["enabled"] is False
    bad_patch = client.patch(path, json={"threshold": 1000})
    assert (bad_patch.status_code, error_code(bad_patch)) == (422, "invalid_threshold")
    for wrong in ("/v1/experiments/v/alert-rules/999", "/v1/experiments/v/alert-rules/99999999999"):
        response = client.get(wrong)
        assert response.status_code in (404, 422), response.text
    assert [r["id"] for r in client.get("/v1/experiments/v/alert-rules").json()] == [rule["id"]]
    in_use = client.delete("/v1/alert-targets/h")
    assert (in_use.status_code, error_code(in_use)) == (409, "target_in_use")
    duplicate = client.post(
        "/v1/alert-targets", json={"name": "h", "kind": "webhook", "url": receiver.url("/h")}
    )
    assert (duplicate.status_code, error_code(duplicate)) == (409, "duplicate_name")
    assert client.delete(path).status_code == 200
    assert client.get(path).status_code == 404
    assert client.delete("/v1/alert-targets/h").status_code == 200
    assert client.get("/v1/alert-targets").json() == []
    actions = [e.action for e in _audit(client)]
    assert actions == [
        "alert_target_create",
        "alert_rule_create",
        "alert_rule_update",
        "alert_rule_delete",
        "alert_target_delete",
    ]


def test_secrets_in_target_urls_are_never_echoed(client: TestClient) -> None:
    secrets = [SLACK_SECRET, HOOK_SECRET, ROUTING_KEY, "pa55word"]
    bodies = [
        {
            "name": "slack",
            "kind": "slack",
            "url": f"https://hooks.slack.com/services/T01/B02/{SLACK_SECRET}",
        },
        {"name": "pd", "kind": "pagerduty", "routing_key": ROUTING_KEY},
        {
            "name": "hook",
            "kind": "webhook",
            "url": f"https://ops:pa55word@ci.example.com:8443/hooks?token={HOOK_SECRET}#x",
        },
    ]
    answers = [client.post("/v1/alert-targets", json=b) for b in bodies]
    assert [a.status_code for a in answers] == [201, 201, 201]
    listed = client.get("/v1/alert-targets")
    by_name = {t["name"]: t for t in listed.json()}
    assert by_name["slack"]["url"] == "https://hooks.slack.com/services/…"
    assert by_name["pd"]["url"] == "https://events.pagerduty.com/v2/…"
    assert by_name["pd"]["routing_key_set"] is True
    assert by_name["hook"]["url"] == "https://ci.example.com:8443/…"
    deleted = client.delete("/v1/alert-targets/hook")
    texts = [a.text for a in answers] + [listed.text, deleted.text]
    texts += [json.dumps(e.details) for e in _audit(client)]
    for text in texts:
        for secret in secrets:
            assert secret not in text


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://hooks.slack.com/services/T/B/tok", "https://hooks.slack.com/services/…"),
        ("http://127.0.0.1:9000/a/b", "http://127.0.0.1:9000/a/…"),
        ("https://h/OnlyATokenHere", "https://h/…"),
        ("http://h/?key=1", "http://h/…"),
        ("http://user:pw@h", "http://h/…"),
        ("http://h", "http://h"),
        ("garbage", "…"),
        ("http://[::1", "…"),
    ],
)
def test_redacted_urls(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_the_dashboard_has_an_alerts_panel(client: TestClient) -> None:
    page = client.get("/dashboard")
    assert 'id="panel-alerts"' in page.text
    script = client.get("/dashboard/static/dashboard/alerts.js")
    assert script.status_code == 200
    assert "export const renderAlerts" in script.text
    assert "fetchAlerts" in client.get("/dashboard/static/dashboard/main.js").text


@pytest.fixture
def any_store_client(tmp_path: Path, database_url: str) -> Iterator[TestClient]:
    upgrade(database_url)
    settings = make_settings(tmp_path / "home", database_url, reallocate=False)
    with make_client(settings) as c:
        yield c


def test_every_rule_kind_is_measured(any_store_client: TestClient, receiver: Receiver) -> None:
    client = any_store_client
    running_experiment(client, "k")
    body = {"name": "h", "kind": "webhook", "url": receiver.url("/h")}
    assert client.post("/v1/alert-targets", json=body).status_code == 201
    rules = [
        {"kind": "guardrail_tripped"},
        {"kind": "error_rate", "min_requests": 1, "window_s": 7200},
        {"kind": "p99_latency_ms", "threshold": 1e-6, "min_requests": 1, "window_s": 7200},
        {"kind": "srm"},
        {"kind": "feature_drift", "window_s": 3600},
        {"kind": "prediction_drift", "window_s": 3600},
        {"kind": "rows_dropped"},
        {"kind": "reallocation_stalled", "threshold": 60},
    ]
    for rule in rules:
        response = client.post("/v1/experiments/k/alert-rules", json={**rule, "targets": ["h"]})
        assert response.status_code == 201, response.text
    _serve(client, "k", 300)
    flush(client)
    engine = client.app.state.reallocator.alerts  # type: ignore[attr-defined]
    # An hour on: the allocation is an hour old, the rows still in the 2-hour windows.
    evaluation = engine.evaluate(now=utcnow() + timedelta(hours=1))
    assert evaluation.failed_rules == []
    # A new lease holder (another engine on the same store) sends nothing already open.
    settings = client.app.state.settings  # type: ignore[attr-defined]
    factory = client.app.state.session_factory  # type: ignore[attr-defined]
    successor = AlertEngine(settings, factory, client.app.state.lake_stats)  # type: ignore[attr-defined]
    try:
        again = successor.evaluate(now=utcnow() + timedelta(hours=1))
    finally:
        successor.close()
    assert (again.triggered, again.resolved, again.failed_rules) == ([], [], [])
    opened = {(a["kind"], a["subject"]) for a in client.get("/v1/alerts").json()["open"]}
    assert ("reallocation_stalled", "experiment") in opened
    assert {("p99_latency_ms", "a"), ("p99_latency_ms", "b")} <= opened
    assert not any(
        kind in ("error_rate", "guardrail_tripped", "rows_dropped") for kind, _ in opened
    )


def test_rows_dropped_fires_when_the_writer_drops_rows(
    tmp_path: Path, sqlite_url: str, receiver: Receiver
) -> None:
    upgrade(sqlite_url)
    # A buffer of 50 rows: a batch of 300 appended at once overflows it.
    settings = make_settings(
        tmp_path / "home",
        sqlite_url,
        reallocate=False,
        lake_buffer_rows=50,
        lake_flush_rows=50,
        lake_flush_interval_ms=60_000,
    )
    with make_client(settings) as client:
        running_experiment(client, "d")
        body = {"name": "h", "kind": "webhook", "url": receiver.url("/h")}
        assert client.post("/v1/alert-targets", json=body).status_code == 201
        rule = {"kind": "rows_dropped", "threshold": 10, "targets": ["h"]}
        assert client.post("/v1/experiments/d/alert-rules", json=rule).status_code == 201
        engine = client.app.state.reallocator.alerts  # type: ignore[attr-defined]
        assert engine.evaluate().triggered == []
        _serve(client, "d", 300)
        evaluation = engine.evaluate()
        assert len(evaluation.triggered) == 1
        engine.deliver_due()
        (sent,) = receiver.bodies("/h")
        assert (sent["rule"]["kind"], sent["subject"]) == ("rows_dropped", "lake")
        writers = (client.app.state.serving.predictions, client.app.state.serving.feedback_writer)  # type: ignore[attr-defined]
        assert sent["value"] == sum(w.stats().rows_dropped for w in writers) > 10


def test_the_reallocation_process_reads_the_workers_dropped_rows(
    tmp_path: Path, sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = tmp_path / "metrics"
    assert dropped_in_metrics_dir(directory) is None
    directory.mkdir()
    # Two worker processes count drops in multiprocess mode, as `serve --workers 2` runs.
    script = (
        "from prometheus_client import Counter; "
        f"c = Counter({DROPPED_METRIC!r}, 'dropped', ['table']); "
        "c.labels('predictions').inc({n}); c.labels('feedback').inc(1)"
    )
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(directory)}
    for n in (7, 30):
        subprocess.run([sys.executable, "-c", script.format(n=n)], env=env, check=True)
    assert dropped_in_metrics_dir(directory) == 7 + 30 + 2
    # The name is the service's counter's.
    assert Metrics().lake_rows_dropped._name + "_total" == DROPPED_METRIC
    # The directory the reallocation process reads is the one serve gives its workers.
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    settings = make_settings(tmp_path / "home", sqlite_url)
    named = worker_environment(settings, pid=4242)["PROMETHEUS_MULTIPROC_DIR"]
    assert workers_metrics_dir(settings, 4242) == Path(named)
