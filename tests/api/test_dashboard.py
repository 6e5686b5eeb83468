"""The dashboard's JSON panels, checked against direct DuckDB queries on the lake."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from api.serving.pool import VariantKey
from api.settings import Settings
from lake.dashboard import DRIFT_MIN_ROWS, DashboardQueries, psi
from lake.errors import LakeConfigError
from lake.reader import open_lake
from lake.rewards import RewardRule
from lake.schemas import FeedbackRow, PredictionRow
from tests.api.helpers import create_experiment, error_code, start, upload
from tests.api.serving_support import flush, lake_rows
from tests.conftest import make_client, make_settings
from tests.onnx_models import fragile_model, linear_model

API = "/dashboard/api/experiments"
RATES = {"a": 0.2, "b": 0.6}


def _send(
    client: TestClient, name: str, features: list[list[float]], rng: np.random.Generator
) -> None:
    results = client.post(
        f"/v1/experiments/{name}/predict/batch",
        json={"rows": [{"features": f} for f in features]},
    ).json()["results"]
    # Every third request stays without feedback: pending, not a zero reward.
    items = [
        {"request_id": r["request_id"], "reward": float(rng.random() < RATES[r["variant"]])}
        for i, r in enumerate(results)
        if i % 3
    ]
    assert client.post("/v1/feedback/batch", json={"items": items}).status_code == 202
    assert client.post("/v1/feedback/batch", json={"items": items[:20]}).status_code == 202


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, Settings]]:
    """Experiment ``e``: arms a and b, shadow s, two allocation versions, a shifted ``f2``."""
    from api.store.migrate import upgrade

    home = tmp_path_factory.mktemp("dash")
    url = f"sqlite:///{home / 'store.db'}"
    upgrade(url)
    settings = make_settings(home / "home", url, reallocate=False)
    rng = np.random.default_rng(11)
    with make_client(settings) as client:
        create_experiment(client, "e", policy={"kind": "thompson"})
        upload(client, "e", "a", linear_model([1.0, 0.0, 0.0]))
        upload(client, "e", "b", linear_model([0.0, 1.0, 0.0]))
        upload(client, "e", "s", linear_model([0.0, 0.0, 1.0]), role="shadow")
        start(client, "e")
        stable = rng.normal(size=(300, 2))
        _send(client, "e", [[x, y, rng.normal()] for x, y in stable], rng)
        flush(client)
        assert client.post("/v1/experiments/e/reallocate").status_code == 200
        time.sleep(1.0)
        stable = rng.normal(size=(300, 2))
        _send(client, "e", [[x, y, 3.0 + rng.normal()] for x, y in stable], rng)
        flush(client)
        create_experiment(client, "empty")
        yield client, settings


def _decisions(settings: Settings, sql: str, params: list[object]) -> list[tuple[Any, ...]]:
    lookback = timedelta(seconds=settings.feedback_lookback_s)
    with open_lake(settings.database_url, settings.lake_root, lookback=lookback) as lake:
        con = lake.duckdb()
        try:
            return list(con.execute(sql, params).fetchall())
        finally:
            con.close()


def _assert_matches_decisions(settings: Settings, experiment: str, body: dict[str, Any]) -> None:
    """Every bucket of a time series against the same sums over the ``decisions`` view."""
    start = datetime.fromisoformat(body["start"])
    width_us = round(body["bucket_seconds"] * 1_000_000)
    rows = _decisions(
        settings,
        "SELECT variant, role, (epoch_us(ts) - ?) // ? AS bucket, count(*), "
        "count(*) FILTER (WHERE status <> 'ok'), "
        "count(reward) FILTER (WHERE status = 'ok'), sum(reward) FILTER (WHERE status = 'ok'), "
        "quantile_cont(latency_ms, 0.5), quantile_cont(latency_ms, 0.99) "
        "FROM decisions WHERE experiment = ? AND ts >= ? AND ts < ? GROUP BY ALL",
        [
            round(start.timestamp() * 1_000_000),
            width_us,
            experiment,
            start,
            datetime.fromisoformat(body["end"]),
        ],
    )
    expected = {(r[0], r[1], r[2]): r[3:] for r in rows}
    series = {(v["name"], v["role"]): v for v in body["variants"]}
    for v in body["variants"]:
        lengths = {len(values) for values in v.values() if isinstance(values, list)}
        assert lengths == {len(body["times"])}, v["name"]
    filled = {(k[0], k[1], i) for k, v in series.items() for i, n in enumerate(v["requests"]) if n}
    assert filled == set(expected)
    for (name, role, i), (n, errors, rewarded, total, p50, p99) in expected.items():
        v = series[(name, role)]
        assert (v["requests"][i], v["errors"][i], v["rewarded"][i]) == (n, errors, rewarded)
        assert v["error_rate"][i] == pytest.approx(errors / n)
        assert v["latency_p50_ms"][i] == pytest.approx(p50)
        assert v["latency_p99_ms"][i] == pytest.approx(p99)
        if rewarded:
            mean = total / rewarded
            assert v["reward_mean"][i] == pytest.approx(mean)
            # Wilson's bounds at a mean of 0 or 1 are exact only up to rounding (5.6e-17).
            assert v["ci_low"][i] - 1e-12 <= mean <= v["ci_high"][i] + 1e-12
        else:
            assert v["reward_mean"][i] is None and v["ci_low"][i] is None


def test_the_page_and_its_assets_need_no_token(tmp_path: Path, sqlite_url: str) -> None:
    from api.store.migrate import upgrade

    upgrade(sqlite_url)
    settings = make_settings(
        tmp_path / "home",
        sqlite_url,
        admin_token=SecretStr("adm"),
        serve_token=SecretStr("srv"),
    )
    with make_client(settings) as client:
        page = client.get("/dashboard")
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        assert "/dashboard/static/vendor/uPlot.iife.min.js" in page.text
        script = client.get("/dashboard/static/vendor/uPlot.iife.min.js")
        assert script.status_code == 200 and "uPlot" in script.text
        assert client.get("/dashboard/static/dashboard/main.js").status_code == 200
        for path in ("/dashboard/static/nope.js", "/dashboard/static/..%2Froutes%2Fdashboard.py"):
            missing = client.get(path)
            assert missing.status_code == 404
            assert error_code(missing) == "asset_not_found"
        denied = client.get(API)
        assert denied.status_code == 401
        assert error_code(denied) == "missing_token"
        wrong = client.get(API, headers={"Authorization": "Bearer srv"})
        assert wrong.status_code == 403
        ok = client.get(API, headers={"Authorization": "Bearer adm"})
        assert ok.status_code == 200 and ok.json() == []


def test_the_list_shows_status_and_the_reports_verdict(
    lab: tuple[TestClient, Settings],
) -> None:
    client, settings = lab
    body = client.get(API).json()
    assert [e["name"] for e in body] == ["e", "empty"]
    e, empty = body
    report = client.get(f"{API}/e/report").json()
    assert report == client.get("/v1/experiments/e/report").json()
    assert e["status"] == "running" and empty["status"] == "draft"
    assert e["verdict"] == report["verdict"] and e["winner"] == report["winner"]
    assert e["variants"] == ["a", "b", "s"]
    assert e["policy"] == "thompson" and e["allocation_version"] == 2
    ((requests, rewarded),) = _decisions(
        settings,
        "SELECT count(*), count(reward) FILTER (WHERE status = 'ok') FROM decisions "
        "WHERE experiment = ? AND role = 'arm'",
        ["e"],
    )
    assert (e["requests"], e["rewarded"]) == (requests, rewarded) == (600, 400)
    assert empty["requests"] == 0 and empty["verdict"] == "No rewarded requests yet."


def test_allocation_history_is_oldest_first_with_p_best(lab: tuple[TestClient, Settings]) -> None:
    client, settings = lab
    body = client.get(f"{API}/e/allocations").json()
    assert body["experiment"] == "e" and body["variants"] == ["a", "b"]
    steps = body["steps"]
    assert [s["version"] for s in steps] == [1, 2]
    assert steps[0]["weights"] == {"a": 0.5, "b": 0.5} and steps[0]["prob_best"] is None
    assert set(steps[1]["prob_best"]) == {"a", "b"}
    assert math.isclose(sum(steps[1]["weights"].values()), 1.0)
    assert datetime.fromisoformat(body["now"]) >= datetime.fromisoformat(steps[1]["created_at"])
    # The charts end at the last request, not at "now".
    ((first, last),) = _decisions(
        settings, "SELECT min(ts), max(ts) FROM predictions WHERE experiment = ?", ["e"]
    )
    assert datetime.fromisoformat(body["first_request"]) == first
    assert datetime.fromisoformat(body["last_request"]) == last
    history = client.get("/v1/experiments/e/allocations").json()
    assert [s["weights"] for s in reversed(history)] == [s["weights"] for s in steps]


def test_time_series_matches_the_decisions_view(lab: tuple[TestClient, Settings]) -> None:
    client, settings = lab
    body = client.get(f"{API}/e/timeseries", params={"hours": 1, "buckets": 60}).json()
    # Younger than the window (about 1.5 s): its whole life, in the finest round width
    # that needs at most 60 buckets, a tenth of a second.
    assert body["hours"] == 1 and body["bucket_seconds"] == 0.1
    width = timedelta(seconds=0.1)
    start = datetime.fromisoformat(body["start"])
    times = [datetime.fromisoformat(t) for t in body["times"]]
    assert 10 <= len(times) <= 60
    assert times == [start + i * width for i in range(len(times))]
    assert datetime.fromisoformat(body["end"]) == start + len(times) * width
    assert {(v["name"], v["role"]) for v in body["variants"]} == {
        ("a", "arm"),
        ("b", "arm"),
        ("s", "shadow"),
    }
    _assert_matches_decisions(settings, "e", body)
    arms = [v for v in body["variants"] if v["role"] == "arm"]
    assert sum(sum(v["requests"]) for v in arms) == 600
    assert sum(sum(v["rewarded"]) for v in arms) == 400


def test_drift_flags_the_shifted_feature(lab: tuple[TestClient, Settings]) -> None:
    client, settings = lab
    body = client.get(f"{API}/e/drift").json()
    assert body["threshold"] == 0.2 and body["hours"] == 24
    by_name = {f["name"]: f for f in body["features"]}
    assert list(by_name) == ["f0", "f1", "f2"]
    assert body["drifted"] == ["f2"]
    assert by_name["f2"]["psi"] > 1.0 and by_name["f2"]["drifted"]
    for name in ("f0", "f1"):
        assert by_name[name]["psi"] < 0.2 and not by_name[name]["drifted"]
    reference = body["reference"]
    current = body["current"]
    split = datetime.fromisoformat(reference["end"])
    assert datetime.fromisoformat(current["start"]) >= split
    rows = _decisions(
        settings,
        "SELECT ts < ?, features['f2'] FROM predictions WHERE experiment = ? AND role = 'arm' "
        "AND (ts < ? OR ts >= ?)",
        [split, "e", split, datetime.fromisoformat(current["start"])],
    )
    values = np.array([r[1] for r in rows])
    is_ref = np.array([r[0] for r in rows])
    cuts = np.unique(np.quantile(values[is_ref], np.arange(1, 10) / 10))
    ref = np.bincount(np.searchsorted(cuts, values[is_ref]), minlength=len(cuts) + 1)
    cur = np.bincount(np.searchsorted(cuts, values[~is_ref]), minlength=len(cuts) + 1)
    r, c = np.maximum(ref / ref.sum(), 1e-4), np.maximum(cur / cur.sum(), 1e-4)
    assert by_name["f2"]["psi"] == pytest.approx(float(np.sum((c - r) * np.log(c / r))))
    assert by_name["f2"]["reference_rows"] == ref.sum() == 300
    assert by_name["f2"]["current_mean"] == pytest.approx(values[~is_ref].mean())
    assert sum(by_name["f2"]["reference_share"]) == pytest.approx(1.0)


def _three_days(client: TestClient, name: str, t0: datetime) -> None:
    """A row every 5 minutes for three days, one lake file per day; ``f1`` shifts on day 3."""
    service = client.app.state.serving  # type: ignore[attr-defined]
    rng = np.random.default_rng(5)
    for day in range(3):
        for k in range(288):
            i = day * 288 + k
            ts = t0 + timedelta(minutes=5 * i)
            request_id = f"{name}-{i}"
            variant = "ab"[i % 2]
            service.predictions.append(
                PredictionRow(
                    request_id, ts, name, variant, "arm", 1, 0.5, None,
                    {"f0": float(rng.normal()), "f1": float(rng.normal() + 2.0 * (day == 2))},
                    1.0, None, float(rng.lognormal()), "0" * 64, "CPUExecutionProvider",
                    "error" if i % 50 == 0 else "ok",
                )
            )  # fmt: skip
            if i % 2 == 0:
                reward = float(rng.random() < (0.3 if variant == "a" else 0.5))
                service.feedback_writer.append(
                    FeedbackRow(request_id, ts + timedelta(seconds=30), reward, None)
                )
        flush(client)


def test_an_old_experiment_shows_its_last_day_from_the_files_that_hold_it(
    tmp_path: Path, sqlite_url: str
) -> None:
    from api.store.migrate import upgrade

    upgrade(sqlite_url)
    settings = make_settings(tmp_path / "home", sqlite_url, reallocate=False)
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    with make_client(settings) as client:
        create_experiment(client, "old")
        upload(client, "old", "a", linear_model([1.0, 0.0]))
        upload(client, "old", "b", linear_model([0.0, 1.0]))
        _three_days(client, "old", t0)
        body = client.get(f"{API}/old/timeseries").json()
        drift = client.get(f"{API}/old/drift").json()
        with (
            open_lake(settings.database_url, settings.lake_root) as lake,
            DashboardQueries() as queries,
        ):
            found = queries.time_buckets(
                lake, "old", RewardRule("binary"), lookback=timedelta(days=7)
            )
    assert body["bucket_seconds"] == 1800 and len(body["times"]) == 48
    assert datetime.fromisoformat(body["start"]) == t0 + timedelta(days=2)
    assert datetime.fromisoformat(body["end"]) == t0 + timedelta(days=3)
    # One day's prediction file and the feedback file of the same day, of six files.
    assert found.files_read == 2
    by_name = {v["name"]: v for v in body["variants"]}
    assert by_name["a"]["requests"] == [3] * 48 and by_name["b"]["requests"] == [3] * 48
    _assert_matches_decisions(settings, "old", body)
    assert drift["reference"]["start"] == "2026-01-01T00:00:00Z"
    assert drift["reference"]["end"] == "2026-01-02T00:00:00Z"
    assert drift["drifted"] == ["f1"]
    rows = {f["name"]: (f["reference_rows"], f["current_rows"]) for f in drift["features"]}
    assert rows == {"f0": (288, 288), "f1": (288, 288)}


def test_an_experiment_without_traffic_has_empty_panels(lab: tuple[TestClient, Settings]) -> None:
    client, _ = lab
    series = client.get(f"{API}/empty/timeseries").json()
    assert series["variants"] == [] and len(series["times"]) == 48
    drift = client.get(f"{API}/empty/drift").json()
    assert drift["features"] == [] and drift["reference"] is None
    allocations = client.get(f"{API}/empty/allocations").json()
    assert allocations["steps"] == [] and allocations["last_request"] is None
    assert client.get(f"{API}/empty/report").json()["verdict"] == "No rewarded requests yet."


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"hours": 0}, "hours"),
        ({"hours": 24 * 91}, "hours"),
        ({"hours": "a day"}, "hours"),
        ({"buckets": 0}, "buckets"),
        ({"buckets": 1001}, "buckets"),
    ],
)
def test_bad_windows_are_refused(
    lab: tuple[TestClient, Settings], query: dict[str, Any], field: str
) -> None:
    client, _ = lab
    for panel in ("timeseries", "drift"):
        if panel == "drift" and field == "buckets":
            continue
        response = client.get(f"{API}/e/{panel}", params=query)
        assert response.status_code == 422, response.text
        assert error_code(response) == "invalid_request"
        assert response.json()["error"]["details"][0]["field"] == field


@pytest.mark.parametrize("panel", ["report", "allocations", "timeseries", "drift"])
def test_an_unknown_experiment_is_404(lab: tuple[TestClient, Settings], panel: str) -> None:
    client, _ = lab
    response = client.get(f"{API}/nope/{panel}")
    assert response.status_code == 404
    assert error_code(response) == "experiment_not_found"
    assert "'nope'" in response.json()["error"]["message"]


def test_errors_and_label_rewards_follow_the_aggregates(
    tmp_path: Path, sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from api.store.migrate import upgrade

    upgrade(sqlite_url)
    settings = make_settings(tmp_path / "home", sqlite_url, reallocate=False)
    with make_client(settings) as client:
        create_experiment(client, "lbl", reward={"kind": "label", "metric": "neg_abs_error"})
        upload(client, "lbl", "good", linear_model([1.0, 1.0, 1.0]))
        upload(client, "lbl", "bad", fragile_model())
        start(client, "lbl")
        items = []
        for i in range(90):
            # The fragile arm refuses rows where a feature reaches 2 (one request in three):
            # rejected rows, not errors.
            response = client.post(
                "/v1/experiments/lbl/predict", json={"features": [float(i % 3), 0.0, 0.0]}
            )
            if response.status_code == 200:
                items.append({"request_id": response.json()["request_id"], "label": 1.5})
        # Then the fragile arm breaks altogether (its reference input fails too): errors.
        model = client.app.state.pool.get(VariantKey("lbl", "bad"))  # type: ignore[attr-defined]

        def broken(*_: object, **__: object) -> object:
            raise RuntimeError("device lost")

        monkeypatch.setattr(model.session, "run", broken)
        for _ in range(30):
            client.post("/v1/experiments/lbl/predict", json={"features": [0.0, 0.0, 0.0]})
        assert client.post("/v1/feedback/batch", json={"items": items}).status_code == 202
        flush(client)
        report = {v["name"]: v for v in client.get(f"{API}/lbl/report").json()["variants"]}
        series = client.get(f"{API}/lbl/timeseries").json()
    by_name = {v["name"]: v for v in series["variants"]}
    for name, v in by_name.items():
        assert sum(v["requests"]) == report[name]["requests"]
        assert sum(v["rewarded"]) == report[name]["rewarded"]
        errors = sum(v["errors"])
        assert errors / sum(v["requests"]) == pytest.approx(report[name]["error_rate"])
        if report[name]["rewarded"]:
            total = sum(m * n for m, n in zip(v["reward_mean"], v["rewarded"], strict=True) if n)
            assert total / sum(v["rewarded"]) == pytest.approx(report[name]["reward_mean"])
    statuses = dict(
        lake_rows(
            settings,
            "select status, count(*) from predictions where variant = 'bad' group by status",
        )
    )
    assert statuses["rejected"] > 0
    assert sum(by_name["bad"]["errors"]) == statuses["error"] > 0


def test_psi_golden_values() -> None:
    assert psi([10, 20, 30], [10, 20, 30]) == 0.0
    # (0.5 - 0.25) ln 2 + (0.5 - 0.75) ln(2/3)
    expected = 0.25 * math.log(2) - 0.25 * math.log(2 / 3)
    assert psi([25, 75], [50, 50]) == pytest.approx(expected)
    assert psi([10, 0], [5, 5]) == pytest.approx(
        (0.5 - 1.0) * math.log(0.5) + (0.5 - 1e-4) * math.log(0.5 / 1e-4)
    )
    with pytest.raises(LakeConfigError, match="same bins"):
        psi([1, 2], [1, 2, 3])
    with pytest.raises(LakeConfigError, match="rows in both windows"):
        psi([0, 0], [1, 2])


def _append(
    client: TestClient, name: str, times: list[datetime], features: list[dict[str, float]]
) -> None:
    """Arm rows at the given times, written straight to the lake."""
    service = client.app.state.serving  # type: ignore[attr-defined]
    for i, (ts, row) in enumerate(zip(times, features, strict=True)):
        service.predictions.append(
            PredictionRow(
                f"{name}-{i}", ts, name, "ab"[i % 2], "arm", 1, 0.5, None, row, 1.0, None,
                1.0, "0" * 64, "CPUExecutionProvider", "ok",
            )
        )  # fmt: skip
    flush(client)


def test_a_few_seconds_of_traffic_get_a_few_dozen_buckets(tmp_path: Path, sqlite_url: str) -> None:
    """The demo replays its traffic in about 3 s: the charts still show it unfold."""
    from api.store.migrate import upgrade

    upgrade(sqlite_url)
    settings = make_settings(tmp_path / "home", sqlite_url, reallocate=False)
    t0 = datetime(2026, 12, 2, 14, 5, 0, 30_000, tzinfo=UTC)
    times = [t0 + timedelta(milliseconds=i) for i in range(3000)]
    with make_client(settings) as client:
        create_experiment(client, "quick")
        upload(client, "quick", "a", linear_model([1.0]))
        upload(client, "quick", "b", linear_model([1.0]))
        _append(client, "quick", times, [{"f0": 1.0}] * len(times))
        body = client.get(f"{API}/quick/timeseries").json()
        _assert_matches_decisions(settings, "quick", body)
    assert body["bucket_seconds"] == 0.1
    assert len(body["times"]) == 31 <= 48
    assert datetime.fromisoformat(body["start"]) == datetime(2026, 12, 2, 14, 5, tzinfo=UTC)
    requests = [sum(n) for n in zip(*(v["requests"] for v in body["variants"]), strict=True)]
    assert requests == [70] + [100] * 29 + [30]


def test_drift_needs_the_minimum_rows_in_each_window(tmp_path: Path, sqlite_url: str) -> None:
    """One early row against 600 later ones: no PSI and no alarm, and the sizes are shown."""
    from api.store.migrate import upgrade

    upgrade(sqlite_url)
    settings = make_settings(tmp_path / "home", sqlite_url, reallocate=False)
    rng = np.random.default_rng(7)
    t0 = datetime(2026, 12, 1, tzinfo=UTC)
    later = [t0 + timedelta(hours=25, seconds=5 * i) for i in range(600)]
    shifted = [{"f0": float(rng.normal() + 5.0)} for _ in later]
    with make_client(settings) as client:
        create_experiment(client, "thin")
        upload(client, "thin", "a", linear_model([1.0]))
        upload(client, "thin", "b", linear_model([1.0]))
        _append(client, "thin", [t0, *later], [{"f0": 0.0}, *shifted])
        body = client.get(f"{API}/thin/drift").json()
    assert body["min_rows"] == DRIFT_MIN_ROWS == 250
    assert body["reference"]["rows"] == 1 and body["current"]["rows"] == 600
    (f0,) = body["features"]
    assert f0["psi"] is None and not f0["drifted"] and body["drifted"] == []
    assert (f0["reference_rows"], f0["current_rows"]) == (1, 600)


def test_drift_at_the_minimum_rows_is_measured(lab: tuple[TestClient, Settings]) -> None:
    client, _ = lab
    body = client.get(f"{API}/e/drift").json()
    assert body["reference"]["rows"] == body["current"]["rows"] == 300
    assert all(f["psi"] is not None for f in body["features"])


def test_each_app_owns_its_dashboard_queries_and_closes_them(
    tmp_path: Path, sqlite_url: str
) -> None:
    from api.store.migrate import upgrade

    upgrade(sqlite_url)
    settings = make_settings(tmp_path / "home", sqlite_url, reallocate=False)
    owned = []
    for _ in range(2):
        with make_client(settings) as client:
            queries = client.app.state.dashboard_queries  # type: ignore[attr-defined]
            assert client.get(f"{API}").status_code == 200
            assert queries.cursor().execute("SELECT 1").fetchone() == (1,)
            owned.append(queries)
        with pytest.raises(LakeConfigError, match="closed"):
            queries.cursor()
    assert owned[0] is not owned[1]
