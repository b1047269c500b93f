"""Start-up checks and a minimal host: only an email and an active flag are required.

A mapping mistake is one start-up error naming every problem with its fix; a missing Flask-Login
user_loader or layout template stops the app at start-up, not with a 500 later; a host whose
people have nothing but an email and an active flag imports, and is told what is not stored.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask_login import LoginManager, UserMixin
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import Boolean, Column, ForeignKey, Integer, String, Table, select
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from flask_csvdirectory import (
    AccessMapping,
    CSVDirectory,
    PersonMapping,
    SQLAlchemyDirectoryAdapter,
    runs,
)
from flask_csvdirectory.errors import ConfigurationError
from flask_csvdirectory.records import FIELD_NOTES, OPTIONAL_FIELDS

from .factories import USER_HEADER, employee, employees_csv, to_csv, users_csv


def host(tmp_path: Path, **config: Any) -> tuple[Flask, SQLAlchemy, LoginManager]:
    app = Flask("host")
    app.config.update(
        TESTING=True,
        SECRET_KEY="s",
        SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path / 'host.sqlite3'}",
        CSVDIRECTORY_JOBS_MODE="sync",
        **config,
    )

    class Base(DeclarativeBase):
        pass

    db = SQLAlchemy(model_class=Base)
    db.init_app(app)
    login = LoginManager(app)
    return app, db, login


# -- a minimal host ------------------------------------------------------------------------


@pytest.fixture
def minimal(tmp_path: Path) -> Iterator[tuple[Flask, Any, CSVDirectory]]:
    app, db, login = host(tmp_path)

    class Person(UserMixin, db.Model):  # type: ignore[name-defined, misc]
        __tablename__ = "people"
        id: Mapped[int] = mapped_column(primary_key=True)
        email: Mapped[str] = mapped_column(String(320), unique=True)
        active: Mapped[bool] = mapped_column(Boolean, default=True)

    login.user_loader(lambda user_id: db.session.get(Person, int(user_id)))
    extension = CSVDirectory(app, adapter=SQLAlchemyDirectoryAdapter(db, person_model=Person))
    extension.admin_checker(lambda user: user.email == "boss@example.com")
    with app.app_context():
        db.create_all()
        extension.create_all()
        db.session.add(Person(email="boss@example.com"))
        db.session.commit()
        runs.update_settings("default", runs.Actor(None, "t"), enabled=True)
        yield app, Person, extension
        db.session.remove()
        db.engine.dispose()


def sync(employees: bytes) -> Any:
    users = to_csv(USER_HEADER, [["boss@example.com", "Boss", "Admin", "*"]])
    return runs.dry_run(
        "default", runs.Upload("Users.csv", users), runs.Upload("Employees.csv", employees)
    )


def test_a_model_with_only_email_and_active_imports_and_converges(
    minimal: tuple[Flask, Any, CSVDirectory],
) -> None:
    app, Person, extension = minimal
    adapter = extension.adapter
    assert adapter.configuration_problems() == []
    assert adapter.fields == frozenset()
    assert adapter.notes() == [FIELD_NOTES[name] for name in sorted(OPTIONAL_FIELDS)]

    rows = employees_csv([employee(1), employee(2, team="Support", title="Lead")])
    changeset = sync(rows + b"").changeset
    kinds = {change.kind.value for change in changeset.changes}
    assert kinds == {"employee_created"}  # no team, no access: the host stores neither
    assert [c.after for c in changeset.changes] == [
        {"email": "person1@example.com", "extra": {}},
        {"email": "person2@example.com", "extra": {}},
    ]
    app.extensions["csvdirectory"].adapter.apply("default", changeset)
    assert sync(rows).changeset.count == 0  # nothing left to change: it converged

    only_one = employees_csv([employee(1)])
    second = sync(only_one).changeset
    assert [(c.kind.value, c.subject) for c in second.changes] == [
        ("employee_deactivated", "person2@example.com")
    ]
    adapter.apply("default", second)
    session = app.extensions["sqlalchemy"].session
    deactivated = select(Person.active).where(Person.email == "person2@example.com")
    assert session.scalar(deactivated) is False


def test_the_templates_page_says_what_is_not_stored(
    minimal: tuple[Flask, Any, CSVDirectory],
) -> None:
    app, _Person, _extension = minimal
    client = app.test_client()
    with client.session_transaction() as session:
        session["_user_id"] = "1"
        session["_fresh"] = True
    page = client.get("/settings/integrations/csv-import/templates")
    assert page.status_code == 200
    text = page.get_data(as_text=True)
    assert "What this platform does not store" in text
    assert "Teams are not stored: the team column is checked" in text
    # the extension's own plain layout: the host has no base.html
    assert '<main class="csvd-page">' in text
    settings = client.get("/settings/integrations/csv-import/")
    assert settings.status_code == 200


# -- one error naming every mapping problem --------------------------------------------------


def test_every_mapping_mistake_is_listed_in_one_start_up_error(tmp_path: Path) -> None:
    app, db, login = host(tmp_path)
    login.user_loader(lambda user_id: None)

    class Team(db.Model):  # type: ignore[name-defined, misc]
        __tablename__ = "teams"
        id: Mapped[int] = mapped_column(primary_key=True)
        label: Mapped[str] = mapped_column(String(100))

    class Person(db.Model):  # type: ignore[name-defined, misc]
        __tablename__ = "people"
        id: Mapped[int] = mapped_column(primary_key=True)
        mail: Mapped[str] = mapped_column(String(320))
        active: Mapped[str] = mapped_column(String(10))
        team_id: Mapped[int | None] = mapped_column(ForeignKey("teams.id"))
        role: Mapped[str] = mapped_column(String(20))
        scoped_teams: Mapped[Team | None] = relationship()

        @property
        def given_name(self) -> str:
            return ""

    adapter = SQLAlchemyDirectoryAdapter(
        db,
        person_model=Person,
        team_model=Team,
        person=PersonMapping(first_name="given_name", title="job_title"),
        access=AccessMapping(all_teams="sees_everything"),
    )
    with pytest.raises(ConfigurationError) as error:
        CSVDirectory(app, adapter=adapter)
    message = str(error.value)
    assert message.startswith("flask-csvdirectory cannot start: 7 problem(s) to fix:")
    for expected in (
        "Person.email (PersonMapping.email (required)) does not exist. Add that column, or map "
        "PersonMapping.email to the attribute that holds it, e.g. PersonMapping(email='...').",
        "Person.active (PersonMapping.active) is String, not boolean.",
        "Person.given_name (PersonMapping.first_name) is not a mapped column",
        "Person.job_title (PersonMapping.title) does not exist.",
        "Team.name (team_name) does not exist.",
        "Person.sees_everything (AccessMapping.all_teams) does not exist.",
        "Person.scoped_teams (AccessMapping.scope) must be a many-to-many relationship",
    ):
        assert expected in message, f"{expected!r} not in {message}"
    assert "csvdirectory" not in app.extensions


def test_the_example_platforms_full_mapping_has_no_problem_and_stores_everything() -> None:
    from example_app.models import Team, User, db

    adapter = SQLAlchemyDirectoryAdapter(db, person_model=User, team_model=Team)
    assert adapter.configuration_problems() == []
    assert adapter.fields == OPTIONAL_FIELDS
    assert adapter.notes() == []


def test_default_names_the_model_lacks_are_skipped_but_given_names_must_exist(
    tmp_path: Path,
) -> None:
    app, db, _login = host(tmp_path)
    team_people = Table(
        "team_people", db.metadata,
        Column("person_id", ForeignKey("people.id"), primary_key=True),
        Column("team_id", ForeignKey("teams.id"), primary_key=True),
    )

    class Team(db.Model):  # type: ignore[name-defined, misc]
        __tablename__ = "teams"
        id: Mapped[int] = mapped_column(primary_key=True)
        name: Mapped[str] = mapped_column(String(100))

    class Person(db.Model):  # type: ignore[name-defined, misc]
        __tablename__ = "people"
        id: Mapped[int] = mapped_column(primary_key=True)
        email: Mapped[str] = mapped_column(String(320))
        active: Mapped[bool] = mapped_column(Boolean)
        first_name: Mapped[str] = mapped_column(String(100))
        group_id: Mapped[int | None] = mapped_column(Integer, ForeignKey("teams.id"))
        role: Mapped[str] = mapped_column(String(20))
        scoped_teams: Mapped[list[Team]] = relationship(secondary=team_people)

    adapter = SQLAlchemyDirectoryAdapter(db, person_model=Person, team_model=Team)
    assert adapter.configuration_problems() == []
    # no team_id column: teams are not stored; no last_name/title/employee_id either
    assert adapter.fields == frozenset({"first_name", "access", "scope"})
    mapped = SQLAlchemyDirectoryAdapter(
        db, person_model=Person, team_model=Team, person=PersonMapping(team_id="group_id")
    )
    assert "team" in mapped.fields


# -- Flask-Login and the layout ------------------------------------------------------------


def test_a_missing_user_loader_is_a_start_up_error_with_the_fix(tmp_path: Path) -> None:
    app, db, _login = host(tmp_path)
    from flask_csvdirectory.testing import InMemoryAdapter

    with pytest.raises(ConfigurationError) as error:
        CSVDirectory(app, adapter=InMemoryAdapter())
    assert "Flask-Login has no user_loader" in str(error.value)
    assert "@login_manager.user_loader" in str(error.value)


def test_no_login_manager_is_a_start_up_error(tmp_path: Path) -> None:
    from flask_csvdirectory.testing import InMemoryAdapter

    app = Flask("bare")
    app.config.update(TESTING=True, SECRET_KEY="s", SQLALCHEMY_DATABASE_URI="sqlite://")
    SQLAlchemy().init_app(app)
    with pytest.raises(ConfigurationError) as error:
        CSVDirectory(app, adapter=InMemoryAdapter())
    assert "Flask-Login is not set up on this app: call LoginManager(app)" in str(error.value)
    # without the dashboard, Flask-Login is not needed
    app = Flask("bare")
    app.config.update(
        TESTING=True, SECRET_KEY="s", SQLALCHEMY_DATABASE_URI="sqlite://",
        CSVDIRECTORY_ENABLE_DASHBOARD=False,
    )
    SQLAlchemy().init_app(app)
    CSVDirectory(app, adapter=InMemoryAdapter())


def test_a_missing_base_template_is_a_start_up_error(tmp_path: Path) -> None:
    from flask_csvdirectory.testing import InMemoryAdapter

    app, _db, login = host(tmp_path, CSVDIRECTORY_BASE_TEMPLATE="base.html")
    login.user_loader(lambda user_id: None)
    with pytest.raises(ConfigurationError) as error:
        CSVDirectory(app, adapter=InMemoryAdapter())
    assert "CSVDIRECTORY_BASE_TEMPLATE is 'base.html', but no template folder has it" in str(
        error.value
    )
    assert "csvdirectory/base.html" in str(error.value)


# -- what a command-line sync and a worker import ---------------------------------------------

ROOT = Path(__file__).resolve().parent.parent
#: Modules only the SCIM endpoints, the OpenAPI document or migrations need: a process that
#: syncs from the shell or runs jobs must start without them (they cost about a second).
HEAVY_OPTIONAL = (
    "scim2_models",
    "scim2_server",
    "pydantic",
    "flask_csvdirectory.scim",
    "flask_csvdirectory.web.scim",
    "apispec",
    "flask_csvdirectory.web.openapi",
    "alembic",
)
#: Runs ``flask ARGS`` in this process and writes the names of every module it imported.
PROBE = """
import atexit, json, pathlib, sys
from flask.cli import main
out, sys.argv = pathlib.Path(sys.argv[1]), ["flask", *sys.argv[2:]]
atexit.register(lambda: out.write_text(json.dumps(sorted(sys.modules))))
main()
"""


def flask_command(
    instance: Path, *args: str, env: dict[str, str] | None = None
) -> tuple[str, set[str]]:
    """Run ``flask --app example_app ARGS`` as a new process (the example platform on SQLite in
    ``instance``): its output, and the modules it had imported when it exited."""
    from .conftest import TEST_ENCRYPTION_KEY

    modules = instance / "modules.json"
    environment = {k: v for k, v in os.environ.items() if not k.startswith("CSVDIRECTORY_")}
    environment.pop("DATABASE_URL", None)
    environment.pop("REDIS_URL", None)
    environment.update(
        FLASK_APP=f"example_app:create_app(None, {str(instance)!r})",
        SECRET_KEY="startup-test",
        CSVDIRECTORY_ENCRYPTION_KEYS=TEST_ENCRYPTION_KEY,
        PYTHONPATH=str(ROOT),
        **(env or {}),
    )
    result = subprocess.run(
        [sys.executable, "-c", PROBE, str(modules), *args],
        env=environment, cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout, set(json.loads(modules.read_text()))


def test_a_command_line_sync_imports_no_scim_openapi_or_alembic(tmp_path: Path) -> None:
    users = tmp_path / "Users.csv"
    users.write_bytes(users_csv())
    employees = tmp_path / "Employees.csv"
    employees.write_bytes(employees_csv([employee(n) for n in range(5)]))
    flask_command(tmp_path, "csvdirectory", "settings", "enable")  # creates the tables too

    output, modules = flask_command(
        tmp_path, "csvdirectory", "sync", str(users), str(employees)
    )
    assert "Auto-Approved" in output
    assert "flask_csvdirectory.runs" in modules  # what a sync needs is there...
    assert [name for name in HEAVY_OPTIONAL if name in modules] == []  # ...and only that

    output, modules = flask_command(tmp_path, "csvdirectory", "--help")
    assert "sync" in output
    assert [name for name in HEAVY_OPTIONAL if name in modules] == []


@pytest.mark.realstack
def test_a_worker_starts_without_scim_openapi_or_alembic(
    tmp_path: Path, redis_conn: object
) -> None:
    from .conftest import REDIS_URL

    flask_command(tmp_path, "csvdirectory", "create-tables")
    output, modules = flask_command(
        tmp_path, "csvdirectory", "worker", "--burst", env={"REDIS_URL": REDIS_URL}
    )
    assert "rq.worker" in modules and "flask_csvdirectory.worker" in modules
    assert [name for name in HEAVY_OPTIONAL if name in modules] == []


def test_the_scim_endpoints_load_their_libraries_on_the_first_request(tmp_path: Path) -> None:
    output, modules = flask_command(tmp_path, "routes")
    assert "csvdirectory_scim.endpoint" in output  # registered...
    assert "scim2_server" not in modules  # ...without importing SCIM
    # the first request imports it and is answered as SCIM (tests/test_scim.py: the rest)
    from example_app import create_app

    app = create_app(
        {"TESTING": True, "SECRET_KEY": "s", "EXAMPLE_SEED": False}, instance_path=str(tmp_path)
    )
    response = app.test_client().get("/scim/v2/Users")
    assert response.status_code == 401
    assert response.headers["Content-Type"].startswith("application/scim+json")
    with app.app_context():
        app.extensions["sqlalchemy"].engine.dispose()


def test_create_all_reads_the_head_revision_as_alembic_does() -> None:
    from flask_csvdirectory import migrations

    assert migrations._head_of_files() == migrations.head_revision()
