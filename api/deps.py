"""Typed dependencies: routes declare what they need as ``Annotated`` aliases.

The serving routes call :func:`api.auth.authorize` themselves: a dependency costs a hop
on the hottest path.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from api.auth import authorize
from api.serving.pool import ModelPool
from api.settings import Settings

__all__ = ["AdminDep", "MetricsDep", "PoolDep", "SessionDep", "SettingsDep"]


# Dependencies are ``async def`` on purpose: FastAPI runs a plain ``def`` dependency in
# its thread pool, a hop that would cost more than the work they do.
async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_session(request: Request) -> Iterator[Session]:
    # Routes commit explicitly; whatever they leave uncommitted is rolled back on close.
    with request.app.state.session_factory() as session:
        yield session


async def get_pool(request: Request) -> ModelPool:
    pool: ModelPool = request.app.state.pool
    return pool


SettingsDep = Annotated[Settings, Depends(get_settings)]
SessionDep = Annotated[Session, Depends(get_session)]
PoolDep = Annotated[ModelPool, Depends(get_pool)]


async def require_admin(request: Request, settings: SettingsDep) -> str:
    return authorize(request, settings, "admin")


async def require_metrics(request: Request, settings: SettingsDep) -> str:
    return authorize(request, settings, "metrics")


AdminDep = Annotated[str, Depends(require_admin)]
MetricsDep = Annotated[str, Depends(require_metrics)]
