"""PostgreSQL bulk inserts for the SQLAlchemy adapter: ``COPY ... FROM STDIN`` with psycopg 3.

Binary ``COPY`` when every value fits its column's binary form, text ``COPY`` otherwise. Binary
is measured at about a fifth of text's client CPU for the example platform's people (psycopg
then dumps each value with the one dumper of its column, not one looked up per value) and the
server parses no text; a value binary cannot take as it is (a ``str`` for a ``uuid`` column, an
aware datetime for a ``timestamp``) keeps the whole ``COPY`` in text, as before.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import date, datetime
from decimal import Decimal
from operator import attrgetter, itemgetter
from typing import Any

from ..checkpoints import checkpoint

#: Fewer rows than this go through plain INSERTs (a COPY's set-up is not worth it).
MIN_ROWS = 100

_NAIVE, _AWARE = "naive", "aware"
#: PostgreSQL type oid -> the Python types whose values psycopg dumps in that binary form
#: (``_NAIVE``/``_AWARE``: a datetime without/with a time zone). Other types: text COPY.
BINARY_FORMS: dict[int, tuple[type, ...] | str] = {
    16: (bool,),  # boolean
    17: (bytes,),  # bytea
    20: (int,),  # bigint
    21: (int,),  # smallint
    23: (int,),  # integer
    25: (str,),  # text
    700: (float,),  # real
    701: (float,),  # double precision
    1042: (str,),  # character
    1043: (str,),  # character varying
    1082: (date,),  # date
    1114: _NAIVE,  # timestamp without time zone
    1184: _AWARE,  # timestamp with time zone
    1700: (Decimal,),  # numeric
    2950: (uuid.UUID,),  # uuid
}


#: ``text``, and the types whose binary form is text's: dumped as ``text`` where this psycopg has
#: no binary dumper of their own (psycopg 3.1 has none for ``varchar``).
_TEXT = 25
_SAME_AS_TEXT = frozenset({1043})


def copy_supported(connection: Any) -> bool:
    """Whether ``connection`` (SQLAlchemy) is PostgreSQL through psycopg 3."""
    dialect = connection.dialect
    return bool(dialect.name == "postgresql" and dialect.driver == "psycopg")


def copy_rows(
    connection: Any, table: Any, names: Sequence[str], rows: Sequence[Sequence[Any]]
) -> bool:
    """``COPY table (names) FROM STDIN`` of ``rows`` (values in ``names`` order, already
    converted as SQLAlchemy would bind them), inside the connection's transaction.

    Returns False, doing nothing, when the database is not PostgreSQL with psycopg 3 or there
    are fewer than :data:`MIN_ROWS` rows.
    """
    if len(rows) < MIN_ROWS or not copy_supported(connection):
        return False
    preparer = connection.dialect.identifier_preparer
    target = preparer.format_table(table)
    statement = "COPY {} ({}) FROM STDIN".format(
        target, ", ".join(preparer.quote(table.columns[name].name) for name in names)
    )
    oids = _binary_types(connection, target, [table.columns[name].name for name in names], rows)
    if oids is not None:
        statement += " (FORMAT BINARY)"
    with connection.connection.driver_connection.cursor() as cursor:
        with cursor.copy(statement) as copy_in:
            if oids is not None:
                copy_in.set_types(oids)
            middle = len(rows) // 2
            for number, values in enumerate(rows):
                if number == middle:  # fault tests strike in the middle of a COPY
                    checkpoint("apply:copy")
                copy_in.write_row(values)
    return True


def _binary_types(
    connection: Any, target: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]
) -> list[int] | None:
    """The type oids of ``columns`` of the table, when every value of ``rows`` has the binary
    form of its column (:data:`BINARY_FORMS`); else None."""
    found = dict(
        connection.exec_driver_sql(
            "SELECT attname, atttypid::int FROM pg_attribute "
            "WHERE attrelid = %(table)s::regclass AND attnum > 0 AND NOT attisdropped",
            {"table": target},
        ).all()
    )
    oids = [found.get(column) for column in columns]
    adapters = connection.connection.driver_connection.adapters
    dump_oids: list[int] = []
    for position, oid in enumerate(oids):
        form = BINARY_FORMS.get(oid) if oid is not None else None
        if form is None:
            return None
        if _has_binary_dumper(adapters, oid):
            dump_oids.append(oid)  # type: ignore[arg-type]
        elif oid in _SAME_AS_TEXT and _has_binary_dumper(adapters, _TEXT):
            dump_oids.append(_TEXT)
        else:
            return None
        kinds = set(map(type, map(itemgetter(position), rows)))  # C loops: no Python per value
        kinds.discard(type(None))
        if not kinds.issubset(form if isinstance(form, tuple) else (datetime,)):
            return None
        if isinstance(form, str):  # a datetime's binary form depends on its time zone
            zones = set(map(attrgetter("tzinfo"), filter(None, map(itemgetter(position), rows))))
            if not (zones <= {None} if form == _NAIVE else None not in zones):
                return None
    return dump_oids


def _has_binary_dumper(adapters: Any, oid: int | None) -> bool:
    """Whether this psycopg dumps values of type ``oid`` in binary (``set_types`` needs it)."""
    from psycopg import ProgrammingError
    from psycopg.pq import Format

    try:
        adapters.get_dumper_by_oid(oid, Format.BINARY)
    except ProgrammingError:
        return False
    return True
