"""Alembic migrations of the extension's own tables, and the functions that run them.

The migrations live in this package (``env.py``, ``versions/``) and record their state in a version
table of their own, :data:`VERSION_TABLE`, so they coexist with the host's Alembic (or
Flask-Migrate) history in the same database. Operators run ``flask csvdirectory db upgrade``;
code can call :func:`upgrade`. Developers of the extension add a revision with
``python -m flask_csvdirectory.migrations revision "what changed"`` (see ``README.md`` here).

A database created by 0.1.0 (``create_all()``, no version table) is recognised by its tables and
marked as the baseline revision before upgrading.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine, inspect, text

if TYPE_CHECKING:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

# Alembic is imported inside the functions that use it: create_all() on a database already at
# the head (every start-up of an app that calls it) reads the version table and the revision
# files itself, and a process start-up is a quarter of a second quicker without Alembic.

#: The table holding the revision the extension's tables are at (the host's stays its own).
VERSION_TABLE = "csvdirectory_alembic_version"
#: The first revision: the tables as flask-csvdirectory 0.1.0 created them.
BASELINE = "0001"
SCRIPT_LOCATION = str(Path(__file__).resolve().parent)

__all__ = [
    "BASELINE",
    "VERSION_TABLE",
    "alembic_config",
    "create_all",
    "current_revision",
    "downgrade",
    "head_revision",
    "include_object",
    "stamp",
    "upgrade",
]


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic :class:`~alembic.config.Config` for the extension's migrations.

    With ``connection``, commands run on it (``env.py`` reads ``config.attributes["connection"]``).
    """
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", SCRIPT_LOCATION)
    config.set_main_option("file_template", "rev%%(rev)s_%%(slug)s")
    config.attributes["connection"] = connection
    return config


def script_directory() -> ScriptDirectory:
    """The extension's revisions."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config())


def head_revision() -> str:
    """The newest revision (there must be exactly one head)."""
    heads = script_directory().get_heads()
    if len(heads) != 1:
        raise RuntimeError(
            f"flask-csvdirectory's migrations have {len(heads)} heads ({', '.join(heads)}); "
            "there must be exactly one: set the newer revision's down_revision to the other."
        )
    return heads[0]


def current_revision(bind: Connection | Engine) -> str | None:
    """The revision the extension's tables in ``bind``'s database are at (``None``: none)."""
    from alembic.runtime.migration import MigrationContext

    with _connection(bind) as connection:
        context = MigrationContext.configure(
            connection, opts={"version_table": VERSION_TABLE}
        )
        return context.get_current_revision()


def upgrade(bind: Connection | Engine, revision: str = "head") -> str | None:
    """Upgrade the extension's tables to ``revision``; returns the revision reached.

    A database with the 0.1.0 tables but no version table is first stamped as :data:`BASELINE`.
    Runs in one transaction (on PostgreSQL the DDL is transactional too).
    """
    from alembic import command

    with _transaction(bind) as connection:
        if _is_unversioned_0_1_0(connection):
            command.stamp(alembic_config(connection), BASELINE)
        command.upgrade(alembic_config(connection), revision)
    return current_revision(bind)


def create_all(bind: Connection | Engine) -> str | None:
    """Bring the extension's tables to the newest revision, the quickest way.

    No tables yet: create them from the models and stamp the head (what Alembic's docs advise
    for a new database; a test keeps the models and the migrations equal). Tables already there:
    :func:`upgrade`.
    """
    with _transaction(bind) as connection:
        tables = set(inspect(connection).get_table_names())
        if VERSION_TABLE in tables and (head := _head_of_files()) is not None:
            stored = connection.execute(text(f"SELECT version_num FROM {VERSION_TABLE}"))
            if list(stored.scalars()) == [head]:
                return head  # already there: nothing for Alembic to do
        if VERSION_TABLE in tables or "csvdirectory_runs" in tables:
            return upgrade(connection)
        from alembic import command

        from ..models import metadata

        metadata.create_all(connection)
        command.stamp(alembic_config(connection), "head")
    return head_revision()


def downgrade(bind: Connection | Engine, revision: str) -> str | None:
    """Downgrade the extension's tables to ``revision`` (``"base"``: drop them all)."""
    from alembic import command

    with _transaction(bind) as connection:
        command.downgrade(alembic_config(connection), revision)
    return current_revision(bind)


def stamp(bind: Connection | Engine, revision: str = "head") -> None:
    """Record that the tables are at ``revision`` without changing them."""
    from alembic import command

    with _transaction(bind) as connection:
        command.stamp(alembic_config(connection), revision)


def include_object(
    obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any
) -> bool:
    """For a host's Alembic ``env.py``: leave the extension's tables to its own migrations.

    ``context.configure(..., include_object=include_object)`` keeps the host's autogenerate
    from proposing to create or drop them.
    """
    table = obj if type_ == "table" else getattr(obj, "table", None)
    table_name = getattr(table, "name", name) or ""
    return not (table_name.startswith("csvdirectory_"))


_REVISION = re.compile(r"^revision(?:: *str)? *= *[\"']([^\"']+)[\"']", re.MULTILINE)
_DOWN_REVISION = re.compile(
    r"^down_revision(?:: *[^=]+)? *= *(None|[\"']([^\"']+)[\"'])$", re.MULTILINE
)


def _head_of_files() -> str | None:
    """The head revision read from ``versions/*.py`` without Alembic (``None``: not plain,
    such as a merge revision or several heads; then ask Alembic)."""
    revisions: set[str] = set()
    parents: set[str] = set()
    for path in (Path(SCRIPT_LOCATION) / "versions").glob("*.py"):
        if path.name.startswith("__init__"):
            continue
        source = path.read_text(encoding="utf-8")
        revision, down = _REVISION.search(source), _DOWN_REVISION.search(source)
        if revision is None or down is None:  # a form this reading does not know
            return None
        revisions.add(revision.group(1))
        if down.group(2):
            parents.add(down.group(2))
    heads = revisions - parents
    return heads.pop() if len(heads) == 1 else None


def _is_unversioned_0_1_0(connection: Connection) -> bool:
    tables = set(inspect(connection).get_table_names())
    return VERSION_TABLE not in tables and "csvdirectory_runs" in tables


@contextmanager
def _connection(bind: Connection | Engine) -> Iterator[Connection]:
    """``bind`` if it is a connection, else a new connection of the engine (closed after)."""
    if isinstance(bind, Connection):
        yield bind
        return
    with bind.connect() as connection:
        yield connection


@contextmanager
def _transaction(bind: Connection | Engine) -> Iterator[Connection]:
    """A connection inside a transaction, committed on success (the caller's, if it has one)."""
    with _connection(bind) as connection:
        if connection.in_transaction():
            yield connection
            return
        with connection.begin():
            yield connection
