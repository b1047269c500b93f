"""PostgreSQL bulk updates by primary key for the SQLAlchemy adapter, with psycopg 3.

The new values are copied (``COPY``, binary when they allow it: :func:`.pgcopy.copy_rows`)
into a temporary table made from the target's own columns (``CREATE TEMPORARY TABLE ... AS
SELECT ... WITH NO DATA``: the same types, lengths, enums and domains, no constraints), then
one ``UPDATE target SET c = v.c ... FROM temporary AS v WHERE target.pk = v.pk`` sets them all.
Measured against an executemany of ``UPDATE ... WHERE pk = :pk`` and against one ``UPDATE ...
FROM (VALUES ...)`` or ``FROM unnest(arrays)`` per chunk (``benchmarks/bench_pgupdate.py``),
it is the fastest at 1k, 10k and 100k rows and needs almost no client CPU. Everything runs in
the connection's transaction; the temporary table is dropped after the update.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Column, MetaData, Table

from .pgcopy import MIN_ROWS, copy_rows, copy_supported


def update_rows(
    connection: Any,
    table: Any,
    keys: Sequence[Any],
    columns: Mapping[str, Sequence[Any]],
) -> bool:
    """Set ``columns`` (column key -> one value per key, as SQLAlchemy would bind them before
    its type conversions) on the rows of ``table`` whose primary key is in ``keys``.

    Returns False, doing nothing, when the database is not PostgreSQL with psycopg 3, there
    are fewer than :data:`.pgcopy.MIN_ROWS` rows, ``table`` has not exactly one primary key
    column, a column left out has an ``onupdate`` that is not a plain value (the caller's
    executemany evaluates it per row), or the role may not create temporary tables. A key
    given twice takes its last values, as an executemany leaves it.
    """
    if len(keys) < MIN_ROWS or not copy_supported(connection):
        return False
    primary = list(table.primary_key.columns)
    if len(primary) != 1 or primary[0].key in columns:
        return False
    pk = primary[0]
    new_values: dict[str, Sequence[Any]] = dict(columns)
    for column in table.columns:  # Python-side onupdate, as Core's UPDATE applies it
        if column.key in new_values or column.onupdate is None:
            continue
        if not column.onupdate.is_scalar:
            return False
        new_values[column.key] = [column.onupdate.arg] * len(keys)
    dialect = connection.dialect
    names = [pk.key, *new_values]
    by_position: list[Sequence[Any]] = []
    for name, values in ((pk.key, keys), *new_values.items()):
        processor = table.columns[name].type.bind_processor(dialect)
        if processor is not None:
            values = [None if value is None else processor(value) for value in values]
        by_position.append(values)
    rows: list[tuple[Any, ...]] = list(zip(*by_position, strict=True))
    last = {key: position for position, key in enumerate(by_position[0])}
    if len(last) != len(rows):  # a key given twice: its last values, as executemany leaves it
        rows = [rows[position] for position in sorted(last.values())]
        if len(rows) < MIN_ROWS:
            return False
    if not connection.exec_driver_sql(
        "SELECT has_database_privilege(current_database(), 'TEMPORARY')"
    ).scalar():  # a host that revoked temporary tables from its role
        return False

    preparer = dialect.identifier_preparer
    scratch = Table(
        f"csvdirectory_update_{uuid.uuid4().hex[:12]}",
        MetaData(),
        *(Column(table.columns[name].name, table.columns[name].type, key=name) for name in names),
    )
    target = preparer.format_table(table)
    temporary = preparer.format_table(scratch)
    quoted = {name: preparer.quote(table.columns[name].name) for name in names}
    connection.exec_driver_sql(
        f"CREATE TEMPORARY TABLE {temporary} ON COMMIT DROP AS SELECT "
        + ", ".join(quoted[name] for name in names)
        + f" FROM {target} WITH NO DATA"
    )
    if not copy_rows(connection, scratch, names, rows):  # pragma: no cover - checked above
        raise RuntimeError("COPY into the temporary table was refused")
    connection.exec_driver_sql(
        f"UPDATE {target} SET "
        + ", ".join(f"{quoted[name]} = v.{quoted[name]}" for name in new_values)
        + f" FROM {temporary} AS v WHERE {target}.{quoted[pk.key]} = v.{quoted[pk.key]}"
    )
    connection.exec_driver_sql(f"DROP TABLE {temporary}")
    return True
