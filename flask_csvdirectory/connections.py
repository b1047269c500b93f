"""Database connections of web processes, jobs and workers: none crosses a fork, none broken is
reused, and no transaction outlives its job.

- :func:`install_pre_ping`: every connection is tested when taken from the pool (the host's
  ``pool_pre_ping``, or an equivalent ``checkout`` listener when the host did not set it), so a
  connection the server dropped is replaced instead of failing the next request.
- :func:`release_connections`: end the session and close every pooled connection. A worker's
  parent process calls it after each piece of database work, so it never holds a connection, let
  alone an open transaction, when it forks a work-horse.
- :func:`after_fork`: the first thing a work-horse does; drops the pools it inherited without
  touching their sockets (they belong to the parent), so the job opens fresh connections.
- :func:`guard_apply_transaction`: on PostgreSQL, makes the server poll the job's socket while a
  statement of the apply runs, so a statement of a killed job (even one waiting for a lock) is
  cancelled within a second and its locks released.
"""

from __future__ import annotations

import logging
import weakref
from typing import Any

from flask import Flask
from sqlalchemy import event, exc, text
from sqlalchemy.engine import Engine

log = logging.getLogger(__name__)

#: How often PostgreSQL checks, during an apply statement, that the job is still connected.
CLIENT_CHECK_INTERVAL = "1s"


def _engines(app: Flask) -> list[Engine]:
    db = app.extensions["sqlalchemy"]
    with app.app_context():
        return list(db.engines.values())


def install_pre_ping(app: Flask) -> None:
    """Test each pooled connection on checkout, unless the host set ``pool_pre_ping`` already."""
    options = app.config.get("SQLALCHEMY_ENGINE_OPTIONS") or {}
    if options.get("pool_pre_ping"):
        return
    for engine in _engines(app):
        if engine not in _pinged:
            event.listen(engine, "checkout", _pinger(engine))
            _pinged.add(engine)


_pinged: weakref.WeakSet[Engine] = weakref.WeakSet()


def _pinger(engine: Engine) -> Any:
    dialect = engine.dialect

    def ping_on_checkout(dbapi_connection: Any, record: Any, proxy: Any) -> None:
        try:
            alive = dialect.do_ping(dbapi_connection)
        except Exception as error:
            if not dialect.is_disconnect(error, dbapi_connection, None):  # type: ignore[arg-type]
                raise
            alive = False
        if not alive:
            # the pool discards this connection and checks out (or opens) another
            raise exc.DisconnectionError("the connection was closed by the server")

    return ping_on_checkout


def release_connections(app: Flask) -> None:
    """End the session of ``app`` (rolling back) and close every pooled connection."""
    db = app.extensions["sqlalchemy"]
    with app.app_context():
        try:
            db.session.remove()
        except Exception:  # its connection is gone: nothing to roll back
            log.debug("session removal failed", exc_info=True)
        for engine in db.engines.values():
            engine.dispose()


def after_fork(app: Flask) -> None:
    """In a forked work-horse: forget the inherited pools and session without using them."""
    db = app.extensions["sqlalchemy"]
    with app.app_context():
        for engine in db.engines.values():
            engine.dispose(close=False)
        # a session object copied from the parent must not be used (nor closed: closing would
        # roll back on the parent's socket); drop it so the job gets a fresh one
        db.session.registry.clear()


def guard_apply_transaction(session: Any) -> None:
    """Within the apply's transaction on PostgreSQL 14+: cancel a statement within a second
    when the job's connection is gone (``client_connection_check_interval``)."""
    connection = session.connection()
    if connection.dialect.name != "postgresql":
        return
    version = connection.dialect.server_version_info or (0,)
    if version >= (14,):
        connection.execute(
            text(f"SET LOCAL client_connection_check_interval = '{CLIENT_CHECK_INTERVAL}'")
        )
