"""Directory versions: a counter per organization that every write to its directory moves on.

A query that must read every match (the total of a SCIM list, the position of a deep page) can
be cached exactly if the cache is keyed by the directory's version read *before* the query and
every write moves the version in the write's own transaction: a cached value is then never
older than its version, and a newer write has moved the version past it. The reference
adapter (:class:`~flask_csvdirectory.adapters.sqlalchemy.SQLAlchemyDirectoryAdapter`) keys
its totals, page positions and text indexes this way.

What moves the counter (table ``csvdirectory_directory_versions``; no row means 0):

- the adapter's own writes (a CSV apply, a revert, a SCIM write), for their organization,
  through :func:`changing`;
- any flush of a watched host model (the host's own writes: an admin editing a person in the
  platform), for the row's organization, old and new (:func:`watch`);
- any ``INSERT``/``UPDATE``/``DELETE`` statement SQLAlchemy builds on a watched table outside
  such a flush (``session.execute(update(User)...)``, Core on a connection, the legacy bulk
  methods), for every organization (the row ``*``).

A write is marked on the connection that makes it; the counter moves right before that
connection's ``COMMIT`` (SQLAlchemy's ``commit`` connection event), after every flush and every
``before_commit`` hook: the change and the new version become visible together, the version's
row is locked only for the commit itself, and a savepoint changes nothing. A rolled-back
transaction moves nothing. Writes SQLAlchemy does not build (``text()``, SQL from another
application, database-side cascades from unwatched tables) are not seen: call
:func:`directory_changed` in their transaction.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Hashable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Connection, Engine, Table, event, inspect, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, scoped_session
from sqlalchemy.pool import Pool
from sqlalchemy.sql.dml import UpdateBase

from .models import DirectoryVersion

__all__ = [
    "ALL", "MISSING", "VersionedCache", "changing", "current", "directory_changed", "read",
    "watch",
]

#: The row counting writes that could touch any organization.
ALL = "*"
_TABLE = cast(Table, DirectoryVersion.__table__)
#: connection.info keys (the DBAPI connection's, kept across check-outs: cleared at every
#: commit, rollback and return to the pool): organizations written in the open transaction;
#: a mapper's own statements are being sent (the mapper events mark them, org by org, changed
#: attribute by changed attribute)
_PENDING = "csvdirectory_versions_pending"
_FLUSHING = "csvdirectory_versions_flushing"
#: a statement in autocommit mode moves every organization once it has run
_AFTER = "csvdirectory_versions_after"
#: connections (SQLAlchemy's, one per check-out) inside :func:`changing`: the adapter marks
#: their writes itself (statements there move no other organization)
_explicit: weakref.WeakKeyDictionary[Connection, int] = weakref.WeakKeyDictionary()
#: how long a database without the versions table is believed to stay so (seconds)
_ABSENT_FOR = 30.0


@dataclass(frozen=True)
class _Watched:
    org_attribute: str | None
    attributes: frozenset[str] | None


#: host model -> what of it is watched; tables whose statements move every version
_watched: dict[type, _Watched] = {}
_watched_tables: set[tuple[str | None, str]] = set()
#: engine -> whether its database has the versions table (and until when a "no" holds)
_ready: weakref.WeakKeyDictionary[Engine, tuple[bool, float]] = weakref.WeakKeyDictionary()


def watch(
    model: type,
    *,
    org_attribute: str | None = None,
    attributes: frozenset[str] | None = None,
    tables: tuple[Any, ...] = (),
) -> None:
    """Move the version whenever an instance of ``model`` is inserted, deleted, or updated in
    one of ``attributes`` (``None``: any), for the organization in ``org_attribute`` (every
    organization without one); ``tables`` (say, an association table) also count for
    statements. Safe to call again: the last call's settings hold (one setting per model in
    the process)."""
    first = model not in _watched
    _watched[model] = _Watched(org_attribute, attributes)
    _watched_tables.update(
        _table_key(table)
        for table in (getattr(model, "__table__", None), *tables)
        if table is not None
    )
    if first:
        for name in ("before_insert", "before_update", "before_delete"):
            event.listen(model, name, _flush_covers, propagate=True)
        event.listen(model, "after_insert", _written, propagate=True)
        event.listen(model, "after_delete", _written, propagate=True)
        event.listen(model, "after_update", _updated, propagate=True)


def directory_changed(session_or_connection: Session | Connection, org: str = ALL) -> None:
    """Record that the open transaction changed organization ``org``'s directory (every
    organization by default); the version moves when it commits. For writes SQLAlchemy does
    not build (``text()``, a bulk load by another tool)."""
    _mark(_connection(session_or_connection), org)


@contextmanager
def changing(connection: Connection, org: str) -> Iterator[None]:
    """For a write of the adapter to ``org`` on ``connection``: the version of ``org`` moves
    when the transaction commits, and statements inside the block move no other
    organization."""
    _mark(connection, org)
    _explicit[connection] = _explicit.get(connection, 0) + 1
    try:
        yield
    finally:
        left = _explicit.get(connection, 1) - 1
        if left:
            _explicit[connection] = left
        else:
            _explicit.pop(connection, None)


def current(session: Session, org: str, mapper: Any = None) -> tuple[int, int] | None:
    """The version of ``org``'s directory and of the ``*`` row, read in the session's
    transaction on the database of ``mapper`` (the people's: where their writes move it);
    ``None`` when nothing may be cached: that database has no versions table, or the
    transaction has uncommitted writes to the directory (it would cache what may never be
    committed)."""
    session = _real(session)
    bind = None if mapper is None else {"mapper": mapper}
    connection = session.connection(bind_arguments=bind)
    if not _has_table(connection):
        return None
    stamp = _stamp(session.execute(_read(org), bind_arguments=bind), org)
    # (the query autoflushed first: pending changes are marked before this check)
    return None if connection.info.get(_PENDING) else stamp


def read(connection: Connection, org: str) -> tuple[int, int] | None:
    """:func:`current` on a connection of its own (no session, so nothing uncommitted)."""
    if not _has_table(connection):
        return None
    return _stamp(connection.execute(_read(org)), org)


def _read(org: str) -> Any:
    return select(_TABLE.c.org, _TABLE.c.version).where(_TABLE.c.org.in_((org, ALL)))


def _stamp(rows: Any, org: str) -> tuple[int, int]:
    """(the organization's version, the ``*`` row's) from the rows of :func:`_read`."""
    found = dict(rows.all())
    return int(found.get(org, 0)), int(found.get(ALL, 0))


def _real(session: Any) -> Session:
    """The session itself (a ``scoped_session`` stands for its current one)."""
    return cast(Session, session() if isinstance(session, scoped_session) else session)


def _connection(session_or_connection: Any) -> Connection:
    if isinstance(session_or_connection, Connection):
        return session_or_connection
    return _real(session_or_connection).connection()


def _mark(connection: Connection, org: str, *, written: bool = False) -> None:
    """Mark ``org`` written in the connection's transaction; on a connection in autocommit
    mode the driver has committed the write already (``written``): move the version now."""
    if written and _autocommit(connection):
        if _has_table(connection):
            _bump(connection, org)
        return
    connection.info.setdefault(_PENDING, set()).add(org)


def _autocommit(connection: Connection) -> bool:
    check = getattr(connection, "_is_autocommit_isolation", None)
    return bool(check()) if check is not None else False


def _has_table(connection: Connection) -> bool:
    engine = connection.engine
    known = _ready.get(engine)
    if known is not None and (known[0] or time.monotonic() < known[1]):
        return known[0]
    found = inspect(connection).has_table(_TABLE.name)
    _ready[engine] = (found, time.monotonic() + _ABSENT_FOR)
    return found


def _bump(connection: Connection, org: str) -> None:
    dialect = connection.dialect.name
    if dialect in ("postgresql", "sqlite"):
        insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
        connection.execute(
            insert(_TABLE)
            .values(org=org, version=1)
            .on_conflict_do_update(
                index_elements=[_TABLE.c.org], set_={"version": _TABLE.c.version + 1}
            )
        )
        return
    moved = connection.execute(
        update(_TABLE).where(_TABLE.c.org == org).values(version=_TABLE.c.version + 1)
    )
    if not moved.rowcount:
        connection.execute(_TABLE.insert().values(org=org, version=1))


# -- mapper, session, connection and pool events -----------------------------------------------


def _table_key(table: Any) -> tuple[str | None, str]:
    """A table by schema and name (a statement may hold an annotated copy of it)."""
    return getattr(table, "schema", None), str(getattr(table, "name", ""))


def _spec(target: Any) -> _Watched | None:
    for model in type(target).__mro__:
        watched = _watched.get(model)
        if watched is not None:
            return watched
    return None


def _written(_mapper: Any, connection: Connection, target: Any) -> None:
    """A watched instance was inserted or deleted in a flush."""
    connection.info.pop(_FLUSHING, None)  # the mapper's statements are sent
    watched = _spec(target)
    if watched is not None:
        _mark_target(connection, target, watched)


def _updated(_mapper: Any, connection: Connection, target: Any) -> None:
    """A watched instance was flushed as changed: only changes to the watched attributes
    count (a login counter does not)."""
    connection.info.pop(_FLUSHING, None)  # the mapper's statements are sent
    watched = _spec(target)
    if watched is None:
        return
    attributes = inspect(target).attrs
    if watched.attributes is not None and not any(
        attributes[name].history.has_changes()
        for name in watched.attributes
        if name in attributes
    ):
        return
    _mark_target(connection, target, watched)
    if watched.org_attribute is not None and watched.org_attribute in attributes:
        moved = attributes[watched.org_attribute].history
        if moved.added and not moved.deleted:  # moved from an organization not loaded
            _mark(connection, ALL, written=True)
        for old in moved.deleted:  # moved between organizations: the old one too
            _mark(connection, ALL if old is None else str(old), written=True)


def _mark_target(connection: Connection, target: Any, watched: _Watched) -> None:
    org = ALL
    if watched.org_attribute is not None:
        value = getattr(target, watched.org_attribute, None)
        org = ALL if value is None else str(value)
    _mark(connection, org, written=True)


def _flush_covers(_mapper: Any, connection: Connection, _target: Any) -> None:
    """A flush is about to send a watched mapper's statements on ``connection``: they are left
    to the mapper's ``after_*`` events, the first of which ends this (any other statement,
    a host hook's included, is marked for every organization)."""
    connection.info[_FLUSHING] = True


@event.listens_for(Engine, "before_execute")
def _statement(
    connection: Connection, statement: Any, _multiparams: Any, _params: Any, _options: Any
) -> None:
    """An INSERT, UPDATE or DELETE of a watched table outside a flush moves every organization
    (the rows it touches are not known), unless the adapter marks the write itself."""
    if not isinstance(statement, UpdateBase):
        return
    table = getattr(statement, "table", None)
    if table is None or _table_key(table) not in _watched_tables:
        return
    if connection in _explicit or connection.info.get(_FLUSHING):
        return
    if _autocommit(connection):
        connection.info[_AFTER] = True  # moved once the driver has committed it
    else:
        _mark(connection, ALL)


@event.listens_for(Engine, "after_execute")
def _statement_done(
    connection: Connection, _statement: Any, _multiparams: Any, _params: Any, _options: Any,
    _result: Any,
) -> None:
    if connection.info.pop(_AFTER, None):
        _mark(connection, ALL, written=True)


@event.listens_for(Engine, "commit")
def _before_database_commit(connection: Connection) -> None:
    """Right before the COMMIT: move the version of every organization written (not in a
    transaction PostgreSQL has aborted: its COMMIT rolls back)."""
    connection.info.pop(_FLUSHING, None)
    pending = connection.info.pop(_PENDING, None)
    if pending and not _aborted(connection) and _has_table(connection):
        for org in sorted(pending):  # one order everywhere: two committers never deadlock
            _bump(connection, org)


def _aborted(connection: Connection) -> bool:
    """Whether the connection's transaction failed (PostgreSQL's "in error" state)."""
    if connection.dialect.name != "postgresql":
        return False
    driver = connection.connection.dbapi_connection
    info = getattr(driver, "info", None)  # psycopg 3
    if info is not None and hasattr(info, "transaction_status"):
        return int(info.transaction_status) == 3  # TransactionStatus.INERROR
    status = getattr(driver, "get_transaction_status", None)  # psycopg2
    return status is not None and int(status()) == 3  # TRANSACTION_STATUS_INERROR


@event.listens_for(Engine, "rollback_savepoint")
def _savepoint_rolled_back(connection: Connection, _name: Any, _context: Any) -> None:
    if not (connection.invalidated or connection.closed):
        connection.info.pop(_FLUSHING, None)  # a flush that failed inside the savepoint


@event.listens_for(Engine, "rollback")
def _rolled_back(connection: Connection) -> None:
    if connection.invalidated or connection.closed:  # lost: its pool record is reset anyway
        return
    info = connection.info
    for key in (_PENDING, _FLUSHING, _AFTER):
        info.pop(key, None)


@event.listens_for(Pool, "reset")
def _returned(_dbapi_connection: Any, record: Any, _reset_state: Any) -> None:
    if record is not None:
        for key in (_PENDING, _FLUSHING, _AFTER):
            record.info.pop(key, None)


class VersionedCache:
    """Values read from the directory, each kept with the versions it was read at and given
    back only while they are still the current ones (least recently used first out)."""

    def __init__(self, size: int = 256) -> None:
        self._size = size
        self._items: OrderedDict[Hashable, tuple[tuple[int, int], Any]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable, stamp: tuple[int, int]) -> Any:
        """The value kept for ``key`` at ``stamp``, or :data:`MISSING`."""
        with self._lock:
            found = self._items.get(key)
            if found is None or found[0] != stamp:
                return MISSING
            self._items.move_to_end(key)
            return found[1]

    def put(self, key: Hashable, stamp: tuple[int, int], value: Any) -> None:
        """Keep ``value`` for ``key`` at ``stamp``."""
        with self._lock:
            self._items[key] = (stamp, value)
            self._items.move_to_end(key)
            while len(self._items) > self._size:
                self._items.popitem(last=False)


#: what :meth:`VersionedCache.get` returns for a value it does not hold
MISSING: Any = object()
