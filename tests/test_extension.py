"""The extension object: app factory, registration, config, state."""

from __future__ import annotations

import pytest
from flask import Flask
from flask_login import LoginManager
from flask_sqlalchemy import SQLAlchemy

from flask_csvdirectory import CSVDirectory, get_state
from flask_csvdirectory.errors import ConfigurationError
from flask_csvdirectory.testing import InMemoryAdapter


def minimal_app(**config: object) -> tuple[Flask, SQLAlchemy]:
    app = Flask("host")
    app.config.update(
        {
            "SECRET_KEY": "s",
            "SQLALCHEMY_DATABASE_URI": "sqlite://",
            "CSVDIRECTORY_JOBS_MODE": "sync",
            **config,
        }
    )
    db = SQLAlchemy()
    db.init_app(app)
    LoginManager(app)
    return app, db


def test_app_factory_pattern_registers_state_per_app() -> None:
    csvdirectory = CSVDirectory(adapter=InMemoryAdapter())
    first, _ = minimal_app()
    second, _ = minimal_app(CSVDIRECTORY_URL_PREFIX="/admin/csv")
    csvdirectory.init_app(first)
    csvdirectory.init_app(second)
    assert get_state(first) is not get_state(second)
    assert get_state(first).extension is csvdirectory
    assert get_state(second).config["URL_PREFIX"] == "/admin/csv"
    rules = {rule.rule for rule in second.url_map.iter_rules()}
    assert any(rule.startswith("/admin/csv") for rule in rules)
    assert any(rule.startswith("/api/csv-directory/v1") for rule in rules)
    assert any(rule.startswith("/scim/v2") for rule in rules)


def test_defaults_are_applied_with_prefix() -> None:
    app, _ = minimal_app()
    CSVDirectory(app, adapter=InMemoryAdapter())
    assert app.config["CSVDIRECTORY_MIN_SYNC_INTERVAL"].total_seconds() == 12 * 3600
    assert app.config["CSVDIRECTORY_DEFAULT_APPROVAL_THRESHOLD"] == 50


def test_double_registration_is_refused() -> None:
    app, _ = minimal_app()
    csvdirectory = CSVDirectory(app, adapter=InMemoryAdapter())
    with pytest.raises(RuntimeError, match="already been registered"):
        csvdirectory.init_app(app)


def test_unknown_config_key_is_refused() -> None:
    app, _ = minimal_app(CSVDIRECTORY_THRESHOLD=3)
    with pytest.raises(ConfigurationError, match="CSVDIRECTORY_THRESHOLD"):
        CSVDirectory(app, adapter=InMemoryAdapter())


def test_missing_init_app_is_explained() -> None:
    app, _ = minimal_app()
    with app.app_context(), pytest.raises(ConfigurationError, match="init_app"):
        get_state()


def test_adapter_and_sqlalchemy_are_required() -> None:
    app, _ = minimal_app()
    with pytest.raises(ConfigurationError, match="adapter"):
        CSVDirectory(app)
    bare = Flask("bare")
    with pytest.raises(ConfigurationError, match="Flask-SQLAlchemy"):
        CSVDirectory(bare, adapter=InMemoryAdapter())


def test_bad_jobs_mode_and_bad_keys_are_refused() -> None:
    app, _ = minimal_app(CSVDIRECTORY_JOBS_MODE="celery")
    with pytest.raises(ConfigurationError, match="JOBS_MODE"):
        CSVDirectory(app, adapter=InMemoryAdapter())
    app, _ = minimal_app(CSVDIRECTORY_ENCRYPTION_KEYS=["not-a-key"])
    with pytest.raises(ConfigurationError, match="Fernet"):
        CSVDirectory(app, adapter=InMemoryAdapter())


def test_host_callbacks_decide_org_admin_and_actor() -> None:
    app, _ = minimal_app()
    csvdirectory = CSVDirectory(app, adapter=InMemoryAdapter())

    class Person:
        is_authenticated = True
        email = "boss@example.com"
        rank = "boss"

        def get_id(self) -> str:
            return "7"

    with app.test_request_context():
        assert csvdirectory.current_organization() == "default"
        assert csvdirectory.is_admin(Person()) is False  # no is_admin attribute
        assert csvdirectory.actor(Person()).name == "boss@example.com"

        csvdirectory.organization_loader(lambda: "acme")
        csvdirectory.admin_checker(lambda user: user.rank == "boss")
        assert csvdirectory.current_organization() == "acme"
        assert csvdirectory.is_admin(Person()) is True


def test_every_config_key_is_documented() -> None:
    from pathlib import Path

    from flask_csvdirectory.config import DEFAULTS

    text = (Path(__file__).parent.parent / "docs" / "configuration.md").read_text()
    missing = [key for key in DEFAULTS if f"`CSVDIRECTORY_{key}`" not in text]
    assert missing == []
