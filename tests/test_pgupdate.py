"""The PostgreSQL update path of the SQLAlchemy adapter: COPY into a temporary table, then one
``UPDATE ... FROM``, instead of an executemany of ``UPDATE ... WHERE pk = :pk``.

Both paths must leave exactly the same rows: NULLs, empty strings, booleans, integers, naive and
aware timestamps, on a host model whose primary key has another name (as attribute and column).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import Boolean, DateTime, Integer, String, insert, select
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from example_app.models import User, db
from flask_csvdirectory import PersonMapping, SQLAlchemyDirectoryAdapter, runs
from flask_csvdirectory.adapters import pgupdate
from flask_csvdirectory.adapters import sqlalchemy as sqlalchemy_adapter

from .conftest import ADMIN, POSTGRES_URL, _empty_postgres, require_services
from .factories import admin_row, employee, employees_csv, users_csv

ROWS = 240
AT = datetime(2026, 3, 4, 5, 6, 7, 123456)


class Base(DeclarativeBase):
    pass


class Worker(Base):
    """A host model whose key is neither ``id`` nor named the same as its column."""

    __tablename__ = "probe_workers"
    worker_key: Mapped[int] = mapped_column("WorkerKey", Integer, primary_key=True)
    mail: Mapped[str] = mapped_column(String(200), unique=True)
    nick: Mapped[str | None] = mapped_column("Nick Name", String(50), nullable=True)
    note: Mapped[str] = mapped_column(String(50), default="")
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    level: Mapped[int | None] = mapped_column(Integer, nullable=True)
    seen_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    seen_at_tz: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    #: a Python-side onupdate: Core's UPDATE sets it on every updated row, so must the COPY
    stamp: Mapped[str] = mapped_column(String(20), default="new", onupdate="touched")


def _seed() -> list[dict[str, Any]]:
    return [
        {"worker_key": 10_000 + n, "mail": f"w{n}@example.com", "nick": f"nick {n}",
         "note": f"note {n}", "enabled": n % 2 == 0, "level": n, "seen_at": AT,
         "seen_at_tz": AT.replace(tzinfo=UTC), "stamp": "new"}
        for n in range(ROWS)
    ]


def _changes(keys: list[int]) -> dict[str, list[Any]]:
    """New values for ``keys``: NULLs, empty strings, tabs and backslashes, flipped booleans,
    integers (zero and negative), timestamps moved (and NULL)."""
    count = len(keys)
    return {
        "nick": [
            None if n % 3 == 0 else ("" if n % 3 == 1 else f"x\t\\ {n}\n")
            for n in range(count)
        ],
        "note": ["" if n % 2 else "changed" for n in range(count)],
        "enabled": [n % 2 == 1 for n in range(count)],
        "level": [None if n % 5 == 0 else -n for n in range(count)],
        "seen_at": [None if n % 7 == 0 else AT + timedelta(days=n) for n in range(count)],
        "seen_at_tz": [
            None if n % 4 == 0 else (AT + timedelta(hours=n)).replace(tzinfo=UTC)
            for n in range(count)
        ],
    }


@pytest.fixture
def worker_adapter() -> Iterator[SQLAlchemyDirectoryAdapter]:
    require_services()
    _empty_postgres()
    app = Flask("probe")
    app.config["SQLALCHEMY_DATABASE_URI"] = POSTGRES_URL
    probe_db = SQLAlchemy(model_class=Base)
    probe_db.init_app(app)
    adapter = SQLAlchemyDirectoryAdapter(
        probe_db, person_model=Worker, person=PersonMapping(email="mail", active="enabled")
    )
    with app.app_context():
        probe_db.create_all()
        yield adapter
        probe_db.session.remove()
        probe_db.engine.dispose()


def _stored(adapter: SQLAlchemyDirectoryAdapter) -> list[tuple[Any, ...]]:
    session = adapter.session
    table = Worker.__table__
    return [tuple(row) for row in session.execute(select(table).order_by(table.c.WorkerKey))]


def _updated(
    adapter: SQLAlchemyDirectoryAdapter, keys: list[Any], columns: dict[str, list[Any]],
    *, copy: bool, monkeypatch: pytest.MonkeyPatch,
) -> tuple[list[tuple[Any, ...]], int]:
    """The rows after ``_update_columns`` by the COPY path (``copy``) or the executemany one,
    and how many times the COPY path ran; the update is rolled back."""
    session = adapter.session
    session.execute(insert(Worker), _seed())  # ORM bulk insert: attribute names
    calls = []

    def spy(*args: Any) -> bool:
        done = copy and pgupdate.update_rows(*args)
        calls.append(done)
        return done

    monkeypatch.setattr(sqlalchemy_adapter, "update_rows", spy)
    adapter._update_columns(Worker, keys, columns)
    rows = _stored(adapter)
    session.rollback()
    return rows, sum(calls)


@pytest.mark.realstack
def test_the_copy_update_leaves_the_same_rows_as_the_executemany(
    worker_adapter: SQLAlchemyDirectoryAdapter, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys = [10_000 + n for n in range(0, ROWS, 2)] + [10_001]  # every other row, and one more
    columns = _changes(keys)
    by_copy, copies = _updated(worker_adapter, keys, columns, copy=True, monkeypatch=monkeypatch)
    by_rows, _ = _updated(worker_adapter, keys, columns, copy=False, monkeypatch=monkeypatch)
    assert copies == 1
    assert by_copy == by_rows
    changed = {row[0]: row for row in by_copy if row[0] in set(keys)}
    assert len(changed) == len(keys)
    first, second = changed[10_000], changed[10_002]
    assert first[2:] == (None, "changed", False, None, None, None, "touched")  # NULLs set
    assert second[2:4] == ("", "")  # empty strings stay empty, not NULL
    assert second[4:6] == (True, -1) and second[6] == AT + timedelta(days=1)
    assert second[7] == (AT + timedelta(hours=1)).replace(tzinfo=UTC)
    untouched = [row for row in by_copy if row[0] not in set(keys)]
    seeded = {r["worker_key"]: tuple(r.values()) for r in _seed()}
    assert len(untouched) == ROWS - len(keys)
    assert all(row == seeded[row[0]] for row in untouched)


@pytest.mark.realstack
def test_a_key_given_twice_keeps_its_last_values_and_few_rows_use_executemany(
    worker_adapter: SQLAlchemyDirectoryAdapter, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys = [10_000 + n for n in range(150)] + [10_003]
    columns = {"note": [f"first {n}" for n in range(150)] + ["last"], "level": [1] * 151}
    by_copy, copies = _updated(worker_adapter, keys, columns, copy=True, monkeypatch=monkeypatch)
    by_rows, _ = _updated(worker_adapter, keys, columns, copy=False, monkeypatch=monkeypatch)
    assert copies == 1 and by_copy == by_rows
    assert {row[0]: row[3] for row in by_copy}[10_003] == "last"
    few = keys[:50]
    by_copy, copies = _updated(
        worker_adapter, few, {"note": ["x"] * 50}, copy=True, monkeypatch=monkeypatch
    )
    assert copies == 0  # under pgcopy.MIN_ROWS: the executemany
    assert sum(row[3] == "x" for row in by_copy) == 50


@pytest.mark.settings(
    CSVDIRECTORY_DEFAULT_APPROVAL_THRESHOLD=10**6,
    CSVDIRECTORY_MIN_SYNC_INTERVAL=timedelta(0),
    CSVDIRECTORY_DEFAULT_GUARD_REMOVAL_PERCENT=None,
    CSVDIRECTORY_DEFAULT_GUARD_REMOVAL_PEOPLE=None,
)
def test_a_changed_resync_updates_deactivates_and_moves_on_both_stacks(
    app: Flask, stack: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[bool] = []

    def spy(*args: Any) -> bool:
        done = pgupdate.update_rows(*args)
        calls.append(done)
        return done

    monkeypatch.setattr(sqlalchemy_adapter, "update_rows", spy)
    teams = ["Red", "Blue"]
    people = [employee(n, team=teams[n % 2], title=f"Title {n}") for n in range(300)]
    managers = [
        {"email": f"person{n}@example.com", "name": f"Manager {n}", "role": "Manager",
         "teams": "Red"}
        for n in range(120)
    ]
    with app.app_context():
        run = runs.start_run(
            "default", runs.Upload("Users.csv", users_csv([admin_row(), *managers])),
            runs.Upload("Employees.csv", employees_csv(people)), ADMIN,
        )
        assert run.status == "Auto-Approved", run.error_reason
        calls.clear()
        changed = [
            {**row, "title": "" if n % 2 else f"New {n}", "team": teams[(n + 1) % 2]}
            for n, row in enumerate(people[:250])
        ]  # 250 changed (titles, some emptied; all moved), 50 dropped: deactivated
        demoted = [{**m, "role": "Admin", "teams": "*"} for m in managers[:110]]
        run = runs.start_run(
            "default", runs.Upload("Users.csv", users_csv([admin_row(), *demoted])),
            runs.Upload("Employees.csv", employees_csv(changed)), ADMIN,
        )
        assert run.status == "Auto-Approved", run.error_reason
        db.session.expire_all()
        stored = {
            user.email: user
            for user in db.session.scalars(select(User).where(User.email.like("person%")))
        }
        for n in range(300):
            user = stored[f"person{n}@example.com"]
            if n < 250:
                assert user.active is True
                assert user.title == ("" if n % 2 else f"New {n}")
                assert user.team.name == teams[(n + 1) % 2]
            else:
                assert user.active is False and user.title == f"Title {n}"
            if n < 110:
                assert (user.role, user.sees_all_teams) == ("admin", True)
            else:
                assert (user.role, user.sees_all_teams) == ("employee", False)
    # PostgreSQL: the 250 updates and the 120 access changes went by COPY (the 50
    # deactivations, under pgcopy.MIN_ROWS, by executemany); SQLite: never
    assert calls.count(True) == (2 if stack == "postgres" else 0)
    assert len(calls) >= 3
