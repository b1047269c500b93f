"""One writer at a time per organization: CSV applies and SCIM writes serialise on one lock.

:func:`organization_lock` is a context manager. On PostgreSQL it is an advisory lock held on a
connection of its own (so the host's session may commit inside it); on a SQLite file it is an
``flock`` on a file beside the database (threads and processes alike); elsewhere a lock of this
process. Waiting longer than ``timeout`` seconds raises :class:`OrganizationBusy`, which SCIM
answers with a retryable 409.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import text

from .errors import CSVDirectoryError

__all__ = ["OrganizationBusy", "organization_lock"]

_POLL_SECONDS = 0.02
_local_locks: dict[str, threading.Lock] = {}
_local_guard = threading.Lock()


class OrganizationBusy(CSVDirectoryError):
    """Another write (a CSV apply, a SCIM write) holds the organization; try again shortly."""


def _lock_id(org: str) -> int:
    digest = hashlib.sha256(f"csvdirectory:{org}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


@contextmanager
def organization_lock(engine: Any, org: str, timeout: float) -> Iterator[None]:
    """Hold the organization's write lock for the block (waiting at most ``timeout`` s)."""
    deadline = time.monotonic() + timeout
    dialect = engine.dialect.name
    if dialect == "postgresql":
        with engine.connect() as connection:
            lock_id = _lock_id(org)
            while not connection.scalar(text("SELECT pg_try_advisory_lock(:id)"), {"id": lock_id}):
                if time.monotonic() > deadline:
                    raise OrganizationBusy(_busy(org))
                time.sleep(_POLL_SECONDS)
            connection.commit()
            try:
                yield
            finally:
                connection.execute(text("SELECT pg_advisory_unlock(:id)"), {"id": lock_id})
                connection.commit()
        return
    database = engine.url.database if dialect == "sqlite" else None
    if database and database != ":memory:" and not database.startswith("file:"):
        path = f"{database}.csvdirectory-{_lock_id(org) & 0xFFFFFFFF:08x}.lock"
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            while True:
                try:
                    fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise OrganizationBusy(_busy(org)) from None
                    time.sleep(_POLL_SECONDS)
            try:
                yield
            finally:
                fcntl.flock(descriptor, fcntl.LOCK_UN)
        finally:
            os.close(descriptor)
        return
    with _local_guard:
        lock = _local_locks.setdefault(f"{engine.url}:{org}", threading.Lock())
    if not lock.acquire(timeout=timeout):
        raise OrganizationBusy(_busy(org))
    try:
        yield
    finally:
        lock.release()


def _busy(org: str) -> str:
    return (
        f"Another change to organization {org!r} (a CSV sync or a SCIM write) is being applied; "
        "retry shortly."
    )
