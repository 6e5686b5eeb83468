"""Named leases in the SQL store: one holder at a time, safe on SQLite and PostgreSQL.

A holder renews with :func:`acquire`; before it publishes, it calls :func:`fence` in the
publishing transaction, so a holder that lost its lease (paused past its TTL while
another took over) cannot publish after the new holder started.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import Connection, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from api.store.models import Lease
from api.store.types import utcnow

__all__ = ["acquire", "fence", "release"]


def acquire(session: Session, name: str, holder: str, ttl: timedelta) -> bool:
    """Take or renew the lease; ``True`` when ``holder`` holds it until now + ``ttl``.

    One conditional UPDATE decides (the row lock serialises racing replicas); the first
    holder ever creates the row, and a racing insert loses on the primary key.
    """
    now = utcnow()
    result = session.execute(
        update(Lease)
        .where(Lease.name == name, (Lease.holder == holder) | (Lease.expires_at < now))
        .values(holder=holder, expires_at=now + ttl)
    )
    if getattr(result, "rowcount", 0) == 1:
        session.commit()
        return True
    if session.get(Lease, name) is not None:
        session.rollback()
        return False
    session.add(Lease(name=name, holder=holder, expires_at=now + ttl))
    try:
        session.commit()
    except IntegrityError:
        session.rollback()
        return False
    return True


def fence(conn: Session | Connection, name: str, holder: str, ttl: timedelta) -> bool:
    """In the caller's open transaction: ``True`` when ``holder`` still holds the lease
    (unexpired), which is then renewed until now + ``ttl``; ``False`` otherwise.

    Nothing is committed here: the renewal commits or rolls back with the writes it
    guards. The UPDATE holds the lease row until then (a row lock on PostgreSQL, the
    write lock on SQLite), so a rival's :func:`acquire` waits for that transaction and
    then sees the renewed expiry: no one takes the lease between the check and the
    commit.
    """
    now = utcnow()
    result = conn.execute(
        update(Lease)
        .where(Lease.name == name, Lease.holder == holder, Lease.expires_at >= now)
        .values(expires_at=now + ttl)
    )
    return getattr(result, "rowcount", 0) == 1


def release(session: Session, name: str, holder: str) -> None:
    session.execute(
        update(Lease)
        .where(Lease.name == name, Lease.holder == holder)
        .values(expires_at=utcnow() - timedelta(seconds=1))
    )
    session.commit()
