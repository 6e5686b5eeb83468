"""Deployment-wide secrets kept in the SQL store, so every replica shares them.

A secret given in the environment wins; otherwise the first process to start generates
one and every later process (any replica, any restart) reads the same row.
"""

from __future__ import annotations

import secrets

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from api.store.models import ServiceSecret

__all__ = ["shared_secret"]


def shared_secret(session_factory: sessionmaker[Session], name: str) -> bytes:
    """Return the secret ``name``, creating it (256 random bits) on first use."""
    with session_factory() as session:
        value = session.scalar(select(ServiceSecret.value).where(ServiceSecret.name == name))
        if value is not None:
            return bytes.fromhex(value)
        session.add(ServiceSecret(name=name, value=secrets.token_hex(32)))
        try:
            session.commit()
        except IntegrityError:
            # Another replica created it first: everyone uses that one.
            session.rollback()
        value = session.scalar(select(ServiceSecret.value).where(ServiceSecret.name == name))
        if value is None:  # pragma: no cover - the row was committed by us or by the winner
            msg = f"The shared secret {name!r} could not be read back from the SQL store."
            raise RuntimeError(msg)
        return bytes.fromhex(value)
