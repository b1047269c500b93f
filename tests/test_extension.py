"""The extension object: app factory, registration, config, state."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from flask import Flask
from flask_login import LoginManager
from flask_sqlalchemy import SQLAlchemy

from flask_csvdirectory import CSVDirectory, get_state
from flask_csvdirectory import extension as extension_module
from flask_csvdirectory.errors import ConfigurationError
from flask_csvdirectory.extension import EXTENSION_KEY, GENERATE_KEY_COMMAND
from flask_csvdirectory.storage import derive_key
from flask_csvdirectory.testing import InMemoryAdapter


def minimal_app(**config: object) -> tuple[Flask, SQLAlchemy]:
    app = Flask("host")
    app.config.update(
        {
            "TESTING": True,
            "SECRET_KEY": "s",
            "SQLALCHEMY_DATABASE_URI": "sqlite://",
            "CSVDIRECTORY_JOBS_MODE": "sync",
            **config,
        }
    )
    db = SQLAlchemy()
    db.init_app(app)
    LoginManager(app).user_loader(lambda user_id: None)
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


# -- secrets ------------------------------------------------------------------------------------


def test_outside_debug_and_testing_encryption_keys_are_required() -> None:
    app, _ = minimal_app(TESTING=False)
    with pytest.raises(ConfigurationError) as error:
        CSVDirectory(app, adapter=InMemoryAdapter())
    message = str(error.value)
    assert "CSVDIRECTORY_ENCRYPTION_KEYS" in message
    assert GENERATE_KEY_COMMAND in message
    assert EXTENSION_KEY not in app.extensions


def test_in_debug_a_derived_key_is_used_with_one_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(extension_module, "_warned_derived_key", False)
    for _ in range(2):
        app, _ = minimal_app(TESTING=False, DEBUG=True)
        CSVDirectory(app, adapter=InMemoryAdapter())
        assert get_state(app).config["ENCRYPTION_KEYS"] == (derive_key("s"),)
    warnings = [r for r in caplog.records if "CSVDIRECTORY_ENCRYPTION_KEYS" in r.getMessage()]
    assert len(warnings) == 1
    assert warnings[0].levelname == "WARNING"
    assert GENERATE_KEY_COMMAND in warnings[0].getMessage()


def test_in_testing_a_derived_key_is_used_silently(caplog: pytest.LogCaptureFixture) -> None:
    app, _ = minimal_app()
    CSVDirectory(app, adapter=InMemoryAdapter())
    assert get_state(app).config["ENCRYPTION_KEYS"] == (derive_key("s"),)
    assert not [r for r in caplog.records if "ENCRYPTION_KEYS" in r.getMessage()]


def test_encryption_keys_from_a_comma_separated_string() -> None:
    first, second = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    app, _ = minimal_app(TESTING=False, CSVDIRECTORY_ENCRYPTION_KEYS=f"{first}, {second}")
    CSVDirectory(app, adapter=InMemoryAdapter())
    store = get_state(app).store
    assert store.decrypt(Fernet(second).encrypt(b"old")) == b"old"
    assert Fernet(first).decrypt(store.encrypt(b"new")) == b"new"


def test_a_bad_encryption_key_is_named_by_position_not_shown() -> None:
    good = Fernet.generate_key().decode()
    app, _ = minimal_app(CSVDIRECTORY_ENCRYPTION_KEYS=[good, "not-a-key-secret"])
    with pytest.raises(ConfigurationError) as error:
        CSVDirectory(app, adapter=InMemoryAdapter())
    assert "CSVDIRECTORY_ENCRYPTION_KEYS[1] is not a Fernet key" in str(error.value)
    assert "not-a-key-secret" not in str(error.value)
    assert GENERATE_KEY_COMMAND in str(error.value)


def test_the_key_command_in_the_message_makes_a_working_key() -> None:
    result = subprocess.run(
        GENERATE_KEY_COMMAND, shell=True, capture_output=True, text=True, check=True,
        env={"PATH": str(Path(sys.executable).parent)},
    )
    Fernet(result.stdout.strip())


# -- optional extras ----------------------------------------------------------------------------


def test_rq_mode_without_the_rq_extra_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "rq", None)  # as if not installed
    app, _ = minimal_app(CSVDIRECTORY_JOBS_MODE="rq")
    with pytest.raises(ConfigurationError) as error:
        CSVDirectory(app, adapter=InMemoryAdapter())
    assert "pip install 'flask-csvdirectory[rq]'" in str(error.value)
    assert "rq is not installed" in str(error.value)


def test_scim_is_on_by_default_only_when_its_extra_is_installed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    app, _ = minimal_app()
    CSVDirectory(app, adapter=InMemoryAdapter())
    assert any(rule.rule.startswith("/scim/v2") for rule in app.url_map.iter_rules())

    monkeypatch.setitem(sys.modules, "scim2_server", None)
    app, _ = minimal_app()
    CSVDirectory(app, adapter=InMemoryAdapter())
    assert get_state(app).config["ENABLE_SCIM"] is False
    assert not any(rule.rule.startswith("/scim/v2") for rule in app.url_map.iter_rules())

    app, _ = minimal_app(CSVDIRECTORY_ENABLE_SCIM=True)
    with pytest.raises(ConfigurationError) as error:
        CSVDirectory(app, adapter=InMemoryAdapter())
    assert "pip install 'flask-csvdirectory[scim]'" in str(error.value)
