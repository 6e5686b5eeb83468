"""Fuzz the whole OpenAPI document in process with schemathesis.

Every documented operation is called with generated (valid and invalid) input against an
app whose store holds a running experiment with two real ONNX arms, so the serving and
per-experiment routes do real work instead of answering 404. Each response must not be a
server error, and its status code, content type and body must be ones the OpenAPI
document declares for that operation.

Two runs share the checks:

- per operation (stateless): path parameters name the live experiment and arm; request
  bodies come from the schema, mixed with bodies shaped for that experiment (three
  features, real request ids, real ONNX files) so the fuzzer also reaches the code
  behind validation;
- stateful: the document declares no OpenAPI links, but schemathesis infers them
  (an experiment's ``name`` from ``POST``/``GET /v1/experiments`` feeds every
  ``/v1/experiments/{name}/...`` route, a predict's ``request_id`` feeds feedback), and
  runs call sequences along them.
"""

from __future__ import annotations

import collections
import itertools
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hypothesis
import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck
from hypothesis import strategies as st
from schemathesis.checks import CheckFunction, not_a_server_error
from schemathesis.python import asgi
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from api.app import create_app
from api.settings import Settings
from api.store.migrate import upgrade
from tests.api.serving_support import running_experiment
from tests.conftest import make_client, make_settings
from tests.onnx_models import classifier_model, int_input_model, linear_model, rank3_model

ADMIN = "fuzz-admin-token"
SERVE = "fuzz-serve-token"
EXPERIMENT = "exp"
ARMS = ("a", "b")
N_FEATURES = 3

CHECKS: list[CheckFunction] = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]

# Bounded and reproducible: the same examples on every run, few enough for two slow cores.
STATELESS = hypothesis.settings(
    max_examples=25,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
STATEFUL = hypothesis.settings(
    STATELESS, max_examples=30, stateful_step_count=6, phases=[hypothesis.Phase.generate]
)


def _document_app() -> FastAPI:
    # The OpenAPI document depends neither on settings nor on the lifespan's resources.
    return create_app(Settings(_env_file=None, home=Path("unused"), device="cpu"))  # type: ignore[call-arg]


schema = schemathesis.openapi.from_dict(_document_app().openapi())

# Request ids the current test's app issued while it was set up; feedback bodies draw
# from them so they pass the id check and reach the store.
_ISSUED: list[str] = []

# Mostly ordinary values, sometimes any finite double (beyond float32, subnormal, -0.0).
_feature = st.one_of(
    st.floats(-1e3, 1e3), st.integers(-10, 10), st.floats(allow_nan=False, allow_infinity=False)
)
_predict = st.fixed_dictionaries(
    {"features": st.lists(_feature, min_size=N_FEATURES, max_size=N_FEATURES)},
    optional={"unit_id": st.text(min_size=1, max_size=20)},
)
_request_id = st.integers(min_value=0).map(lambda i: _ISSUED[i % len(_ISSUED)])
_feedback = st.fixed_dictionaries(
    # The experiment's reward is binary: 0 and 1 are accepted, other numbers are 422s.
    # (Labels and other shapes come from the schema's own strategy.)
    {
        "request_id": _request_id,
        "reward": st.one_of(st.sampled_from([0, 1]), st.sampled_from([0.0, 1.0]), _feature),
    }
)
_models = st.sampled_from(
    [
        linear_model([1.0, 2.0, 3.0]),
        linear_model([1.0, 2.0]),
        classifier_model([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]),
        int_input_model(),
        rank3_model(),
        b"not an onnx model",
    ]
)
_upload = st.fixed_dictionaries(
    {"name": st.from_regex(r"\A[a-z][a-z0-9_]{0,8}\Z"), "model": _models},
    optional={
        "role": st.sampled_from(["arm", "shadow"]),
        "features": st.sampled_from(['["x", "y", "z"]', '["x"]', "[1, 2]", "not json"]),
        "output": st.sampled_from(["y", "scores", "missing"]),
    },
)
_weights = st.fixed_dictionaries({arm: st.floats(0, 1) for arm in ARMS})

# Bodies shaped for the live experiment, by operation (method, path).
_SHAPED: dict[tuple[str, str], st.SearchStrategy[Any]] = {
    ("POST", "/v1/experiments/{name}/predict"): _predict,
    ("POST", "/v1/experiments/{name}/predict/batch"): st.fixed_dictionaries(
        {"rows": st.lists(_predict, max_size=10)}
    ),
    ("POST", "/v1/feedback"): _feedback,
    ("POST", "/v1/feedback/batch"): st.fixed_dictionaries(
        {"items": st.lists(_feedback, max_size=10)}
    ),
    ("POST", "/v1/experiments/{name}/variants"): _upload,
    ("POST", "/v1/experiments/{name}/promote"): st.fixed_dictionaries(
        {"variant": st.sampled_from([*ARMS, "missing"])}
    ),
    ("PUT", "/v1/experiments/{name}/allocation"): st.fixed_dictionaries({"weights": _weights}),
}


@schema.hook
def before_generate_body(
    context: schemathesis.HookContext, strategy: st.SearchStrategy[Any]
) -> st.SearchStrategy[Any]:
    operation = context.operation
    if operation is None:
        return strategy
    shaped = _SHAPED.get((operation.method.upper(), operation.path))
    return strategy if shaped is None else st.one_of(strategy, shaped)


def _settings(home: Path) -> Settings:
    url = f"sqlite:///{home / 'store.db'}"
    home.mkdir(parents=True, exist_ok=True)
    upgrade(url)
    return make_settings(
        home,
        url,
        admin_token=ADMIN,
        serve_token=SERVE,
        # The background loop would reallocate while the fuzzer runs; keep runs reproducible.
        reallocate=False,
        # Small limits, so oversized batches and uploads are cheap to generate.
        max_predict_batch_rows=8,
        max_upload_bytes=64 * 1024,
    )


@pytest.fixture
def live(tmp_path: Path) -> Settings:
    """Settings whose store holds a running experiment ``exp`` with arms ``a`` and ``b``.

    Set up through a TestClient on an app of its own, whose lifespan then ends: the
    fuzzed apps start over the same store on schemathesis's event loop, so they serve
    what they load at start.
    """
    settings = _settings(tmp_path / "live")
    with make_client(settings, headers={"Authorization": f"Bearer {ADMIN}"}) as client:
        running_experiment(client, EXPERIMENT)
        _ISSUED.clear()
        for i in range(4):
            response = client.post(
                f"/v1/experiments/{EXPERIMENT}/predict", json={"features": [i, 1.0, 2.0]}
            )
            assert response.status_code == 200, response.text
            _ISSUED.append(response.json()["request_id"])
    return settings


@pytest.fixture
def app(live: Settings) -> Iterator[FastAPI]:
    # Schemathesis starts the lifespan on the first call; its pytest plugin ends it after
    # the test.
    yield create_app(live)
    _ISSUED.clear()


def _copy(live: Settings, home: Path) -> Settings:
    """The live store, copied: each stateful example starts from the same state."""
    shutil.copytree(live.home, home)
    url = f"sqlite:///{home / 'store.db'}"
    return make_settings(home, url, **live.model_dump(exclude={"home", "database_url", "lake_uri"}))


def _unresolved_refs(node: Any, document: dict[str, Any], where: str) -> Iterator[str]:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str):
            target: Any = document
            for part in ref.removeprefix("#/").split("/"):
                target = target.get(part) if isinstance(target, dict) else None
            if not ref.startswith("#/") or target is None:
                yield f"{where}: {ref}"
        for key, value in node.items():
            yield from _unresolved_refs(value, document, f"{where}/{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _unresolved_refs(value, document, f"{where}/{i}")


def test_every_schema_reference_resolves() -> None:
    # A "$ref" resolves against the whole document: one that points nowhere leaves the
    # fuzzer (and every client generator) without a body schema for that operation.
    document = schema.raw_schema
    assert list(_unresolved_refs(document["paths"], document, "#/paths")) == []


def _headers(case: schemathesis.Case) -> dict[str, str]:
    # The serving routes get the serve token; the admin token is checked there by the
    # stateful run, which calls every route as admin.
    token = SERVE if "serving" in (case.operation.tags or []) else ADMIN
    return {"Authorization": f"Bearer {token}"}


@schema.parametrize()
@STATELESS
def test_every_operation_conforms(case: schemathesis.Case, app: FastAPI) -> None:
    if case.path_parameters is not None:
        # The live experiment and one of its arms, so generated bodies reach the code
        # behind the 404.
        if "name" in case.path_parameters:
            case.path_parameters["name"] = EXPERIMENT
        if "variant" in case.path_parameters:
            case.path_parameters["variant"] = ARMS[0]
    response = case.call(app=app, headers=_headers(case))
    case.validate_response(response, checks=CHECKS)


def test_call_sequences_conform(live: Settings, tmp_path: Path) -> None:
    statuses: collections.Counter[tuple[str, int]] = collections.Counter()
    runs = itertools.count()

    class Sequences(schema.as_state_machine()):  # type: ignore[misc]
        # A sequence's responses must depend only on the sequence (Hypothesis replays
        # choices and refuses a run whose steps changed), so each starts on a fresh copy
        # of the live store rather than on what earlier sequences left behind.
        def setup(self) -> None:
            self.app = create_app(_copy(live, tmp_path / f"run-{next(runs)}"))

        def teardown(self) -> None:
            asgi.shutdown_lifespans()

        def get_call_kwargs(self, case: schemathesis.Case) -> dict[str, Any]:
            return {"app": self.app, "headers": {"Authorization": f"Bearer {ADMIN}"}}

        def validate_response(self, response: Any, case: schemathesis.Case, **kwargs: Any) -> None:
            statuses[(case.operation.label, response.status_code)] += 1
            case.validate_response(response, checks=CHECKS, transport_kwargs=kwargs)

    Sequences.run(settings=STATEFUL)
    # The sequences followed links: routes under an experiment's name answered with data
    # instead of only 404s for generated names.
    linked = {label for (label, code), _ in statuses.items() if "{name}" in label and code < 300}
    assert len(linked) >= 3, statuses
