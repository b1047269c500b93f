"""The extension's Alembic migrations: one head, equal to the models, and a real upgrade path.

Both stacks: an empty database upgraded to the head has exactly the tables the models declare,
and a database created by 0.1.0 (``create_all()``, no version table, some data) is upgraded by
``flask csvdirectory db upgrade`` with its data kept.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from flask import Flask
from flask_login import LoginManager
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import Engine, create_engine, inspect, make_url, select, text
from sqlalchemy.orm import DeclarativeBase

from flask_csvdirectory import CSVDirectory, migrations
from flask_csvdirectory.migrations.__main__ import next_revision_id
from flask_csvdirectory.models import ApiToken, IntegrationSettings, SyncRun, metadata
from flask_csvdirectory.testing import InMemoryAdapter

from .conftest import POSTGRES_URL, require_services

DATA = Path(__file__).parent / "data"


def schema_differences(engine: Engine) -> list[Any]:
    """What Alembic's autogenerate would still change to make the database match the models."""
    with engine.connect() as connection:
        context = MigrationContext.configure(
            connection,
            opts={
                "compare_type": True,
                "version_table": migrations.VERSION_TABLE,
                "include_object": lambda obj, name, type_, *_: not (
                    type_ == "table" and name == migrations.VERSION_TABLE
                ),
            },
        )
        return list(compare_metadata(context, metadata))


def extension_tables(engine: Engine) -> set[str]:
    return {name for name in inspect(engine).get_table_names() if name.startswith("csvdirectory_")}


@pytest.fixture
def empty_engine(stack: str, tmp_path: Path) -> Iterator[Engine]:
    """A brand-new empty database: a SQLite file, or a PostgreSQL database made for the test."""
    if stack == "sqlite":
        engine = create_engine(f"sqlite:///{tmp_path / 'empty.sqlite3'}")
        yield engine
        engine.dispose()
        return
    require_services()
    url = make_url(POSTGRES_URL)
    name = f"{url.database}_migrations"
    admin = create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}"')
        connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    engine = create_engine(url.set(database=name))
    try:
        yield engine
    finally:
        engine.dispose()
        with admin.connect() as connection:
            connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}"')
        admin.dispose()


@contextmanager
def host_app(engine: Engine) -> Iterator[Flask]:
    """A minimal host on ``engine``'s database that does not create any table itself."""

    class Base(DeclarativeBase):
        pass

    app = Flask(__name__)
    app.config.update(
        TESTING=True,
        SECRET_KEY="test",
        SQLALCHEMY_DATABASE_URI=engine.url.render_as_string(hide_password=False),
        CSVDIRECTORY_JOBS_MODE="sync",
    )
    db = SQLAlchemy(model_class=Base)
    db.init_app(app)
    LoginManager(app).user_loader(lambda user_id: None)
    CSVDirectory(app, adapter=InMemoryAdapter())
    try:
        yield app
    finally:
        with app.app_context():
            db.session.remove()
            db.engine.dispose()


def test_the_migrations_have_exactly_one_head_numbered_in_order() -> None:
    script = migrations.script_directory()
    assert len(script.get_heads()) == 1, "two revisions share a parent: renumber the newer one"
    revisions = list(reversed(list(script.walk_revisions())))
    assert revisions[0].revision == migrations.BASELINE
    assert revisions[0].down_revision is None
    for previous, revision in zip(revisions, revisions[1:], strict=False):
        assert revision.down_revision == previous.revision
        assert revision.revision == next_revision_id(previous.revision)
    for revision in revisions:
        assert re.fullmatch(rf"rev{revision.revision}_\w+\.py", Path(revision.path).name)


def test_upgrading_an_empty_database_gives_the_models_tables(empty_engine: Engine) -> None:
    assert migrations.current_revision(empty_engine) is None

    assert migrations.upgrade(empty_engine) == migrations.head_revision()

    assert extension_tables(empty_engine) == set(metadata.tables) | {migrations.VERSION_TABLE}
    assert schema_differences(empty_engine) == []
    # the way down works too, and back up
    assert migrations.downgrade(empty_engine, "base") is None
    assert extension_tables(empty_engine) == {migrations.VERSION_TABLE}
    assert migrations.upgrade(empty_engine) == migrations.head_revision()
    assert schema_differences(empty_engine) == []


def test_create_all_stamps_the_head_so_upgrade_has_nothing_to_do(empty_engine: Engine) -> None:
    with host_app(empty_engine) as app:
        with app.app_context():
            app.extensions["csvdirectory"].extension.create_all()
        assert migrations.current_revision(empty_engine) == migrations.head_revision()
        assert schema_differences(empty_engine) == []

        result = app.test_cli_runner().invoke(args=["csvdirectory", "db", "upgrade"])
        assert result.exit_code == 0, result.output
        assert f"already at revision {migrations.head_revision()}" in result.output
        result = app.test_cli_runner().invoke(args=["csvdirectory", "db", "current"])
    assert f"Current revision: {migrations.head_revision()}" in result.output
    assert "up to date" in result.output


def test_a_0_1_0_database_is_upgraded_with_its_data(empty_engine: Engine) -> None:
    dialect = empty_engine.dialect.name
    ddl = "\n".join(
        line
        for line in (DATA / f"schema-0.1.0-{dialect}.sql").read_text().splitlines()
        if not line.startswith("--")
    )
    created = datetime(2026, 1, 2, 3, 4, 5)
    with empty_engine.begin() as connection:
        for statement in ddl.split(";"):
            if statement.strip():
                connection.exec_driver_sql(statement)
        connection.execute(
            text(
                "INSERT INTO csvdirectory_settings (org, enabled, approval_threshold, "
                "intake_counter, updated_at) VALUES ('acme', :true, 7, 3, :at)"
            ),
            {"true": True, "at": created},
        )
        connection.execute(
            text(
                "INSERT INTO csvdirectory_runs (id, org, status, phase, channel, "
                "uploaded_by_name, decided_by_name, created_at, finished_at, timings, "
                "users_filename, employees_filename, users_size, employees_size, "
                "progress_done, progress_total, replans, error_count, change_count) VALUES "
                "('r1', 'acme', 'Approved', 'done', 'api', 'Ann', 'Bob', :at, :at, '{}', "
                "'Users.csv', 'Employees.csv', 10, 20, 0, 0, 0, 0, 4)"
            ),
            {"at": created},
        )
        connection.execute(
            text(
                "INSERT INTO csvdirectory_files (org, run_id, role, filename, size, sha256, "
                "created_at, ciphertext) VALUES ('acme', 'r1', 'users', 'Users.csv', 10, "
                "'abc', :at, :blob)"
            ),
            {"at": created, "blob": b"ciphertext"},
        )
        connection.execute(
            text(
                "INSERT INTO csvdirectory_tokens (org, name, token_hash, prefix, created_at) "
                "VALUES ('acme', 'HR system', 'hash', 'csvd_ab', :at)"
            ),
            {"at": created},
        )
    assert migrations.current_revision(empty_engine) is None

    with host_app(empty_engine) as app:
        result = app.test_cli_runner().invoke(args=["csvdirectory", "db", "upgrade"])
        assert result.exit_code == 0, result.output
        with app.app_context():
            session = app.extensions["sqlalchemy"].session
            settings = session.scalar(
                select(IntegrationSettings).where(IntegrationSettings.org == "acme")
            )
            assert settings is not None
            assert (settings.enabled, settings.approval_threshold) == (True, 7)
            assert settings.updated_at == created.replace(tzinfo=UTC)
            run = session.get(SyncRun, "r1")
            assert run is not None
            assert run.status_label == "Approved by Bob"
            assert run.change_count == 4
            # 0003: an applied run counts in the sync window from when it finished
            assert run.applied_at == created.replace(tzinfo=UTC)
            assert run.reject_reason is None and run.reverts_run_id is None
            assert [(f.role, f.ciphertext) for f in run.files] == [("users", b"ciphertext")]
            token = session.scalar(select(ApiToken))
            assert token is not None and token.active and token.name == "HR system"

    assert result.exit_code == 0, result.output
    head = migrations.head_revision()
    assert f"from revision none to {head}" in result.output
    assert migrations.current_revision(empty_engine) == head
    assert schema_differences(empty_engine) == []


def test_next_revision_numbers() -> None:
    assert next_revision_id("0001") == "0002"
    assert next_revision_id("0099") == "0100"


def test_include_object_keeps_the_extension_tables_out_of_a_hosts_autogenerate() -> None:
    runs = metadata.tables["csvdirectory_runs"]
    assert migrations.include_object(runs, runs.name, "table", False, None) is False
    assert migrations.include_object(runs.c.org, "org", "column", False, None) is False
    index = next(iter(runs.indexes))
    assert migrations.include_object(index, index.name, "index", False, None) is False
    assert migrations.include_object(None, "users", "table", True, None) is True


def ciphertext_storage(engine: Engine) -> str:
    """PostgreSQL's storage of the stored files' ciphertext ('e' external, 'x' extended)."""
    with engine.connect() as connection:
        return str(
            connection.execute(
                text(
                    "SELECT attstorage FROM pg_attribute WHERE attrelid = "
                    "'csvdirectory_files'::regclass AND attname = 'ciphertext'"
                )
            ).scalar_one()
        )


def test_stored_files_are_kept_uncompressed_on_postgresql(empty_engine: Engine) -> None:
    """Fernet tokens do not compress: both ways of making the tables (the migrations, and
    create_all) store them out of line without PostgreSQL trying to compress them."""
    if empty_engine.dialect.name != "postgresql":
        pytest.skip("a PostgreSQL storage setting")
    migrations.upgrade(empty_engine, "0004")
    assert ciphertext_storage(empty_engine) == "x"  # bytea's default before 0005
    migrations.upgrade(empty_engine)
    assert ciphertext_storage(empty_engine) == "e"
    migrations.downgrade(empty_engine, "0004")
    assert ciphertext_storage(empty_engine) == "x"
    migrations.downgrade(empty_engine, "base")
    with empty_engine.begin() as connection:
        connection.exec_driver_sql(f"DROP TABLE {migrations.VERSION_TABLE}")
    with host_app(empty_engine) as app, app.app_context():
        app.extensions["csvdirectory"].extension.create_all()
    assert ciphertext_storage(empty_engine) == "e"
