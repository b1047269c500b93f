"""The example platform keeps no secret in the repository: it makes its own on first run."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from example_app import create_app
from example_app.models import db
from flask_csvdirectory import get_state


def make(instance: Path, **config: object):  # type: ignore[no-untyped-def]
    app = create_app(
        {"EXAMPLE_SEED": False, "CSVDIRECTORY_JOBS_MODE": "sync", **config},
        instance_path=str(instance),
    )
    with app.app_context():
        db.engine.dispose()
    return app


def test_first_run_generates_secrets_in_the_instance_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SECRET_KEY", raising=False)
    monkeypatch.delenv("CSVDIRECTORY_ENCRYPTION_KEYS", raising=False)
    first = make(tmp_path / "one")

    secrets_file = tmp_path / "one" / "secrets.json"
    stored = json.loads(secrets_file.read_text())
    assert stat.S_IMODE(secrets_file.stat().st_mode) == 0o600
    assert first.config["SECRET_KEY"] == stored["SECRET_KEY"]
    assert len(stored["SECRET_KEY"]) == 64
    key = stored["CSVDIRECTORY_ENCRYPTION_KEYS"][0]
    Fernet(key)
    assert get_state(first).config["ENCRYPTION_KEYS"] == (key,)

    again = make(tmp_path / "one")  # the next run reads them back
    assert again.config["SECRET_KEY"] == first.config["SECRET_KEY"]
    other = make(tmp_path / "two")  # another installation gets its own
    assert other.config["SECRET_KEY"] != first.config["SECRET_KEY"]
    assert other.config["CSVDIRECTORY_ENCRYPTION_KEYS"] != [key]


def test_secrets_from_the_environment_win_and_nothing_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = Fernet.generate_key().decode()
    monkeypatch.setenv("SECRET_KEY", "from-the-environment")
    monkeypatch.setenv("CSVDIRECTORY_ENCRYPTION_KEYS", key)
    app = make(tmp_path)
    assert app.config["SECRET_KEY"] == "from-the-environment"
    assert get_state(app).config["ENCRYPTION_KEYS"] == (key,)
    assert not (tmp_path / "secrets.json").exists()
