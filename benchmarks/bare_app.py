"""The baseline: a bare FastAPI endpoint that parses the same body and runs the same model.

No routing, no logging, no metrics. Started by ``benchmarks/serving.py`` with
``uvicorn --factory benchmarks.bare_app:create_bare_app`` and ``BARE_MODEL`` set.
"""

from __future__ import annotations

import os

import numpy as np
import onnxruntime as ort
from fastapi import FastAPI
from fastapi.responses import JSONResponse

from api.schemas import PredictBody


def create_bare_app() -> FastAPI:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(
        os.environ["BARE_MODEL"],
        options,
        providers=os.environ.get("BARE_PROVIDERS", "CPUExecutionProvider").split(","),
    )
    input_name = session.get_inputs()[0].name
    app = FastAPI()

    @app.post("/predict")
    async def predict(body: PredictBody) -> JSONResponse:
        x = np.asarray([body.features], dtype=np.float32)
        y = session.run(None, {input_name: x})[0]
        return JSONResponse({"prediction": float(y.reshape(-1)[0])})

    return app
