"""The README's "Mount it in your app" block runs as written, in a fresh virtualenv.

The test copies the block verbatim into ``app.py``, installs the package with ``pip install .``
into a new virtualenv (so only declared dependencies are there, and no ``example_app``), then in
fresh processes: signs in as the host's admin and opens the settings page, enables the
integration and completes one import from the CLI, as the README's shell lines do.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from .factories import USER_HEADER, employee, employees_csv, to_csv

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.packaging

#: Run in the new virtualenv after the README's app.py: sign in, open a page, report.
DRIVER = """
import json, sys
from app import User, create_app, db

app = create_app()
with app.app_context():
    if db.session.scalar(db.select(User).filter_by(email="boss@example.com")) is None:
        db.session.add(User(email="boss@example.com", role="admin"))  # the host's own admin
        db.session.commit()
    boss = db.session.scalar(db.select(User).filter_by(email="boss@example.com"))
    people = sorted((u.email, u.active, u.role) for u in db.session.scalars(db.select(User)))
client = app.test_client()
with client.session_transaction() as session:  # signed in, as Flask-Login records it
    session["_user_id"] = str(boss.id)
    session["_fresh"] = True
page = client.get(sys.argv[1])
print(json.dumps({"status": page.status_code, "text": page.get_data(as_text=True),
                  "people": people}))
"""


def readme_block() -> str:
    """The first ``python`` block of the README's "Mount it in your app" section."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Mount it in your app", 1)[1].split("\n## ", 1)[0]
    match = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert match, "the README's mount section has no python block"
    return match.group(1)


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A new virtualenv with ``pip install .`` (the wheel built from this checkout)."""
    base = tmp_path_factory.mktemp("readme")
    wheels = base / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(wheels), str(ROOT)],
        check=True, capture_output=True, text=True, timeout=600,
    )
    subprocess.run([sys.executable, "-m", "venv", str(base / "venv")], check=True, timeout=120)
    python = base / "venv" / "bin" / "python"
    wheel = next(wheels.glob("flask_csvdirectory-*.whl"))
    result = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", str(wheel)],
        capture_output=True, text=True, timeout=900,
    )
    assert result.returncode == 0, result.stderr
    return base / "venv"


def test_the_wheel_holds_one_package_and_its_data(venv: Path) -> None:
    wheel = next((venv.parent / "wheels").glob("flask_csvdirectory-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    top = {name.split("/", 1)[0] for name in names}
    name, version = wheel.name.split("-")[:2]
    assert top == {"flask_csvdirectory", f"{name}-{version}.dist-info"}
    for needed in (
        "flask_csvdirectory/py.typed",
        "flask_csvdirectory/migrations/env.py",
        "flask_csvdirectory/migrations/script.py.mako",
        "flask_csvdirectory/migrations/versions/rev0001_baseline.py",
        "flask_csvdirectory/templates/csvdirectory/base.html",
    ):
        assert needed in names
    assert any(name.endswith(".dist-info/licenses/LICENSE") or name.endswith("/LICENSE")
               for name in names)
    installed = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import example_app"],
        capture_output=True, text=True, cwd=venv.parent,
    )
    assert "No module named 'example_app'" in installed.stderr
    for optional in ("rq", "redis", "scim2_server", "scim2_models"):  # extras only
        probe = subprocess.run(
            [str(venv / "bin" / "python"), "-c", f"import {optional}"],
            capture_output=True, text=True, cwd=venv.parent,
        )
        assert probe.returncode != 0, f"{optional} is installed without its extra"


def test_the_readme_app_signs_in_shows_settings_and_imports_from_the_cli(
    venv: Path, tmp_path: Path
) -> None:
    (tmp_path / "app.py").write_text(readme_block())  # verbatim
    (tmp_path / "driver.py").write_text(DRIVER)
    (tmp_path / "Users.csv").write_bytes(
        to_csv(USER_HEADER, [["boss@example.com", "Bo Boss", "Admin", "*"],
                             ["person2@example.com", "Max", "Manager", "*"]])
    )
    (tmp_path / "Employees.csv").write_bytes(employees_csv([employee(1), employee(2)]))
    env = {
        "PATH": f"{venv / 'bin'}:/usr/bin:/bin",
        "HOME": str(tmp_path),
        "FLASK_SECRET_KEY": os.urandom(16).hex(),
        "FLASK_CSVDIRECTORY_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
    }

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            list(args), cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
        )

    def page(path: str) -> dict:  # type: ignore[type-arg]
        result = run("python", "driver.py", path)
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)  # type: ignore[no-any-return]

    settings = page("/settings/integrations/csv-import/")
    assert settings["status"] == 200, settings["text"][:2000]
    assert "Disabled" in settings["text"]
    assert '<main class="csvd-page">' in settings["text"]  # the extension's plain layout

    enabled = run("flask", "--app", "app", "csvdirectory", "settings", "enable")
    assert enabled.returncode == 0, enabled.stderr
    assert enabled.stdout == "Enabled the CSV import integration of organization 'default'.\n"

    dry = run("flask", "--app", "app", "csvdirectory", "sync", "Users.csv", "Employees.csv",
              "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "Employees created: 2" in dry.stdout

    synced = run("flask", "--app", "app", "csvdirectory", "sync", "Users.csv", "Employees.csv")
    assert synced.returncode == 0, synced.stderr
    assert re.search(r"Run [0-9a-f]{32}: Auto-Approved\.", synced.stdout), synced.stdout

    history = page("/settings/integrations/csv-import/runs")
    assert history["status"] == 200
    assert "Auto-Approved" in history["text"]
    assert history["people"] == [
        ["boss@example.com", True, "admin"],
        ["person1@example.com", True, "employee"],
        ["person2@example.com", True, "manager"],
    ]
    templates = page("/settings/integrations/csv-import/templates")
    assert "Teams are not stored" in templates["text"]  # no team column: said, not hidden
