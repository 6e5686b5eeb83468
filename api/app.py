"""The application factory: ``create_app(settings)`` builds one self-contained service."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

from api.errors import error_body, install_handlers
from api.routes import allocations, experiments, ops, variants
from api.serving.pool import ModelPool, VariantKey
from api.settings import Settings
from api.store.engine import make_engine, make_session_factory

__all__ = ["create_app", "create_app_from_env"]

log = logging.getLogger(__name__)

# Multipart framing around the model file; the exact limit is enforced on the file itself.
_FORM_OVERHEAD = 64 * 1024


def _load_models(app: FastAPI) -> None:
    """Load every stored variant; a model that fails is marked failed, the others serve."""
    from api.variants import all_variants

    settings: Settings = app.state.settings
    pool: ModelPool = app.state.pool
    with app.state.session_factory() as session:
        for experiment, variant in all_variants(session):
            if variant.status == "disabled":
                continue
            key = VariantKey(experiment.name, variant.name)
            try:
                pool.load(
                    key,
                    settings.models_dir / variant.model_path,
                    input_name=variant.input_name,
                    output_name=variant.output_name,
                    input_dim=variant.input_dim,
                )
            except Exception:
                variant.status = "failed"
                variant.status_reason = pool.failure(key)
                continue
            if variant.status == "failed":
                variant.status, variant.status_reason = "active", None
        session.commit()


def create_app(settings: Settings) -> FastAPI:
    """Build the service. Heavy resources are created in the lifespan, not here."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = make_engine(settings.database_url)
        app.state.engine = engine
        app.state.session_factory = make_session_factory(engine)
        app.state.pool = ModelPool(device=settings.device, threads=settings.intra_op_threads)
        _load_models(app)
        try:
            yield
        finally:
            engine.dispose()

    app = FastAPI(
        title="banditlake",
        version="0.1.0",
        summary="Multi-armed-bandit experiments over ONNX model variants with an inference lake.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    install_handlers(app)

    upload_limit = settings.max_upload_bytes + _FORM_OVERHEAD

    @app.middleware("http")
    async def _refuse_oversize(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        # Refuse before the multipart parser spools a huge body to disk.
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > upload_limit:
            msg = f"The request body ({length} bytes) is larger than the {upload_limit}-byte limit."
            return JSONResponse(error_body("payload_too_large", msg), status_code=413)
        return await call_next(request)

    for router in (ops.router, experiments.router, variants.router, allocations.router):
        app.include_router(router)
    return app


def create_app_from_env() -> FastAPI:
    """Entry point for ``uvicorn --factory`` with several workers: settings from the env."""
    return create_app(Settings())
