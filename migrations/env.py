"""Alembic environment: the URL comes from the caller or from :class:`api.settings.Settings`."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from api.settings import Settings
from api.store.engine import make_engine
from api.store.models import Base

config = context.config
target_metadata = Base.metadata


def _url() -> str:
    # A caller (``banditlake migrate``, the tests) may pass the URL explicitly;
    # plain ``alembic upgrade head`` reads the service's own settings.
    explicit = config.attributes.get("database_url") or config.get_main_option("sqlalchemy.url")
    return str(explicit) if explicit else Settings().database_url


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        compare_type=True,
        render_as_batch=connection.dialect.name == "sqlite",
    )


def run_migrations_offline() -> None:
    context.configure(
        url=_url(), target_metadata=target_metadata, literal_binds=True, compare_type=True
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure(connection)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = make_engine(_url())
    try:
        with engine.connect() as conn:
            _configure(conn)
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
