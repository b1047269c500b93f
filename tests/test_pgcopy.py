"""The PostgreSQL paths of the SQLAlchemy adapter: bulk inserts and the snapshot read.

Inserts go through COPY on PostgreSQL (binary when the values allow it), INSERTs elsewhere;
whichever way the rows go in, the directory holds the same values on both stacks, and binary
COPY is chosen only when every value has its column's binary form, else the COPY stays in text.
The snapshot streams people through a server-side cursor on PostgreSQL and reads them all.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    Uuid,
    create_engine,
    event,
    func,
    select,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from example_app.models import Team, User, db, manager_teams
from flask_csvdirectory import (
    AccessMapping,
    PersonMapping,
    Role,
    SQLAlchemyDirectoryAdapter,
    runs,
)
from flask_csvdirectory.adapters import pgcopy
from flask_csvdirectory.adapters import sqlalchemy as sqlalchemy_adapter
from flask_csvdirectory.adapters.pgcopy import _binary_types, _has_binary_dumper, copy_rows
from flask_csvdirectory.changes import Change, ChangeKind, ChangeSet

from .conftest import ADMIN, POSTGRES_URL, _empty_postgres, require_services
from .factories import admin_row, employee, employees_csv, users_csv

PEOPLE, MANAGERS = 150, 60
TEAMS = [f"Team {n}" for n in range(5)]


@pytest.mark.settings(CSVDIRECTORY_DEFAULT_APPROVAL_THRESHOLD=10**6)
def test_a_bulk_first_import_stores_every_value_on_both_stacks(
    app: Flask, stack: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    chosen: dict[str, bool] = {}

    def spy(connection: Any, target: str, columns: Any, rows: Any) -> list[int] | None:
        oids = _binary_types(connection, target, columns, rows)
        chosen[target.strip('"')] = oids is not None
        return oids

    monkeypatch.setattr(pgcopy, "_binary_types", spy)
    people = [employee(n, team=TEAMS[n % 5], title=f"Title {n}") for n in range(PEOPLE)]
    managers = [
        {"email": f"person{n}@example.com", "name": f"Manager {n}", "role": "Manager",
         "teams": ";".join(TEAMS[(n + k) % 5] for k in range(2))}
        for n in range(MANAGERS)
    ]
    with app.app_context():
        before = datetime.now(UTC).replace(tzinfo=None) - timedelta(seconds=1)
        run = runs.start_run(
            "default", runs.Upload("Users.csv", users_csv([admin_row(), *managers])),
            runs.Upload("Employees.csv", employees_csv(people)), ADMIN,
        )
        assert run.status == "Auto-Approved", run.error_reason
        team_names = dict(db.session.execute(select(Team.id, Team.name)).all())
        stored = {
            user.email: user
            for user in db.session.scalars(select(User).where(User.email.like("person%")))
        }
        assert len(stored) == PEOPLE
        for n, row in enumerate(people):
            user = stored[row["email"]]
            assert (user.employee_id, user.first_name, user.last_name, user.title) == (
                row["employee_id"], row["first_name"], row["last_name"], f"Title {n}"
            )
            assert team_names[user.team_id] == row["team"]
            assert user.active is True and user.sees_all_teams is False
            assert user.role == ("manager" if n < MANAGERS else "employee")
            assert uuid.UUID(user.scim_id)
            assert user.created_at >= before and user.created_at.tzinfo is None
        links = db.session.execute(select(manager_teams.c.user_id, manager_teams.c.team_id)).all()
        by_id = {user.id: email for email, user in stored.items()}
        assert sorted((by_id[p], team_names[t]) for p, t in links) == sorted(
            (f"person{n}@example.com", TEAMS[(n + k) % 5])
            for n in range(MANAGERS) for k in range(2)
        )  # 120 links: enough for a COPY on PostgreSQL
    # PostgreSQL: people and links went in by binary COPY (the example's values all fit)
    assert chosen == ({"users": True, "manager_teams": True} if stack == "postgres" else {})


@pytest.fixture
def pg_table() -> Iterator[tuple[Any, Table]]:
    require_services()
    _empty_postgres()
    metadata = MetaData()
    table = Table(
        "copy_probe", metadata,
        Column("id", Integer, primary_key=True),
        Column("ref", Uuid),
        Column("name", String(50)),
        Column("at", DateTime),
        Column("at_tz", DateTime(timezone=True)),
    )
    engine = create_engine(POSTGRES_URL)
    metadata.create_all(engine)
    yield engine, table
    engine.dispose()


@pytest.mark.realstack
def test_binary_copy_only_when_every_value_has_its_binary_form(
    pg_table: tuple[Any, Table],
) -> None:
    engine, table = pg_table
    names = ["ref", "name", "at", "at_tz"]
    columns = list(names)
    naive, aware = datetime(2026, 1, 2, 3, 4, 5), datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    fits = [(uuid.uuid4(), f"n{n}", naive, aware) for n in range(3)]
    with engine.connect() as connection:
        target = '"copy_probe"'
        # varchar goes as text where this psycopg has no binary varchar dumper (3.1)
        adapters = connection.connection.driver_connection.adapters
        varchar = 1043 if _has_binary_dumper(adapters, 1043) else 25
        assert _binary_types(connection, target, columns, fits) == [2950, varchar, 1114, 1184]
        assert _binary_types(connection, target, columns, [(None, None, None, None)]) is not None
        for misfit in (
            (str(uuid.uuid4()), "n", naive, aware),  # text for a uuid: the server parses it
            (uuid.uuid4(), 7, naive, aware),  # an int for a varchar
            (uuid.uuid4(), "n", aware, aware),  # a time zone for a timestamp without one
            (uuid.uuid4(), "n", naive, naive),  # none for a timestamp with one
        ):
            assert _binary_types(connection, target, columns, [*fits, misfit]) is None


@pytest.mark.realstack
def test_copy_stores_the_same_rows_in_binary_and_in_text(pg_table: tuple[Any, Table]) -> None:
    engine, table = pg_table
    names = ["id", "ref", "name", "at", "at_tz"]
    at = datetime(2026, 1, 2, 3, 4, 5)
    binary = [
        (n, uuid.UUID(int=n), f"name {n}\t\\ \n", at + timedelta(minutes=n),
         (at + timedelta(minutes=n)).replace(tzinfo=UTC))
        for n in range(150)
    ]
    text = [(n + 1000, str(ref), *rest) for n, ref, *rest in binary]  # str refs: text COPY
    with engine.begin() as connection:
        assert copy_rows(connection, table, names, binary)
        assert copy_rows(connection, table, names, text)
        assert not copy_rows(connection, table, names, binary[:99])  # too few: plain INSERTs
    with engine.connect() as connection:
        stored = connection.execute(select(table).order_by(table.c.id)).all()
    assert [tuple(row) for row in stored] == [
        *binary, *((n, uuid.UUID(ref), *rest) for n, ref, *rest in text)
    ]


@pytest.mark.settings(CSVDIRECTORY_DEFAULT_APPROVAL_THRESHOLD=10**6)
def test_the_snapshot_streams_people_in_chunks_and_reads_them_all(
    app: Flask, stack: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    people = [employee(n, team=TEAMS[n % 5]) for n in range(PEOPLE)]
    with app.app_context():
        run = runs.start_run(
            "default", runs.Upload("Users.csv", users_csv()),
            runs.Upload("Employees.csv", employees_csv(people)), ADMIN,
        )
        assert run.status == "Auto-Approved", run.error_reason
        adapter = app.extensions["csvdirectory"].adapter
        whole = adapter.snapshot("default")
        db.session.rollback()

        cursors: list[str | None] = []

        def seen(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
            if statement.lstrip().startswith("SELECT users.id"):
                cursors.append(getattr(cursor, "name", None))

        monkeypatch.setattr(sqlalchemy_adapter, "CHUNK", 40)  # four fetches of 40, then 30
        event.listen(db.engine, "before_cursor_execute", seen)
        try:
            chunked = adapter.snapshot("default")
        finally:
            event.remove(db.engine, "before_cursor_execute", seen)
        assert len(chunked.people) == db.session.scalar(select(func.count()).select_from(User))
        assert len(chunked.people) > PEOPLE  # the imported people and the seeded ones
        assert chunked.people == whole.people and chunked.access == whole.access
        # PostgreSQL: a named (server-side) cursor, the result never whole in the client
        assert len(cursors) == 1 and bool(cursors[0]) == (stack == "postgres")


class _ScopeBase(DeclarativeBase):
    pass


_stamped_scope = Table(
    "stamped_scope",
    _ScopeBase.metadata,
    Column("member_id", ForeignKey("stamped_members.pk"), primary_key=True),
    Column("group_id", ForeignKey("stamped_groups.pk"), primary_key=True),
    # a Python-side default that is not a plain value, NOT NULL: a COPY of the two key
    # columns alone would leave it NULL
    Column("created_at", DateTime, nullable=False, default=lambda: datetime.now(UTC)),
)


class _StampedGroup(_ScopeBase):
    __tablename__ = "stamped_groups"
    pk: Mapped[int] = mapped_column(primary_key=True)
    label: Mapped[str] = mapped_column(String(100))


class _StampedMember(_ScopeBase):
    __tablename__ = "stamped_members"
    pk: Mapped[int] = mapped_column(primary_key=True)
    mail: Mapped[str] = mapped_column(String(200))
    given: Mapped[str] = mapped_column(String(100), default="")
    family: Mapped[str] = mapped_column(String(100), default="")
    group_pk: Mapped[int | None] = mapped_column(ForeignKey("stamped_groups.pk"), nullable=True)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    level: Mapped[int] = mapped_column(default=0)
    everywhere: Mapped[bool] = mapped_column(Boolean, default=False)
    groups: Mapped[list[_StampedGroup]] = relationship(secondary=_stamped_scope)


@pytest.mark.parametrize("stack", ["sqlite", "postgres"])
def test_many_scope_links_keep_the_scope_tables_python_defaults(
    stack: str, tmp_path: Any
) -> None:
    """Over a hundred manager scopes at once (the bulk path) into a host scope table with a
    NOT NULL column filled by a Python-side function default: every link is stored, stamped."""
    if stack == "postgres":
        require_services()
        _empty_postgres()
        url = POSTGRES_URL
    else:
        url = f"sqlite:///{tmp_path / 'scopes.sqlite3'}"
    app = Flask(__name__)
    app.config["SQLALCHEMY_DATABASE_URI"] = url
    host = SQLAlchemy(model_class=_ScopeBase)
    host.init_app(app)
    adapter = SQLAlchemyDirectoryAdapter(
        host, person_model=_StampedMember, team_model=_StampedGroup,
        person=PersonMapping(email="mail", first_name="given", last_name="family", title=None,
                             external_id=None, team_id="group_pk", active="enabled"),
        access=AccessMapping(role="level", role_values={Role.ADMIN: 2, Role.MANAGER: 1},
                             no_access=0, all_teams="everywhere", scope="groups"),
        team_name="label",
    )
    with app.app_context():
        _ScopeBase.metadata.create_all(host.engine)
        try:
            teams = [f"T{n}" for n in range(3)]
            changes = [Change(ChangeKind.TEAM_CREATED, team, after={"name": team})
                       for team in teams]
            for n in range(60):  # 60 managers x 2 teams = 120 links
                email = f"m{n}@example.com"
                changes.append(Change(ChangeKind.ACCESS_GRANTED, email, after={
                    "email": email, "name": f"M {n}", "role": "Manager", "teams": teams[:2]}))
            adapter.apply("default", ChangeSet.of(changes))
            stamps = host.session.execute(select(_stamped_scope.c.created_at)).scalars().all()
            assert len(stamps) == 120
            assert all(stamp is not None for stamp in stamps)
        finally:
            host.session.rollback()
            _ScopeBase.metadata.drop_all(host.engine)
            host.engine.dispose()
