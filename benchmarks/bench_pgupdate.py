"""Ways to update many rows by primary key on PostgreSQL: prints figures, asserts nothing.

A table shaped like the example platform's people (primary key, unique email, title, active,
team, an indexed ``updated_at``) holds ``--table-rows`` rows; then 1k, 10k and 100k of them get a
new title (some NULL), active flag and ``updated_at`` by each way, in a transaction rolled back
afterwards (best of ``--repeat``: wall seconds and the client's CPU seconds):

- ``executemany``: the adapter's former path, ``UPDATE ... WHERE pk = :_pk`` in chunks of 5,000;
- ``values``: one ``UPDATE ... FROM (VALUES ...)`` per chunk (typed first row, < 65,535 binds);
- ``unnest``: one ``UPDATE ... FROM unnest(%s::type[], ...)`` with one array per column;
- ``copy+update``: the adapter's path now, :func:`flask_csvdirectory.adapters.pgupdate.update_rows`
  (COPY into a temporary table, one ``UPDATE ... FROM``).

Usage::

    python benchmarks/bench_pgupdate.py --db postgresql+psycopg://postgres@127.0.0.1:5432/test_x

The table ``bench_pgupdate_people`` is created and dropped in that database.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    Integer,
    MetaData,
    String,
    Table,
    bindparam,
    create_engine,
    update,
)

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from flask_csvdirectory.adapters.pgupdate import update_rows  # noqa: E402

CHUNK = 5000
metadata = MetaData()
people = Table(
    "bench_pgupdate_people", metadata,
    Column("id", Integer, primary_key=True),
    Column("email", String(320), unique=True),
    Column("title", String(200)),
    Column("active", Boolean),
    Column("team_id", Integer),
    Column("updated_at", DateTime, index=True),
)
Columns = dict[str, list[Any]]


def executemany(connection: Any, keys: Sequence[int], columns: Columns) -> None:
    statement = update(people).where(people.c.id == bindparam("_pk")).values(
        {name: bindparam(name) for name in columns}
    )
    names = [*columns, "_pk"]
    rows = [dict(zip(names, row, strict=True)) for row in zip(*columns.values(), keys, strict=True)]
    for start in range(0, len(rows), CHUNK):
        connection.execute(statement, rows[start : start + CHUNK])


def _types(connection: Any, names: Sequence[str]) -> dict[str, str]:
    return {name: people.c[name].type.compile(dialect=connection.dialect) for name in names}


def values(connection: Any, keys: Sequence[int], columns: Columns) -> None:
    names = ["id", *columns]
    types = _types(connection, names)
    rows = list(zip(keys, *columns.values(), strict=True))
    chunk = min(CHUNK, 65_535 // len(names))
    for start in range(0, len(rows), chunk):
        part = rows[start : start + chunk]
        first = "(" + ", ".join(f"CAST(%s AS {types[name]})" for name in names) + ")"
        other = "(" + ", ".join(["%s"] * len(names)) + ")"
        connection.exec_driver_sql(
            "UPDATE bench_pgupdate_people SET "
            + ", ".join(f"{name} = v.{name}" for name in columns)
            + " FROM (VALUES " + ", ".join([first] + [other] * (len(part) - 1))
            + ") AS v(" + ", ".join(names) + ") WHERE bench_pgupdate_people.id = v.id",
            tuple(value for row in part for value in row),
        )


def unnest(connection: Any, keys: Sequence[int], columns: Columns) -> None:
    names = ["id", *columns]
    types = _types(connection, names)
    connection.exec_driver_sql(
        "UPDATE bench_pgupdate_people SET "
        + ", ".join(f"{name} = v.{name}" for name in columns)
        + " FROM unnest(" + ", ".join(f"%s::{types[name]}[]" for name in names)
        + ") AS v(" + ", ".join(names) + ") WHERE bench_pgupdate_people.id = v.id",
        (list(keys), *columns.values()),
    )


def copy_update(connection: Any, keys: Sequence[int], columns: Columns) -> None:
    assert update_rows(connection, people, keys, columns)


WAYS: dict[str, Callable[[Any, Sequence[int], Columns], None]] = {
    "executemany": executemany,
    "values": values,
    "unnest": unnest,
    "copy+update": copy_update,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", required=True, help="postgresql+psycopg://... URL")
    parser.add_argument("--table-rows", type=int, default=100_000)
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    engine = create_engine(args.db)
    metadata.drop_all(engine)
    metadata.create_all(engine)
    at = datetime(2026, 1, 1)
    with engine.begin() as connection:
        cursor = connection.connection.driver_connection.cursor()
        statement = "COPY bench_pgupdate_people (id, email, title, active, team_id, updated_at) "
        with cursor.copy(statement + "FROM STDIN") as copy:
            for n in range(1, args.table_rows + 1):
                copy.write_row((n, f"p{n}@example.com", f"Title {n}", True, n % 200, at))
    vacuum = engine.execution_options(isolation_level="AUTOCOMMIT")
    with vacuum.connect() as connection:
        connection.exec_driver_sql("VACUUM ANALYZE bench_pgupdate_people")
    print(f"PostgreSQL: update n of {args.table_rows:,} rows (title, active, updated_at); "
          f"best of {args.repeat}, wall s / client CPU s")
    try:
        for size in map(int, args.sizes.split(",")):
            keys = list(range(1, size + 1))
            columns: Columns = {
                "title": [None if key % 7 == 0 else f"New {key}" for key in keys],
                "active": [key % 3 != 0 for key in keys],
                "updated_at": [datetime(2026, 2, 1)] * size,
            }
            for name, way in WAYS.items():
                best: tuple[float, float] | None = None
                for _ in range(args.repeat):
                    with engine.connect() as connection:
                        transaction = connection.begin()
                        wall, cpu = time.perf_counter(), time.process_time()
                        way(connection, keys, columns)
                        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
                        transaction.rollback()
                    if best is None or wall < best[0]:
                        best = (wall, cpu)
                    with vacuum.connect() as connection:  # the rolled back rows: dead tuples
                        connection.exec_driver_sql("VACUUM bench_pgupdate_people")
                assert best is not None
                print(f"  {size:>7,} {name:<12} {best[0]:7.3f} s {best[1]:7.3f} cpu", flush=True)
    finally:
        metadata.drop_all(engine)
        engine.dispose()


if __name__ == "__main__":
    main()
