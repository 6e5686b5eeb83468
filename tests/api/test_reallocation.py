"""Reallocation end to end: traffic, feedback, guardrails, leases and the report."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from api.control import leases
from api.control.allocation_versions import record_allocation
from api.control.experiments import get_experiment
from api.serving.pool import VariantKey
from api.settings import Settings
from api.store.engine import make_engine, make_session_factory
from api.store.migrate import upgrade
from api.store.models import AuditEvent
from tests.api.helpers import create_experiment, error_code, start, upload
from tests.api.serving_support import flush, lake_rows
from tests.conftest import make_client, make_settings
from tests.onnx_models import fragile_model, linear_model


def _traffic(
    client: TestClient, name: str, n: int, rates: dict[str, float], rng: np.random.Generator
) -> dict[str, int]:
    seen: dict[str, int] = {}
    for start_at in range(0, n, 500):
        rows = [{"features": [1.0, 2.0, 3.0]}] * min(500, n - start_at)
        results = client.post(f"/v1/experiments/{name}/predict/batch", json={"rows": rows}).json()[
            "results"
        ]
        items = []
        for r in results:
            seen[r["variant"]] = seen.get(r["variant"], 0) + 1
            items.append(
                {"request_id": r["request_id"], "reward": float(rng.random() < rates[r["variant"]])}
            )
        assert client.post("/v1/feedback/batch", json={"items": items}).status_code == 202
    flush(client)
    return seen


@pytest.mark.slow
def test_thompson_moves_traffic_to_the_better_variant(client: TestClient) -> None:
    create_experiment(client, "ctr", policy={"kind": "thompson"}, min_weight=0.02)
    upload(client, "ctr", "a", linear_model([1.0, 0.0, 0.0]))
    upload(client, "ctr", "b", linear_model([0.0, 1.0, 0.0]))
    start(client, "ctr")
    rates = {"a": 0.05, "b": 0.10}
    rng = np.random.default_rng(2026)
    for _ in range(8):
        _traffic(client, "ctr", 1500, rates, rng)
        response = client.post("/v1/experiments/ctr/reallocate")
        assert response.status_code == 200, response.text
    allocation = client.get("/v1/experiments/ctr/allocation").json()
    assert allocation["weights"]["b"] > 0.5, allocation
    assert allocation["weights"]["a"] >= 0.02 - 1e-12
    history = client.get("/v1/experiments/ctr/allocations").json()
    assert [h["version"] for h in history] == list(range(9, 0, -1))
    for step in history[:-1]:
        assert step["reason"] and step["author"] == "loopback"
        assert step["stats"]["policy"] == "thompson"
        assert set(step["stats"]["counts"]) == {"a", "b"}
    assert history[-1]["reason"].startswith("start")
    report = client.get("/v1/experiments/ctr/report").json()
    by_name = {v["name"]: v for v in report["variants"]}
    assert by_name["b"]["prob_best"] > 0.95
    assert "'b'" in report["verdict"]
    assert by_name["a"]["requests"] + by_name["b"]["requests"] == 12_000
    assert by_name["b"]["test"]["diff"] > 0
    assert report["srm_mismatch"] is False


def test_report_matches_the_lake(client: TestClient, settings: Settings) -> None:
    create_experiment(client, "r", reward={"kind": "continuous"})
    upload(client, "r", "a", linear_model([1.0, 0.0, 0.0]))
    upload(client, "r", "b", linear_model([0.0, 1.0, 0.0]))
    upload(client, "r", "s", linear_model([0.0, 0.0, 1.0]), role="shadow")
    start(client, "r")
    rng = np.random.default_rng(1)
    results = client.post(
        "/v1/experiments/r/predict/batch", json={"rows": [{"features": [1, 2, 3]}] * 300}
    ).json()["results"]
    items = [
        {
            "request_id": r["request_id"],
            "reward": float(rng.normal(1 if r["variant"] == "b" else 0)),
        }
        for r in results[:250]
    ]
    client.post("/v1/feedback/batch", json={"items": items})
    client.post("/v1/feedback/batch", json={"items": items[:50]})  # duplicates count once
    flush(client)
    report = client.get("/v1/experiments/r/report").json()
    expected = dict(
        (row[0], row[1:])
        for row in lake_rows(
            settings,
            "select variant, count(*), count(reward), avg(reward) from decisions "
            "where role = 'arm' group by variant",
        )
    )
    for v in report["variants"]:
        if v["role"] == "shadow":
            assert v["requests"] == 300
            assert v["weight"] is None
            continue
        requests, rewarded, mean = expected[v["name"]]
        assert (v["requests"], v["rewarded"]) == (requests, rewarded)
        assert v["reward_mean"] == pytest.approx(mean, rel=1e-9)
        assert v["ci_low"] < mean < v["ci_high"]
        assert v["latency_p99_ms"] >= v["latency_p50_ms"] > 0
        assert v["error_rate"] == 0
    assert report["variants"][0]["test"] is None
    assert report["variants"][1]["test"]["method"].lower().startswith("welch")


def test_guardrail_pulls_a_failing_variant(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    create_experiment(client, "g", guardrails={"max_error_rate": 0.2})
    upload(client, "g", "good", linear_model([1.0, 1.0, 1.0]))
    upload(client, "g", "bad", fragile_model())
    start(client, "g")
    # A model failing on every input, its load-time one included (a lost device, a broken
    # runtime): that is the variant's fault. Failing on some rows only is not (the row is
    # rejected, see tests/api/test_security.py).
    model = client.app.state.pool.get(VariantKey("g", "bad"))  # type: ignore[attr-defined]

    def broken(*_: object, **__: object) -> object:
        raise RuntimeError("CUDA error: device lost")

    monkeypatch.setattr(model.session, "run", broken)
    rows = [{"features": [5.0, 0.0, 0.0]}] * 400
    client.post("/v1/experiments/g/predict/batch", json={"rows": rows})
    flush(client)
    response = client.post("/v1/experiments/g/reallocate")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["weights"] == {"good": 1.0}
    assert "Guardrail pulled 'bad'" in body["reason"]
    variants = {v["name"]: v for v in client.get("/v1/experiments/g/variants").json()}
    assert variants["bad"]["status"] == "disabled"
    assert "error rate" in variants["bad"]["status_reason"]
    engine = make_engine(client.app.state.settings.database_url)  # type: ignore[attr-defined]
    with make_session_factory(engine)() as session:
        events = list(session.scalars(select(AuditEvent).where(AuditEvent.action == "guardrail")))
    engine.dispose()
    assert len(events) == 1
    assert events[0].details["variant"] == "bad"
    assert events[0].details["errors"] > 0.2 * events[0].details["served"]


def test_reallocate_needs_a_running_experiment(client: TestClient) -> None:
    create_experiment(client, "d")
    upload(client, "d", "a")
    response = client.post("/v1/experiments/d/reallocate")
    assert response.status_code == 409
    assert error_code(response) == "experiment_not_running"
    assert client.post("/v1/experiments/ghost/reallocate").status_code == 404
    assert client.get("/v1/experiments/ghost/report").status_code == 404


def test_report_without_data_is_defined(client: TestClient) -> None:
    create_experiment(client, "empty")
    upload(client, "empty", "a")
    upload(client, "empty", "b")
    report = client.get("/v1/experiments/empty/report").json()
    assert report["verdict"] == "No rewarded requests yet."
    assert all(v["requests"] == 0 and v["reward_mean"] is None for v in report["variants"])
    assert report["srm_p_value"] is None


def test_lease_has_one_holder(database_url: str) -> None:
    upgrade(database_url)
    engine = make_engine(database_url)
    factory = make_session_factory(engine)
    ttl = timedelta(seconds=30)
    with factory() as one, factory() as two:
        assert leases.acquire(one, "loop", "replica-1", ttl)
        assert not leases.acquire(two, "loop", "replica-2", ttl)
        assert leases.acquire(one, "loop", "replica-1", ttl)  # renewal
        leases.release(one, "loop", "replica-1")
        assert leases.acquire(two, "loop", "replica-2", ttl)
        assert not leases.acquire(one, "loop", "replica-1", ttl)
        assert leases.acquire(one, "loop", "replica-1", timedelta(seconds=-1)) is False
    with factory() as three:
        # An expired lease passes to the next asker.
        assert leases.acquire(three, "other", "x", timedelta(seconds=-1))
        assert leases.acquire(three, "other", "y", ttl)
    engine.dispose()


def test_periodic_loop_reallocates_when_due(tmp_path: Path, sqlite_url: str) -> None:
    import time

    upgrade(sqlite_url)
    settings = make_settings(tmp_path / "home", sqlite_url)
    with make_client(settings) as client:
        create_experiment(client, "loop", reallocate_every_s=1)
        upload(client, "loop", "a")
        upload(client, "loop", "b")
        start(client, "loop")
        deadline = time.monotonic() + 20
        version = 1
        while time.monotonic() < deadline and version < 3:
            time.sleep(0.2)
            version = client.get("/v1/experiments/loop/allocation").json()["version"]
        assert version >= 3
        latest = client.get("/v1/experiments/loop/allocation").json()
        assert latest["author"] == "reallocator"


def test_canary_ramps_the_candidate_in_stages(client: TestClient) -> None:
    policy = {
        "kind": "canary",
        "candidate": "b",
        "control": "a",
        "stages": [0.1, 0.5, 1.0],
        "min_samples": 50,
        "margin": 0.5,
    }
    create_experiment(client, "can", policy=policy)
    upload(client, "can", "a", linear_model([1.0, 0.0, 0.0]))
    upload(client, "can", "b", linear_model([0.0, 1.0, 0.0]))
    start(client, "can")
    first = client.post("/v1/experiments/can/reallocate").json()
    assert first["weights"]["b"] == pytest.approx(0.1)
    rng = np.random.default_rng(5)
    shares = [first["weights"]["b"]]
    for _ in range(3):
        _traffic(client, "can", 600, {"a": 0.5, "b": 0.5}, rng)
        step = client.post("/v1/experiments/can/reallocate").json()
        shares.append(step["weights"]["b"])
        assert step["stats"]["policy"] == "canary"
    assert shares == sorted(shares), shares
    assert shares[-1] > shares[0]


@pytest.mark.parametrize(
    ("candidate", "control"), [("bad", "good"), ("good", "bad")], ids=["candidate", "control"]
)
def test_guardrail_ends_a_canary_it_pulls_an_arm_of(
    client: TestClient, candidate: str, control: str
) -> None:
    policy = {"kind": "canary", "candidate": candidate, "control": control, "stages": [0.5, 1.0]}
    # Every arm breaches a p99 limit this low; the guardrail pulls arms in upload order
    # and keeps the last, so 'bad' is pulled and 'good' survives.
    guardrails = {"max_p99_latency_ms": 1e-9}
    create_experiment(client, "cg", policy=policy, guardrails=guardrails)
    upload(client, "cg", "bad", linear_model([0.0, 1.0, 0.0]))
    upload(client, "cg", "good", linear_model([1.0, 0.0, 0.0]))
    start(client, "cg")
    rows = [{"features": [1.0, 2.0, 3.0]}] * 600
    assert client.post("/v1/experiments/cg/predict/batch", json={"rows": rows}).status_code == 200
    flush(client)
    response = client.post("/v1/experiments/cg/reallocate")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["weights"] == {"good": 1.0}
    assert "Guardrail pulled 'bad'" in body["reason"]
    assert "The canary has ended" in body["reason"]
    assert body["stats"]["decision"] == "ended"
    # The next allocation, now without the pulled arm in force, stays defined.
    again = client.post("/v1/experiments/cg/reallocate")
    assert again.status_code == 200, again.text
    assert again.json()["weights"] == {"good": 1.0}
    assert again.json()["stats"]["decision"] == "ended"


def test_report_expects_every_served_version_however_long_the_history(
    client: TestClient,
) -> None:
    create_experiment(client, "long")
    upload(client, "long", "a")
    upload(client, "long", "b")
    start(client, "long")
    skewed = client.put("/v1/experiments/long/allocation", json={"weights": {"a": 0.9, "b": 0.1}})
    assert skewed.status_code == 200, skewed.text
    rows = [{"features": [1.0, 2.0, 3.0]}] * 500
    for _ in range(4):
        client.post("/v1/experiments/long/predict/batch", json={"rows": rows})
    engine = make_engine(client.app.state.settings.database_url)  # type: ignore[attr-defined]
    with make_session_factory(engine)() as session:
        experiment = get_experiment(session, "long")
        for _ in range(1000):  # more versions than the history's default page
            record_allocation(
                session, experiment, {"a": 0.5, "b": 0.5}, reason="filler", author="test"
            )
        session.commit()
    engine.dispose()
    even = client.put("/v1/experiments/long/allocation", json={"weights": {"a": 0.5, "b": 0.5}})
    assert even.json()["version"] == 1003
    for _ in range(4):
        client.post("/v1/experiments/long/predict/batch", json={"rows": rows})
    flush(client)
    report = client.get("/v1/experiments/long/report").json()
    assert sum(v["requests"] for v in report["variants"]) == 4000
    assert report["srm_mismatch"] is False, report["verdict"]
    assert report["srm_p_value"] > 0.001


def test_the_lease_holder_compacts_and_the_report_does_not_change(
    tmp_path: Path, sqlite_url: str
) -> None:
    upgrade(sqlite_url)
    settings = make_settings(
        tmp_path / "home",
        sqlite_url,
        reallocate=False,
        compact_every_s=3600,
        compact_min_age_s=0,
        compact_grace_s=0,
    )
    with make_client(settings) as client:
        create_experiment(client, "c", reward={"kind": "continuous"})
        upload(client, "c", "a", linear_model([1.0, 0.0, 0.0]))
        upload(client, "c", "b", linear_model([0.0, 1.0, 0.0]))
        start(client, "c")
        for _ in range(3):
            results = client.post(
                "/v1/experiments/c/predict/batch", json={"rows": [{"features": [1, 2, 3]}] * 40}
            ).json()["results"]
            items = [{"request_id": r["request_id"], "reward": 1.0} for r in results[:30]]
            client.post("/v1/feedback/batch", json={"items": items})
            flush(client)
        before = client.get("/v1/experiments/c/report").json()
        reallocator = client.app.state.reallocator  # type: ignore[attr-defined]
        with reallocator._session_factory() as session:
            assert leases.acquire(session, "reallocator", reallocator.holder, timedelta(seconds=60))
        # Not due yet: the first compaction waits one period after the holder starts.
        assert reallocator.compact_if_due() is None
        reallocator._compact_due = 0.0
        summary = reallocator.compact_if_due()
        assert summary is not None
        assert summary.rows == 3 * 40 + 3 * 30
        inventory = client.get("/v1/lake").json()
        by_table = inventory["tables"]
        assert by_table["predictions"]["small_files"] == 0
        assert by_table["predictions"]["published_files"] >= 1
        assert by_table["predictions"]["rows"] == 120
        assert by_table["predictions"]["delta_version"] is not None
        after = client.get("/v1/experiments/c/report").json()
        assert after["variants"] == before["variants"]
        assert lake_rows(settings, "select count(*) from predictions") == [(120,)]
