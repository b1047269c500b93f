"""Directory versions: a counter per organization that every write to its directory moves on.

A query that must read every match (the total of a SCIM list, the position of a deep page) can
be cached exactly if the cache is keyed by the directory's version read *before* the query and
every write moves the version in the write's own transaction: a cached value is then never
older than its version, and a newer write has moved the version past it. The reference
adapter (:class:`~flask_csvdirectory.adapters.sqlalchemy.SQLAlchemyDirectoryAdapter`) keys
its totals and page positions this way.

What moves the counter (table ``csvdirectory_directory_versions``; no row means 0):

- the adapter's own writes (a CSV apply, a revert, a SCIM write), for their organization,
  through :func:`changing`;
- any flush of a watched host model through a SQLAlchemy session (the host's own writes: an
  admin editing a person in the platform), for the row's organization (:func:`watch`);
- any bulk ``INSERT``/``UPDATE``/``DELETE`` statement on a watched table through a session,
  for every organization (the row ``*``).

The counter moves in the session's ``before_commit``, inside the transaction being committed:
the change and the new version become visible together, and the version's row is locked only
while committing. Writes that bypass SQLAlchemy sessions (SQL on a bare connection, another
application) are not seen: call :func:`directory_changed` in their transaction.
"""

from __future__ import annotations

import threading
import weakref
from collections import OrderedDict
from collections.abc import Hashable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Connection, Engine, Table, event, inspect, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import ORMExecuteState, Session, scoped_session

from .models import DirectoryVersion

__all__ = [
    "ALL", "MISSING", "VersionedCache", "changing", "current", "directory_changed", "read",
    "usable", "watch",
]

#: The row counting writes that could touch any organization.
ALL = "*"
_TABLE = cast(Table, DirectoryVersion.__table__)
#: session.info keys: organizations written in the open transaction; writes marked explicitly;
#: the versions this transaction has moved already (its commit is under way)
_PENDING = "csvdirectory_versions_pending"
_EXPLICIT = "csvdirectory_versions_explicit"
_MOVED = "csvdirectory_versions_moved"


@dataclass(frozen=True)
class _Watched:
    org_attribute: str | None
    attributes: frozenset[str] | None


#: host model -> what of it is watched; tables whose bulk statements move every version
_watched: dict[type, _Watched] = {}
_watched_tables: set[tuple[str | None, str]] = set()
#: engines whose database has the versions table (checked once each)
_ready: weakref.WeakKeyDictionary[Engine, bool] = weakref.WeakKeyDictionary()


def watch(
    model: type,
    *,
    org_attribute: str | None = None,
    attributes: frozenset[str] | None = None,
    tables: tuple[Any, ...] = (),
) -> None:
    """Move the version whenever an instance of ``model`` is inserted, deleted, or updated in
    one of ``attributes`` (``None``: any), for the organization in ``org_attribute`` (every
    organization without one); ``tables`` (say, an association table) also count for bulk
    statements. Safe to call again: the last call's settings hold."""
    first = model not in _watched
    _watched[model] = _Watched(org_attribute, attributes)
    _watched_tables.update(
        _table_key(table)
        for table in (getattr(model, "__table__", None), *tables)
        if table is not None
    )
    if first:
        event.listen(model, "after_insert", _written, propagate=True)
        event.listen(model, "after_delete", _written, propagate=True)
        event.listen(model, "after_update", _updated, propagate=True)


def directory_changed(session: Session, org: str = ALL) -> None:
    """Record that the open transaction of ``session`` changed organization ``org``'s
    directory (every organization by default); the version moves when it commits."""
    _real(session).info.setdefault(_PENDING, set()).add(org)


@contextmanager
def changing(session: Session, org: str) -> Iterator[None]:
    """For a write of the adapter to ``org``: the version moves for ``org`` alone when the
    transaction commits (bulk statements inside the block do not move every organization)."""
    session = _real(session)
    directory_changed(session, org)
    session.info[_EXPLICIT] = session.info.get(_EXPLICIT, 0) + 1
    try:
        yield
    finally:
        session.info[_EXPLICIT] -= 1


def current(session: Session, org: str) -> tuple[int, int] | None:
    """The version of ``org``'s directory and of the ``*`` row, read in the session's
    transaction; ``None`` when nothing may be cached: the database has no versions table, or
    the transaction has uncommitted writes to the directory (it would cache what may never
    be committed)."""
    session = _real(session)
    if not _has_table(session.connection()):
        return None
    rows = dict(session.execute(_read(org)).all())
    # (the query autoflushed first: pending changes are marked before this check)
    if not usable(session):
        return None
    return int(rows.get(org, 0)), int(rows.get(ALL, 0))


def read(connection: Connection, org: str) -> tuple[int, int] | None:
    """:func:`current` on a connection of its own (no session, so nothing uncommitted)."""
    if not _has_table(connection):
        return None
    rows = dict(connection.execute(_read(org)).all())
    return int(rows.get(org, 0)), int(rows.get(ALL, 0))


def _read(org: str) -> Any:
    return select(_TABLE.c.org, _TABLE.c.version).where(_TABLE.c.org.in_((org, ALL)))


def usable(session: Session) -> bool:
    """Whether the session's transaction holds no uncommitted write to the directory (once
    flushed: an unflushed change is not in what a query reads)."""
    return not _real(session).info.get(_PENDING)


def _real(session: Any) -> Session:
    """The session itself (a ``scoped_session`` stands for its current one)."""
    return cast(Session, session() if isinstance(session, scoped_session) else session)


def _has_table(connection: Connection) -> bool:
    engine = connection.engine
    if _ready.get(engine):
        return True
    found = inspect(connection).has_table(_TABLE.name)
    if found:
        _ready[engine] = True
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


# -- session and mapper events ------------------------------------------------------------------


def _table_key(table: Any) -> tuple[str | None, str]:
    """A table by schema and name (a statement may hold an annotated copy of it)."""
    return getattr(table, "schema", None), str(getattr(table, "name", ""))


def _spec(target: Any) -> _Watched | None:
    for model in type(target).__mro__:
        watched = _watched.get(model)
        if watched is not None:
            return watched
    return None


def _written(_mapper: Any, _connection: Connection, target: Any) -> None:
    """A watched instance was inserted or deleted in a flush."""
    watched = _spec(target)
    if watched is not None:
        _mark(target, watched)


def _updated(_mapper: Any, _connection: Connection, target: Any) -> None:
    """A watched instance was flushed as changed: only changes to the watched attributes
    count (a login counter does not)."""
    watched = _spec(target)
    if watched is None:
        return
    if watched.attributes is not None:
        attributes = inspect(target).attrs
        if not any(
            attributes[name].history.has_changes()
            for name in watched.attributes
            if name in attributes
        ):
            return
    _mark(target, watched)


def _mark(target: Any, watched: _Watched) -> None:
    session = Session.object_session(target)
    if session is None:
        return
    org = ALL
    if watched.org_attribute is not None:
        value = getattr(target, watched.org_attribute, None)
        org = ALL if value is None else str(value)
    directory_changed(session, org)


@event.listens_for(Session, "do_orm_execute")
def _bulk_statement(state: ORMExecuteState) -> None:
    if not (state.is_insert or state.is_update or state.is_delete):
        return
    if state.session.info.get(_EXPLICIT):
        return
    table = getattr(state.statement, "table", None)
    if table is not None and _table_key(table) in _watched_tables:
        directory_changed(state.session, ALL)


@event.listens_for(Session, "before_commit")
def _before_commit(session: Session) -> None:
    if session.new or session.deleted or session.dirty:
        session.flush()  # the final flush comes after this hook: its writes must count
    # what is marked stays marked until the transaction ends: a later before_commit hook (the
    # SCIM history's read-back) must not cache what this commit may still fail to make true
    moved = session.info.setdefault(_MOVED, set())
    pending = session.info.get(_PENDING, set()) - moved
    if not pending:
        return
    connection = session.connection()
    if not _has_table(connection):
        return
    for org in sorted(pending):  # one order everywhere: two committers never deadlock
        _bump(connection, org)
    moved.update(pending)


@event.listens_for(Session, "after_transaction_end")
def _transaction_end(session: Session, transaction: Any) -> None:
    if transaction.parent is None:  # the outermost: committed, or rolled back and forgotten
        session.info.pop(_PENDING, None)
        session.info.pop(_MOVED, None)


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
