"""Streaming inference off the local NATS JetStream server, end to end.

Every test has a stream and subjects of its own, deleted afterwards. The large test
publishes 10,000 requests; the restart test runs ``banditlake stream`` as a process,
SIGKILLs it mid-stream and starts it again.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.settings import Settings
from api.store.migrate import upgrade
from api.streaming import Delivery, Streaming, StreamOptions, Transport, start_streaming
from api.streaming.answers import Answers
from api.streaming.consumer import Consumer
from api.streaming.handlers import PredictHandler
from api.streaming.identity import StreamIdentity
from api.streaming.jetstream import JetStreamConnection
from tests.api.serving_support import W_A, W_B, flush, lake_rows, running_experiment
from tests.api.stream_support import NATS_URL, Bus, Names, predict_body, require_nats
from tests.conftest import make_client, make_settings

ROOT = Path(__file__).resolve().parents[2]
WEIGHTS = {"a": 0.3, "b": 0.7}
MODELS = {"a": (W_A, 0.5), "b": (W_B, -0.5)}


def expected(variant: str, features: list[float]) -> float:
    weights, bias = MODELS[variant]
    x = np.asarray(features, dtype=np.float32)
    return float(x @ np.asarray(weights, dtype=np.float32) + np.float32(bias))


def options(names: Names, experiment: str = "s", **overrides: Any) -> StreamOptions:
    values: dict[str, Any] = {
        "experiment": experiment,
        "subject": names.subject,
        "reply_subject": names.replies,
        "feedback_subject": names.feedback,
        "stream": names.stream,
        "durable": names.durable,
        "max_in_flight": 256,
        "nats_url": NATS_URL,
        **overrides,
    }
    return StreamOptions(**values)


@dataclass
class Served:
    client: TestClient
    settings: Settings
    names: Names
    streaming: Streaming

    def stop(self) -> None:
        assert self.client.portal is not None
        self.client.portal.call(self.streaming.stop)
        flush(self.client)


def _create_stream(names: Names) -> None:
    async def create() -> None:
        bus = await Bus.open(names)
        await bus.client.close()

    asyncio.run(create())


def _delete_stream(names: Names) -> None:
    async def delete() -> None:
        bus = await Bus.open_existing(names)
        await bus.close()

    asyncio.run(delete())


@pytest.fixture
def names() -> Iterator[Names]:
    require_nats()
    found = Names()
    _create_stream(found)
    try:
        yield found
    finally:
        _delete_stream(found)


@pytest.fixture
def served(tmp_path: Path, sqlite_url: str, names: Names) -> Iterator[Served]:
    upgrade(sqlite_url)
    settings = make_settings(tmp_path / "home", sqlite_url)
    with make_client(settings) as client:
        running_experiment(client, "s", weights=WEIGHTS)
        assert client.portal is not None
        streaming = client.portal.call(start_streaming, client.app, options(names))
        served = Served(client, settings, names, streaming)
        try:
            yield served
        finally:
            if not streaming.stop_event.is_set():
                client.portal.call(streaming.stop)


def test_ten_thousand_requests_answered_once_each_and_logged_once(served: Served) -> None:
    n, repeats = 10_000, 200

    async def scenario() -> Bus:
        bus = await Bus.open_existing(served.names)
        await bus.publish(served.names.subject, [predict_body(i) for i in range(n)])
        await bus.wait_for(n)
        # A client's retries: the same request id and body again.
        await bus.publish(served.names.subject, [predict_body(i) for i in range(repeats)])
        await bus.wait_until(lambda: all(len(bus.answers[f"r{i}"]) == 2 for i in range(repeats)))
        await bus.client.close()
        return bus

    bus = asyncio.run(scenario())
    served.stop()

    assert len(bus.answers) == n
    by_id: dict[str, tuple[str, float, float, int]] = {}
    for i in range(n):
        answers = bus.answers[f"r{i}"]
        assert len(answers) == (2 if i < repeats else 1)
        status, body = answers[0]
        assert status == 200, body
        # A retry is answered exactly as the first time.
        assert all(a == answers[0] for a in answers)
        assert body["propensity"] == WEIGHTS[body["variant"]]
        features = json.loads(predict_body(i))["features"]
        assert body["prediction"] == pytest.approx(expected(body["variant"], features), rel=1e-6)
        by_id[body["request_id"]] = (
            body["variant"],
            body["prediction"],
            body["propensity"],
            body["allocation_version"],
        )
    assert len(by_id) == n
    rows = lake_rows(
        served.settings,
        "SELECT request_id, variant, prediction, propensity, allocation_version, mode "
        "FROM predictions WHERE experiment = 's'",
    )
    assert len(rows) == n
    assert {r[5] for r in rows} == {"stream"}
    assert {r[0]: r[1:5] for r in rows} == by_id
    share_b = sum(1 for v in by_id.values() if v[0] == "b") / n
    assert 0.66 < share_b < 0.74  # the weight 0.7, within 8 standard deviations


class _NakFirstAck:
    """A transport whose first ack of each message returns it instead: a real redelivery."""

    def __init__(self, inner: Transport) -> None:
        self._inner = inner
        self.returned: set[int] = set()

    async def fetch(self, batch: int, timeout_s: float) -> list[Delivery]:
        return await self._inner.fetch(batch, timeout_s)

    async def ack(self, delivery: Delivery) -> None:
        if delivery.sequence not in self.returned:
            self.returned.add(delivery.sequence)
            await self._inner.nak(delivery, 0)
            return
        await self._inner.ack(delivery)

    async def nak(self, delivery: Delivery, delay_s: float) -> None:
        await self._inner.nak(delivery, delay_s)

    async def term(self, delivery: Delivery) -> None:
        await self._inner.term(delivery)

    async def reply(self, delivery: Delivery, body: bytes, headers: Any) -> bool:
        return await self._inner.reply(
            delivery, body, {**headers, "Delivered": str(delivery.delivered)}
        )

    async def close(self) -> None:
        await self._inner.close()


def test_a_redelivered_message_gets_the_same_answer_and_one_row(
    tmp_path: Path, sqlite_url: str, names: Names
) -> None:
    upgrade(sqlite_url)
    settings = make_settings(tmp_path / "home", sqlite_url)
    n = 50
    with make_client(settings) as client:
        running_experiment(client, "s", weights={"a": 0.5, "b": 0.5})
        app: Any = client.app
        stop = asyncio.Event()

        async def run_consumer() -> tuple[JetStreamConnection, asyncio.Task[None]]:
            connection = await JetStreamConnection.connect(NATS_URL)
            transport = await connection.consumer(
                names.stream,
                names.subject,
                names.durable,
                max_ack_pending=16,
                ack_wait_s=30.0,
                reply=names.replies,
            )
            service = app.state.serving
            handler = PredictHandler(service, "s", Answers(), StreamIdentity(service.request_ids))
            consumer = Consumer(
                _NakFirstAck(transport),
                handler,
                service.metrics,
                experiment="s",
                kind="predict",
                max_in_flight=16,
            )
            return connection, asyncio.get_running_loop().create_task(consumer.run(stop))

        assert client.portal is not None
        connection, task = client.portal.call(run_consumer)

        async def scenario() -> Bus:
            bus = await Bus.open_existing(names)
            # No request id in the bodies: the stream sequence is the key.
            await bus.publish(names.subject, [predict_body(i, request_id=False) for i in range(n)])
            await bus.wait_until(lambda: sum(len(a) for a in bus.answers.values()) >= 2 * n)
            await bus.client.close()
            return bus

        bus = asyncio.run(scenario())

        async def finish() -> None:
            stop.set()
            await task
            await connection.close()

        client.portal.call(finish)
        flush(client)
        rows = lake_rows(settings, "SELECT request_id, variant FROM predictions")
    assert len(bus.answers) == n
    for answers in bus.answers.values():
        assert len(answers) == 2
        assert answers[0] == answers[1]
    assert sorted(
        (a[0][1]["request_id"], a[0][1]["variant"]) for a in bus.answers.values()
    ) == sorted(rows)


def test_bad_messages_are_answered_with_the_api_error_and_not_redelivered(
    served: Served,
) -> None:
    bad = {
        b"{not json": "invalid_request",
        b'{"features": [1.0]}': "wrong_feature_count",
        b'{"features": {"x": 1.0}}': "unknown_feature",
        b'{"features": [1, 2, 3], "extra": 1}': "invalid_request",
        b'{"features": [1e39, 2, 3]}': "feature_out_of_range",
        b'{"features": [1, 2, 3], "request_id": "has space"}': "invalid_request",
    }

    async def scenario() -> tuple[dict[bytes, tuple[str, dict[str, Any]]], Any]:
        bus = await Bus.open_existing(served.names)
        got = {}
        for body in bad:
            msg = await bus.request(served.names.subject, body)
            got[body] = ((msg.headers or {}).get("Banditlake-Status", ""), json.loads(msg.data))
        # Longer than the pause before a returned message is delivered again.
        await asyncio.sleep(1.5)
        info = await bus.consumer_info(served.names.durable)
        await bus.client.close()
        return got, info

    got, info = asyncio.run(scenario())
    served.stop()
    for body, code in bad.items():
        status, answer = got[body]
        assert status in ("413", "422"), (body, answer)
        assert set(answer) == {"error"}
        assert answer["error"]["code"] == code, (body, answer)
        assert answer["error"]["message"].endswith("."), answer
    assert info.num_ack_pending == 0
    assert info.num_redelivered == 0
    assert info.delivered.stream_seq == len(bad)
    assert lake_rows(served.settings, "SELECT count(*) FROM predictions") == [(0,)]


def test_feedback_off_the_second_subject_reaches_the_lake(served: Served) -> None:
    async def scenario() -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        bus = await Bus.open_existing(served.names)
        answer = json.loads((await bus.request(served.names.subject, predict_body(1))).data)
        body = json.dumps({"request_id": answer["request_id"], "reward": 1.0}).encode()
        accepted = json.loads((await bus.request(served.names.feedback, body)).data)
        forged = json.dumps({"request_id": "1." + "0" * 32, "reward": 1.0}).encode()
        refused = json.loads((await bus.request(served.names.feedback, forged)).data)
        await bus.client.close()
        return answer, accepted, refused

    answer, accepted, refused = asyncio.run(scenario())
    served.stop()
    assert accepted == {"accepted": 1, "duplicate": False}
    assert refused["error"]["code"] == "invalid_request_id"
    rows = lake_rows(served.settings, "SELECT request_id, reward FROM feedback")
    assert rows == [(answer["request_id"], 1.0)]
    decisions = lake_rows(
        served.settings, "SELECT variant, reward, mode FROM decisions WHERE reward IS NOT NULL"
    )
    assert decisions == [(answer["variant"], 1.0, "stream")]


def _stream_process(settings: Settings, names: Names, log: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "BANDITLAKE_HOME": str(settings.home),
        "BANDITLAKE_DATABASE_URL": settings.database_url,
        "BANDITLAKE_LAKE_URI": settings.lake_uri,
        "BANDITLAKE_DEVICE": "cpu",
        "BANDITLAKE_LAKE_DURABLE": "true",
        "BANDITLAKE_NATS_URL": NATS_URL,
    }
    command = [
        sys.executable, "-m", "api.cli", "stream", "s",
        "--subject", names.subject,
        "--reply-subject", names.replies,
        "--stream", names.stream,
        "--durable", names.durable,
        "--max-in-flight", "64",
        # The messages the killed process held come back after this.
        "--ack-wait", "3",
    ]  # fmt: skip
    with log.open("ab") as out:
        return subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)


def test_a_consumer_killed_mid_stream_loses_nothing_and_logs_nothing_twice(
    tmp_path: Path, sqlite_url: str, names: Names
) -> None:
    upgrade(sqlite_url)
    settings = make_settings(tmp_path / "home", sqlite_url)
    with make_client(settings) as client:
        running_experiment(client, "s", weights=WEIGHTS)
    n = 3000
    log = tmp_path / "stream.log"

    async def scenario() -> tuple[Bus, int]:
        bus = await Bus.open_existing(names)
        await bus.publish(names.subject, [predict_body(i) for i in range(n)])
        first = _stream_process(settings, names, log)
        try:
            await bus.wait_for(n // 5, timeout_s=120)
        finally:
            first.send_signal(signal.SIGKILL)
            first.wait(30)
        killed_at = len(bus.answers)
        second = _stream_process(settings, names, log)
        try:
            await bus.wait_for(n, timeout_s=120)
        finally:
            second.send_signal(signal.SIGTERM)
            code = second.wait(60)
        await bus.client.close()
        assert killed_at < n, "the consumer finished before it was killed"
        return bus, code, killed_at

    bus, code, killed_at = asyncio.run(scenario())
    output = log.read_text(errors="replace")
    assert code == 0, output[-3000:]
    assert "draining the messages in flight" in output
    # Every message answered before the kill had its row fsynced first: the restarted
    # consumer reads them all back (and those logged but not answered yet).
    read_back = [int(m) for m in re.findall(r"stream s: (\d+) earlier answers read", output)]
    assert read_back[0] == 0
    assert read_back[1] >= killed_at
    assert len(bus.answers) == n
    first: dict[str, tuple[str, str, float]] = {}
    for key, answers in bus.answers.items():
        assert all(status == 200 for status, _ in answers), answers
        bodies = {(b["request_id"], b["variant"], b["prediction"]) for _, b in answers}
        # A message answered twice (before the kill and after) got the same answer.
        assert len(bodies) == 1, (key, answers)
        first[key] = bodies.pop()
    rows = lake_rows(
        settings, "SELECT request_id, variant, prediction FROM predictions WHERE mode = 'stream'"
    )
    assert len(rows) == n, f"{len(rows)} rows for {n} messages"
    assert sorted(rows) == sorted(first.values())


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["stream", "s", "--subject", "a b"], "--subject 'a b' is not a NATS subject"),
        (["stream", "s", "--subject", "x.y", "--reply-subject", "x.*"], "has a wildcard"),
        (["stream", "s", "--subject", "x.y", "--reply-subject", "x.y"], "feed the answers back"),
        (["stream", "s", "--subject", "x.y", "--max-in-flight", "0"], "--max-in-flight must be"),
        (["stream", "s", "--subject", "x.y", "--stream", "a.b"], "not a valid JetStream name"),
        (["stream", "s", "--subject", "x.y", "--nats-url", "http://x"], "not a nats://"),
        (["stream", "s", "--subject", "x.y", "--ack-wait", "0"], "--ack-wait must be"),
        (["serve", "--stream-experiment", "s"], "go together"),
        (["stream", "nope", "--subject", "x.y"], "No experiment named 'nope'"),
        (
            ["serve", "--stream-experiment", "nope", "--stream-subject", "x.y"],
            "No experiment named 'nope'",
        ),
    ],
)
def test_stream_options_are_refused_in_one_line(
    argv: list[str],
    words: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from api.cli import main

    monkeypatch.setenv("BANDITLAKE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("BANDITLAKE_DEVICE", "cpu")
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("banditlake: "), err
    assert words in err[-1], err
    assert "Traceback" not in "\n".join(err)


def test_serve_runs_the_consumer_in_its_loop_beside_http_and_drains_it(
    tmp_path: Path, sqlite_url: str, names: Names
) -> None:
    upgrade(sqlite_url)
    settings = make_settings(tmp_path / "home", sqlite_url)
    with make_client(settings) as client:
        running_experiment(client, "s", weights=WEIGHTS)
    n = 300
    app = create_app(settings, stream=options(names))
    with TestClient(app) as client:
        online = client.post("/v1/experiments/s/predict", json={"features": [1.0, 2.0, 3.0]})
        assert online.status_code == 200, online.text

        async def scenario() -> Bus:
            bus = await Bus.open_existing(names)
            await bus.publish(names.subject, [predict_body(i) for i in range(n)])
            await bus.wait_for(n)
            await bus.client.close()
            return bus

        bus = asyncio.run(scenario())
        metrics = client.get("/metrics").text
    # Leaving the client ran the lifespan's shutdown: consumer drained, writers flushed.
    assert len(bus.answers) == n
    assert (
        'banditlake_stream_messages_total{experiment="s",kind="predict",outcome="answered"} 300.0'
        in metrics
    )
    assert 'banditlake_stream_lag_messages{experiment="s",kind="predict"}' in metrics
    assert "banditlake_stream_processing_seconds_bucket" in metrics
    rows = lake_rows(settings, "SELECT mode, count(*) FROM predictions GROUP BY mode ORDER BY mode")
    assert rows == [("online", 1), ("stream", n)]


def test_an_unreachable_broker_or_a_bad_metrics_port_is_one_line(
    tmp_path: Path,
    sqlite_url: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from api.cli import main

    require_nats()
    upgrade(sqlite_url)
    settings = make_settings(tmp_path / "home", sqlite_url)
    with make_client(settings) as client:
        running_experiment(client, "s")
    monkeypatch.setenv("BANDITLAKE_HOME", str(settings.home))
    monkeypatch.setenv("BANDITLAKE_DATABASE_URL", sqlite_url)
    monkeypatch.setenv("BANDITLAKE_LAKE_URI", settings.lake_uri)
    monkeypatch.setenv("BANDITLAKE_DEVICE", "cpu")
    argv = ["stream", "s", "--subject", "x.y", "--nats-url", "nats://127.0.0.1:1"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("banditlake: Cannot connect to NATS at nats://127.0.0.1:1"), err
    argv = ["stream", "s", "--subject", "x.y", "--nats-url", NATS_URL, "--metrics-port", "70000"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("banditlake: --metrics-port 70000 cannot be listened on"), err
