"""Small request builders shared by the API tests."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from tests.onnx_models import linear_model


def create_experiment(client: TestClient, name: str = "exp", **body: Any) -> dict[str, Any]:
    payload = {"name": name, "reward": {"kind": "binary"}, **body}
    response = client.post("/v1/experiments", json=payload)
    assert response.status_code == 201, response.text
    return dict(response.json())


def upload(
    client: TestClient,
    experiment: str,
    name: str,
    model: bytes | None = None,
    *,
    role: str = "arm",
    features: str | None = None,
    output: str | None = None,
    expect: int = 201,
) -> dict[str, Any]:
    data = {"name": name, "role": role}
    if features is not None:
        data["features"] = features
    if output is not None:
        data["output"] = output
    response = client.post(
        f"/v1/experiments/{experiment}/variants",
        data=data,
        files={
            "model": (
                "model.onnx",
                model or linear_model([1.0, 2.0, 3.0]),
                "application/octet-stream",
            )
        },
    )
    assert response.status_code == expect, response.text
    return dict(response.json())


def start(client: TestClient, experiment: str) -> None:
    response = client.patch(f"/v1/experiments/{experiment}", json={"status": "running"})
    assert response.status_code == 200, response.text


def error_code(response: Any) -> str:
    body = response.json()
    assert set(body) == {"error"}, body
    assert body["error"]["message"].endswith("."), body
    return str(body["error"]["code"])
