"""The floor: the least any importer of an Employees.csv can do, to compare the project with.

Plain ``csv`` module, then one transaction of ``executemany`` into tables equivalent to the
example platform's (``teams`` and ``users`` with the same columns written by an import, the same
unique constraints, foreign key and indexes), on a new, empty database. No validation, no plan,
no history: a lower bound, not a competitor. ``benchmarks/bench_cli.py`` runs it as a process of
its own beside each CLI run and prints the ratio.

Usage::

    python benchmarks/bench_floor.py Employees.csv --db sqlite:///floor.sqlite3
    python benchmarks/bench_floor.py Employees.csv --db postgresql://postgres@127.0.0.1/test_x
    python benchmarks/bench_floor.py Employees.csv --db sqlite:///floor.sqlite3 --bare

The database must be empty (SQLite: a new file; PostgreSQL: the tables are dropped first).
Prints one JSON line: rows and seconds measured inside the process.
"""

from __future__ import annotations

import argparse
import csv
import json
import time
import uuid
from datetime import UTC, datetime
from typing import Any

#: The example platform's teams and users, as far as an import writes them (example_app.models).
SCHEMA = """
CREATE TABLE teams (
    id {serial} PRIMARY KEY,
    name VARCHAR(200) NOT NULL UNIQUE,
    scim_id VARCHAR(36) NOT NULL UNIQUE,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL
);
CREATE INDEX ix_floor_teams_updated_at ON teams (updated_at);
CREATE TABLE users (
    id {serial} PRIMARY KEY,
    email VARCHAR(320) NOT NULL UNIQUE,
    username VARCHAR(320),
    employee_id VARCHAR(100) UNIQUE,
    first_name VARCHAR(200) NOT NULL,
    last_name VARCHAR(200) NOT NULL,
    title VARCHAR(200) NOT NULL,
    team_id INTEGER REFERENCES teams (id),
    manager_id INTEGER REFERENCES users (id),
    active BOOLEAN NOT NULL,
    role VARCHAR(20) NOT NULL,
    sees_all_teams BOOLEAN NOT NULL,
    scim_id VARCHAR(36) UNIQUE,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL
);
CREATE INDEX ix_floor_users_team_id ON users (team_id);
CREATE INDEX ix_floor_users_updated_at ON users (updated_at);
CREATE INDEX ix_floor_users_email_lower ON users (lower(email));
CREATE UNIQUE INDEX ix_floor_users_login ON users (lower(coalesce(username, email)));
CREATE INDEX ix_floor_users_id_scim_id ON users (id, scim_id);
"""
#: ``--bare``: the same columns, but only the primary keys and a unique email (no foreign key,
#: no other index): the floor of the insert alone, before the host's schema adds its costs.
BARE_SCHEMA = """
CREATE TABLE teams (
    id {serial} PRIMARY KEY,
    name VARCHAR(200) NOT NULL,
    scim_id VARCHAR(36) NOT NULL,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL
);
CREATE TABLE users (
    id {serial} PRIMARY KEY,
    email VARCHAR(320) NOT NULL UNIQUE,
    username VARCHAR(320),
    employee_id VARCHAR(100),
    first_name VARCHAR(200) NOT NULL,
    last_name VARCHAR(200) NOT NULL,
    title VARCHAR(200) NOT NULL,
    team_id INTEGER,
    manager_id INTEGER,
    active BOOLEAN NOT NULL,
    role VARCHAR(20) NOT NULL,
    sees_all_teams BOOLEAN NOT NULL,
    scim_id VARCHAR(36),
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL
);
"""
PEOPLE = (
    "INSERT INTO users (email, employee_id, first_name, last_name, title, team_id, active, role,"
    " sees_all_teams, scim_id, created_at, updated_at)"
    " VALUES ({p}, {p}, {p}, {p}, {p}, {p}, {p}, {p}, {p}, {p}, {p}, {p})"
)
TEAMS = "INSERT INTO teams (name, scim_id, created_at, updated_at) VALUES ({p}, {p}, {p}, {p})"


def connect(url: str) -> tuple[Any, str, str]:
    """A DB-API connection, its parameter marker and its auto-increment type."""
    if url.startswith("sqlite:///"):
        import sqlite3

        return sqlite3.connect(url.removeprefix("sqlite:///")), "?", "INTEGER"
    import psycopg

    connection = psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"))
    with connection.transaction():
        connection.execute("DROP TABLE IF EXISTS users, teams CASCADE")
    return connection, "%s", "SERIAL"


def load(path: str, url: str, bare: bool = False) -> int:
    """Read ``path`` with the csv module and insert its teams and people in one transaction
    (``bare``: into tables with no index but the primary keys and the unique email)."""
    connection, marker, serial = connect(url)
    now = datetime.now(UTC).replace(tzinfo=None)
    with open(path, newline="", encoding="utf-8") as file:
        reader = csv.reader(file)
        header = next(reader)
        column = {name: index for index, name in enumerate(header)}
        rows = list(reader)
    cursor = connection.cursor()
    for statement in (BARE_SCHEMA if bare else SCHEMA).format(serial=serial).split(";"):
        if statement.strip():
            cursor.execute(statement)
    team_names = sorted({row[column["team"]] for row in rows})
    cursor.executemany(
        TEAMS.format(p=marker), [(name, str(uuid.uuid4()), now, now) for name in team_names]
    )
    cursor.execute("SELECT name, id FROM teams")
    team_ids = dict(cursor.fetchall())
    email, employee_id = column["email"], column["employee_id"]
    first, last, title, team = (
        column["first_name"], column["last_name"], column["title"], column["team"]
    )
    cursor.executemany(
        PEOPLE.format(p=marker),
        [
            (row[email].lower(), row[employee_id], row[first], row[last], row[title],
             team_ids[row[team]], True, "employee", False, str(uuid.uuid4()), now, now)
            for row in rows
        ],
    )
    connection.commit()
    connection.close()
    return len(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("employees", help="an Employees.csv (email, employee_id, first_name, ...)")
    parser.add_argument("--db", required=True, help="sqlite:///FILE or a PostgreSQL URL")
    parser.add_argument(
        "--bare", action="store_true", help="only the primary keys and a unique email"
    )
    args = parser.parse_args()
    started = time.perf_counter()
    rows = load(args.employees, args.db, args.bare)
    print(json.dumps({"rows": rows, "seconds": round(time.perf_counter() - started, 3)}))


if __name__ == "__main__":
    main()
