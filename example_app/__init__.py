"""An example identity platform that mounts flask-csvdirectory.

Run it with ``make example`` (SQLite, in-process jobs). With ``DATABASE_URL`` and ``REDIS_URL``
set it runs on PostgreSQL with jobs on RQ workers (``flask --app example_app csvdirectory
worker``).
"""

from __future__ import annotations

import json
import os
import secrets
from datetime import timedelta
from typing import Any

from cryptography.fernet import Fernet
from flask import Flask, abort, flash, redirect, render_template, request, url_for
from flask_login import LoginManager, current_user, login_required, login_user, logout_user
from flask_wtf import CSRFProtect
from sqlalchemy import event, func, select

from flask_csvdirectory import CSVDirectory, PersonMapping, SQLAlchemyDirectoryAdapter, TeamMapping

from . import invitations
from .models import Team, User, db

ADMIN_EMAIL = "admin@example.com"


def create_app(config: dict[str, Any] | None = None, instance_path: str | None = None) -> Flask:
    """The example platform's app factory (``instance_path``: where its database and secrets
    live; default: Flask's instance folder)."""
    app = Flask(__name__, instance_relative_config=True, instance_path=instance_path)
    os.makedirs(app.instance_path, exist_ok=True)
    database_url = os.environ.get(
        "DATABASE_URL", f"sqlite:///{os.path.join(app.instance_path, 'example.sqlite3')}"
    )
    redis_url = os.environ.get("REDIS_URL")
    app.config.update(
        SQLALCHEMY_DATABASE_URI=database_url,
        CSVDIRECTORY_JOBS_MODE="rq" if redis_url else "inprocess",
        CSVDIRECTORY_REDIS_URL=redis_url or "redis://127.0.0.1:6379/0",
        CSVDIRECTORY_BASE_TEMPLATE="base.html",  # the platform's own layout
        EXAMPLE_SEED=True,
    )
    if os.environ.get("SECRET_KEY"):
        app.config["SECRET_KEY"] = os.environ["SECRET_KEY"]
    if os.environ.get("CSVDIRECTORY_ENCRYPTION_KEYS"):
        app.config["CSVDIRECTORY_ENCRYPTION_KEYS"] = os.environ[
            "CSVDIRECTORY_ENCRYPTION_KEYS"
        ].split(",")
    # operations settings an operator (or the fault-injection tests) passes to workers
    if os.environ.get("CSVDIRECTORY_HEARTBEAT_GRACE"):
        app.config["CSVDIRECTORY_HEARTBEAT_GRACE"] = timedelta(
            seconds=float(os.environ["CSVDIRECTORY_HEARTBEAT_GRACE"])
        )
    if os.environ.get("CSVDIRECTORY_JOB_RETRY_INTERVALS"):
        app.config["CSVDIRECTORY_JOB_RETRY_INTERVALS"] = tuple(
            int(value) for value in os.environ["CSVDIRECTORY_JOB_RETRY_INTERVALS"].split(",")
        )
    if os.environ.get("CSVDIRECTORY_PAUSE_DIR"):  # test only: see flask_csvdirectory.checkpoints
        app.config["CSVDIRECTORY_PAUSE_DIR"] = os.environ["CSVDIRECTORY_PAUSE_DIR"]
    # Mail: the example's own MAIL_* settings; the extension's notifications use them too.
    if os.environ.get("MAIL_SERVER"):
        app.config.update(
            MAIL_SERVER=os.environ["MAIL_SERVER"],
            MAIL_PORT=int(os.environ.get("MAIL_PORT", "25")),
            MAIL_DEFAULT_SENDER=os.environ.get("MAIL_DEFAULT_SENDER", "directory@example.com"),
        )
    app.config.setdefault("EXAMPLE_EXTERNAL_URL", os.environ.get("EXTERNAL_URL"))
    app.config.update(config or {})
    missing = not (app.config.get("SECRET_KEY") and app.config.get("CSVDIRECTORY_ENCRYPTION_KEYS"))
    if missing and not app.testing:
        for key, value in instance_secrets(app.instance_path).items():
            if not app.config.get(key):
                app.config[key] = value
    if app.config.get("EXAMPLE_EXTERNAL_URL"):
        app.config.setdefault("CSVDIRECTORY_EXTERNAL_URL", app.config["EXAMPLE_EXTERNAL_URL"])
    app.config.setdefault("CSVDIRECTORY_DIRECTORY_URL", "/")

    db.init_app(app)
    CSRFProtect(app)
    login_manager = LoginManager(app)
    login_manager.login_view = "login"

    @login_manager.user_loader
    def load_user(user_id: str) -> User | None:
        return db.session.get(User, int(user_id))

    # --- the few lines that mount the extension -------------------------------------------
    csvdirectory = CSVDirectory(
        app,
        adapter=SQLAlchemyDirectoryAdapter(
            db,
            person_model=User,
            team_model=Team,
            person=PersonMapping(
                user_name="username", display_name="display_name",
                phones={"work": "work_phone", "mobile": "mobile_phone", "fax": "fax_phone"},
                employee_number="employee_number", department="department",
                manager="manager_id", scim_id="scim_id",
                created_at="created_at", updated_at="updated_at",
            ),
            team=TeamMapping(scim_id="scim_id", created_at="created_at", updated_at="updated_at"),
        ),
    )
    # ---------------------------------------------------------------------------------------

    with app.app_context():
        if db.engine.dialect.name == "sqlite":
            event.listen(db.engine, "connect", _sqlite_wal)
        db.create_all()
        csvdirectory.create_all()
        if app.config["EXAMPLE_SEED"]:
            seed()

    _register_views(app)
    invitations.init_app(app)

    @app.cli.command("seed")
    def seed_command() -> None:
        """Create the example admin (admin@example.com / admin) if missing."""
        seed()

    return app


def _sqlite_wal(dbapi_connection: Any, _record: Any) -> None:
    """SQLite in WAL mode: readers (the dashboard, SCIM reads) do not wait for a writer, and a
    commit does not wait for the disk twice (a SCIM write commits in a few ms, not 10-20)."""
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def instance_secrets(instance_path: str) -> dict[str, Any]:
    """This installation's ``SECRET_KEY`` and Fernet key, made at random on first run.

    They live in ``<instance folder>/secrets.json`` (readable by its owner only), never in the
    repository; ``SECRET_KEY`` and ``CSVDIRECTORY_ENCRYPTION_KEYS`` from the environment win.
    """
    path = os.path.join(instance_path, "secrets.json")
    try:
        with open(path, encoding="utf-8") as file:
            return dict(json.load(file))
    except FileNotFoundError:
        pass
    made = {
        "SECRET_KEY": secrets.token_hex(32),
        "CSVDIRECTORY_ENCRYPTION_KEYS": [Fernet.generate_key().decode()],
    }
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as file:
        json.dump(made, file, indent=2)
    return made


def seed() -> None:
    """Make sure the platform has its first admin (and a demo manager) to sign in with."""
    if db.session.scalar(select(User).where(User.email == ADMIN_EMAIL)) is not None:
        return
    headquarters = Team(name="Headquarters")
    admin = User(
        email=ADMIN_EMAIL, first_name="Ada", last_name="Admin", title="IT administrator",
        role="admin", sees_all_teams=True, team=headquarters,
    )
    admin.set_password(os.environ.get("EXAMPLE_ADMIN_PASSWORD", "admin"))
    manager = User(
        email="manager@example.com", first_name="Max", last_name="Manager", title="Team lead",
        role="manager", team=headquarters, scoped_teams=[headquarters],
    )
    manager.set_password("manager")
    db.session.add_all([headquarters, admin, manager])
    db.session.commit()


def _register_views(app: Flask) -> None:
    @app.route("/")
    @login_required
    def index() -> str:
        people = db.session.scalars(
            select(User).order_by(User.active.desc(), User.last_name, User.first_name)
        ).all()
        teams = db.session.scalars(select(Team).order_by(Team.name)).all()
        return render_template("index.html", people=people, teams=teams)

    @app.route("/settings/")
    @login_required
    def settings() -> str:
        if not current_user.is_admin:
            abort(403)
        return render_template("settings.html")

    @app.route("/login", methods=["GET", "POST"])
    def login() -> Any:
        if request.method == "POST":
            login = request.form.get("email", "").strip().lower()  # an email or a login name
            user = db.session.scalar(
                select(User).where(func.lower(func.coalesce(User.username, User.email)) == login)
            ) or db.session.scalar(select(User).where(User.email == login))
            if user and user.check_password(request.form.get("password", "")):
                if login_user(user):
                    return redirect(request.args.get("next") or url_for("index"))
                flash("This account is deactivated.")
            else:
                flash("Wrong email or password.")
        return render_template("login.html")

    @app.route("/logout", methods=["POST"])
    def logout() -> Any:
        logout_user()
        return redirect(url_for("login"))
