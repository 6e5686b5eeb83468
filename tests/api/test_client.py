"""``api.client``: the sync and async clients against a real service over loopback HTTP.

Each test starts its own app (uvicorn in a thread, the demo's ``BackgroundServer``), so
the client goes through the network, the lifespan and the tokens like any caller's.
"""

from __future__ import annotations

import asyncio
import inspect
import re
import socket
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

import httpx
import pytest

from api.app import create_app
from api.client import (
    APIError,
    AsyncClient,
    BanditlakeError,
    Client,
    ConflictError,
    ExperimentOut,
    FailedPrediction,
    Feedback,
    FeedbackAck,
    FeedbackBatchAck,
    ForbiddenError,
    InvalidRequestError,
    NotFoundError,
    Prediction,
    Report,
    RowError,
    TransportError,
    UnauthorizedError,
    UnavailableError,
    UnexpectedResponseError,
    VariantOut,
)
from api.demo._server import BackgroundServer
from api.store.migrate import upgrade
from tests.conftest import make_settings
from tests.onnx_models import fragile_model, linear_model

ADMIN = "admin-token-for-the-client-tests"
SERVE = "serve-token-for-the-client-tests"
README = Path(__file__).resolve().parents[2] / "README.md"

Serve = Callable[..., AbstractContextManager[str]]


@pytest.fixture
def serve(tmp_path: Path) -> Serve:
    """``with serve(admin_token=..., serve_token=...) as base_url:`` a fresh service."""

    @contextmanager
    def run(**tokens: str) -> Iterator[str]:
        url = f"sqlite:///{tmp_path / 'store.db'}"
        upgrade(url)
        settings = make_settings(tmp_path / "home", url, reallocate=False, **tokens)
        with BackgroundServer(create_app(settings)) as base_url:
            yield base_url

    return run


@pytest.fixture
def base_url(serve: Serve) -> Iterator[str]:
    with serve(admin_token=ADMIN, serve_token=SERVE) as url:
        yield url


def test_the_sync_client_runs_an_experiment(base_url: str, tmp_path: Path) -> None:
    model_path = tmp_path / "second.onnx"
    model_path.write_bytes(linear_model([3.0, 2.0, 1.0]))
    with Client(base_url, admin_token=ADMIN, serve_token=SERVE, timeout=60) as bl:
        created = bl.create_experiment("churn", reward="binary", policy="thompson", min_weight=0.1)
        assert isinstance(created, ExperimentOut)
        assert (created.status, created.min_weight, created.policy["kind"]) == (
            "draft",
            0.1,
            "thompson",
        )
        one = bl.upload_variant("churn", "one", linear_model([1.0, 2.0, 3.0]), features=list("abc"))
        two = bl.upload_variant("churn", "two", model_path, features=list("abc"), role="arm")
        assert isinstance(one, VariantOut) and one.features == ["a", "b", "c"]
        assert len(two.sha256) == 64 and two.provider == "CPUExecutionProvider"
        assert [v.name for v in bl.list_variants("churn")] == ["one", "two"]
        assert bl.get_variant("churn", "two").sha256 == two.sha256
        assert bl.start("churn").status == "running"
        assert [e.name for e in bl.list_experiments()] == ["churn"]

        first = bl.get_allocation("churn")
        assert first.version == 1 and first.weights == {"one": 0.5, "two": 0.5}

        p = bl.predict("churn", {"a": 1, "b": 0, "c": 0}, unit_id="u-1")
        assert isinstance(p, Prediction)
        assert p.variant in ("one", "two") and p.propensity == 0.5
        assert p.prediction == (1.0 if p.variant == "one" else 3.0)
        assert p.allocation_version == 1 and p.scores is None
        assert bl.predict("churn", [0.0, 1.0, 0.0]).prediction == 2.0

        batch = bl.predict_batch(
            "churn", [[1, 1, 1], {"a": 0, "b": 0, "c": 1}], unit_ids=["x", None]
        )
        assert [type(r) for r in batch] == [Prediction, Prediction]

        assert bl.feedback(p.request_id, reward=1) == FeedbackAck(accepted=1, duplicate=False)
        assert bl.feedback(p.request_id, reward=0) == FeedbackAck(accepted=0, duplicate=True)
        items = [Feedback(r.request_id, reward=0.0) for r in batch]
        assert bl.feedback_batch(items) == FeedbackBatchAck(accepted=2, duplicates=0)

        manual = bl.set_allocation("churn", {"one": 0.8, "two": 0.2}, reason="by hand")
        assert (manual.version, manual.reason) == (2, "by hand")
        assert bl.promote("churn", "two").weights == {"one": 0.0, "two": 1.0}
        assert bl.rollback("churn").weights == {"one": 0.8, "two": 0.2}
        assert isinstance(bl.reallocate("churn").version, int)
        assert [a.version for a in bl.list_allocations("churn", limit=2)] == [5, 4]
        assert bl.disable_variant("churn", "two").status == "disabled"
        assert bl.get_allocation("churn").weights == {"one": pytest.approx(1.0)}
        assert bl.enable_variant("churn", "two").status == "active"

        report = bl.report("churn")
        assert isinstance(report, Report) and report.experiment == "churn"
        assert {v.name for v in report.variants} == {"one", "two"}
        assert bl.pause("churn").status == "paused"
        assert bl.stop("churn").status == "stopped"


def test_the_async_client_runs_an_experiment(base_url: str) -> None:
    async def scenario() -> None:
        async with AsyncClient(base_url, admin_token=ADMIN, serve_token=SERVE, timeout=60) as bl:
            await bl.create_experiment("ads", reward="continuous")
            await bl.upload_variant("ads", "only", linear_model([1.0, 1.0, 1.0]))
            await bl.start("ads")
            answers = await asyncio.gather(*(bl.predict("ads", [i, 0, 0]) for i in range(5)))
            assert [a.prediction for a in answers] == [0.0, 1.0, 2.0, 3.0, 4.0]
            assert len({a.request_id for a in answers}) == 5
            ack = await bl.feedback(answers[0].request_id, reward=2.5)
            assert ack == FeedbackAck(accepted=1, duplicate=False)
            assert (await bl.get_experiment("ads")).allocation_version == 1
            assert (await bl.report("ads")).experiment == "ads"
            with pytest.raises(NotFoundError) as info:
                await bl.get_experiment("nope")
            assert info.value.code == "experiment_not_found"

    asyncio.run(scenario())


def test_both_clients_offer_the_same_methods() -> None:
    def public(cls: type) -> dict[str, inspect.Signature]:
        return {
            name: inspect.signature(member)
            for name, member in inspect.getmembers(cls, inspect.isfunction)
            if not name.startswith("_") and name not in ("close", "aclose")
        }

    sync, async_ = public(Client), public(AsyncClient)
    assert sync == async_
    assert all(inspect.iscoroutinefunction(getattr(AsyncClient, name)) for name in async_)
    assert {"create_experiment", "upload_variant", "predict_batch", "feedback_batch"} <= set(sync)


def test_refusals_become_exceptions_with_code_and_message(base_url: str) -> None:
    with Client(base_url, admin_token=ADMIN, serve_token=SERVE) as bl:
        with pytest.raises(NotFoundError) as missing:
            bl.get_experiment("nope")
        assert missing.value.status == 404
        assert missing.value.code == "experiment_not_found"
        assert "'nope'" in missing.value.message and missing.value.message.endswith(".")
        assert str(missing.value).startswith("404 experiment_not_found: ")

        with pytest.raises(InvalidRequestError) as forged:
            bl.feedback("1.forged-request-id", reward=1)
        assert (forged.value.status, forged.value.code) == (422, "invalid_request_id")

        with pytest.raises(InvalidRequestError) as invalid:
            bl.create_experiment("bad name!", reward="binary")
        assert invalid.value.code == "invalid_request"
        assert invalid.value.details[0]["field"] == "name"

        bl.create_experiment("exp", reward="binary")
        with pytest.raises(ConflictError) as taken:
            bl.create_experiment("exp", reward="binary")
        assert taken.value.status == 409
        with pytest.raises(ConflictError):
            bl.update_experiment("exp", status="paused")

    with Client(base_url) as anonymous, pytest.raises(UnauthorizedError) as no_token:
        anonymous.list_experiments()
    assert (no_token.value.status, no_token.value.code) == (401, "missing_token")
    with Client(base_url, admin_token=SERVE) as wrong, pytest.raises(ForbiddenError) as role:
        wrong.list_experiments()
    assert isinstance(role.value, APIError) and role.value.status == 403


def test_a_batch_keeps_the_rows_a_model_refused(base_url: str) -> None:
    with Client(base_url, admin_token=ADMIN, serve_token=SERVE, timeout=60) as bl:
        bl.create_experiment("fragile", reward="binary")
        bl.upload_variant("fragile", "frail", fragile_model())
        bl.start("fragile")
        ok, refused = bl.predict_batch("fragile", [[0, 0, 0], [5, 5, 5]])
        assert isinstance(ok, Prediction) and ok.prediction == 10.0
        assert isinstance(refused, FailedPrediction)
        assert refused.variant == "frail" and refused.allocation_version == 1
        assert refused.error == RowError(
            code="input_rejected_by_model", message=refused.error.message, status=422
        )
        # A refused row still has its request id, so it can get feedback like any other.
        ack = bl.feedback_batch(
            [Feedback(refused.request_id, reward=0), Feedback(ok.request_id, reward=1)]
        )
        assert ack.accepted == 2


def test_transport_failures_are_wrapped() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with Client(f"http://127.0.0.1:{port}", timeout=5) as bl, pytest.raises(TransportError) as e:
        bl.list_experiments()
    assert isinstance(e.value, BanditlakeError)
    assert re.match(
        rf"GET /v1/experiments to the banditlake service at http://127.0.0.1:{port} failed "
        r"before an answer \(ConnectError: ",
        str(e.value),
    )

    def slow(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    with Client(transport=httpx.MockTransport(slow)) as bl, pytest.raises(TransportError) as t:
        bl.predict("exp", [1.0])
    assert " timed out before an answer (ReadTimeout: timed out)." in str(t.value)


@pytest.mark.parametrize(
    ("status", "body", "error", "code"),
    [
        (502, b"<html>Bad Gateway</html>", UnavailableError, "http_502"),
        (418, b"", APIError, "http_418"),
        (404, b'{"detail": "Not Found"}', NotFoundError, "http_404"),
    ],
)
def test_answers_without_the_envelope_keep_their_status(
    status: int, body: bytes, error: type[APIError], code: str
) -> None:
    transport = httpx.MockTransport(lambda _: httpx.Response(status, content=body))
    with Client(transport=transport) as bl, pytest.raises(error) as info:
        bl.get_experiment("exp")
    assert type(info.value) is error
    assert (info.value.status, info.value.code) == (status, code)
    assert info.value.message.startswith(f"GET /v1/experiments/exp answered {status} without")


def test_a_success_of_the_wrong_shape_is_unexpected() -> None:
    transport = httpx.MockTransport(lambda _: httpx.Response(200, json={"surprise": True}))
    with Client(transport=transport) as bl, pytest.raises(UnexpectedResponseError) as info:
        bl.predict("exp", [1.0])
    assert info.value.status == 200
    assert str(info.value).startswith(
        "The answer to POST /v1/experiments/exp/predict does not have the documented shape"
    )


def test_path_segments_are_escaped_and_tokens_go_by_role() -> None:
    seen: list[tuple[str, str | None]] = []

    def record(request: httpx.Request) -> httpx.Response:
        seen.append((request.url.raw_path.decode(), request.headers.get("authorization")))
        return httpx.Response(404, json={"error": {"code": "x", "message": "m.", "details": None}})

    with Client(transport=httpx.MockTransport(record), admin_token="A", serve_token="S") as bl:
        for call in (lambda: bl.get_experiment("a/b"), lambda: bl.predict("e", [1.0])):
            with pytest.raises(NotFoundError):
                call()
    assert seen == [
        ("/v1/experiments/a%2Fb", "Bearer A"),
        ("/v1/experiments/e/predict", "Bearer S"),
    ]


def _readme_python_example() -> str:
    text = README.read_text(encoding="utf-8")
    section = text.split("\n## Python client\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.DOTALL)
    assert len(blocks) == 1, "the README's Python client section has one python block"
    return str(blocks[0])


def test_the_readme_python_example_runs(
    serve: Serve,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = _readme_python_example()
    assert "http://127.0.0.1:8000" in code
    work = tmp_path / "work"
    work.mkdir()
    # The walkthrough's model: three features, in the order the example names them.
    (work / "gbm.onnx").write_bytes(linear_model([0.01, 0.1, 0.001]))
    monkeypatch.chdir(work)
    with serve() as base_url:
        runnable = code.replace("http://127.0.0.1:8000", base_url)
        for _ in range(2):  # a second run finds the experiment and reuses it
            exec(compile(runnable, "README.md", "exec"), {"__name__": "readme"})
            out = capsys.readouterr().out
            assert re.search(r"^gbm [0-9.]+ 1\.0$", out, flags=re.MULTILINE), out
        with Client(base_url) as bl:
            assert bl.get_experiment("churn-py").status == "running"
            assert [v.name for v in bl.list_variants("churn-py")] == ["gbm"]
