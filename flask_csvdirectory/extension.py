"""The extension object: ``CSVDirectory(app=None, adapter=None)`` and ``init_app``.

Per-app state lives in ``app.extensions["csvdirectory"]`` (a :class:`CSVDirectoryState`); the
extension object itself holds only what the host configured on it (the adapter and the host
callbacks), so one object can serve several apps.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from cryptography.fernet import Fernet
from flask import Flask, current_app
from flask_login import current_user

from .adapter import DirectoryAdapter
from .config import DEFAULTS, PREFIX, apply_defaults
from .errors import ConfigurationError
from .storage import FileStore, derive_key

if TYPE_CHECKING:
    from flask_sqlalchemy import SQLAlchemy
    from sqlalchemy.orm import Session

    from .jobs import JobRunner
    from .notify import AdminMailer, Notifier
    from .runs import Actor

EXTENSION_KEY = "csvdirectory"


@dataclass
class CSVDirectoryState:
    """What the extension knows about one app; ``get_state()`` returns it."""

    extension: CSVDirectory
    adapter: DirectoryAdapter
    db: SQLAlchemy
    store: FileStore
    runner: JobRunner
    config: dict[str, Any] = field(default_factory=dict)
    #: The notifier emailing admins (None: no mail server configured; signals only).
    notifier: Notifier | None = None
    #: The signal receivers that call the notifier (kept here: signals hold them weakly).
    mailer: AdminMailer | None = None

    @property
    def session(self) -> Session:
        """The host's Flask-SQLAlchemy session (the extension's tables share it)."""
        return self.db.session  # type: ignore[return-value]  # a scoped_session proxies one


def get_state(app: Flask | None = None) -> CSVDirectoryState:
    """The extension's state of ``app`` (default: the current app)."""
    app = app or current_app._get_current_object()  # type: ignore[attr-defined]
    try:
        state: CSVDirectoryState = app.extensions[EXTENSION_KEY]
        return state
    except KeyError:
        raise ConfigurationError(
            "flask-csvdirectory is not registered on this app. "
            "Did you forget to call csvdirectory.init_app(app)?"
        ) from None


class CSVDirectory:
    """Directory integration by CSV import, for a Flask app.

    ::

        csvdirectory = CSVDirectory(adapter=SQLAlchemyDirectoryAdapter(db, ...))
        csvdirectory.init_app(app)   # or CSVDirectory(app, adapter=...)

    The app must have Flask-SQLAlchemy (``app.extensions["sqlalchemy"]``) and Flask-Login
    registered first. Host callbacks are set with decorators: :meth:`organization_loader`,
    :meth:`admin_checker`, :meth:`actor_loader`.
    """

    def __init__(
        self,
        app: Flask | None = None,
        adapter: DirectoryAdapter | None = None,
        *,
        db: SQLAlchemy | None = None,
        notifier: Notifier | None = None,
    ) -> None:
        self.adapter = adapter
        self.db = db
        self.notifier = notifier
        self._admin_emails_loader: Callable[[str], list[str]] | None = None
        self._organization_loader: Callable[[], str] | None = None
        self._admin_checker: Callable[[Any], bool] | None = None
        self._actor_loader: Callable[[Any], Actor] | None = None
        if app is not None:
            self.init_app(app)

    # -- registration ---------------------------------------------------------------------

    def init_app(self, app: Flask, adapter: DirectoryAdapter | None = None) -> None:
        """Register the extension on ``app``: config defaults, state, blueprints, CLI."""
        if EXTENSION_KEY in app.extensions:
            raise RuntimeError(
                "A 'CSVDirectory' instance has already been registered on this Flask app. "
                "Import and use that instance instead."
            )
        adapter = adapter or self.adapter
        if adapter is None:
            raise ConfigurationError(
                "CSVDirectory needs an adapter: CSVDirectory(app, adapter=...) or "
                "init_app(app, adapter=...)"
            )
        db = self.db or app.extensions.get("sqlalchemy")
        if db is None:
            raise ConfigurationError(
                "flask-csvdirectory stores its runs with Flask-SQLAlchemy: call db.init_app(app) "
                "before csvdirectory.init_app(app), or pass db=..."
            )
        apply_defaults(app)
        config = {key: app.config[PREFIX + key] for key in DEFAULTS}
        _check_extras(config)

        from .connections import install_pre_ping
        from .jobs import JobRunner
        from .liveness import beat_interval

        keys = _encryption_keys(app, config["ENCRYPTION_KEYS"])
        config["ENCRYPTION_KEYS"] = tuple(keys)
        state = CSVDirectoryState(
            extension=self,
            adapter=adapter,
            db=db,
            store=FileStore(keys),
            runner=JobRunner(
                app,
                config["JOBS_MODE"],
                redis_url=config["REDIS_URL"],
                queue_name=config["QUEUE_NAME"],
                job_timeout=int(config["JOB_TIMEOUT"]),
                heartbeat_interval=beat_interval(config["HEARTBEAT_GRACE"]),
                retry_intervals=tuple(int(v) for v in config["JOB_RETRY_INTERVALS"]),
            ),
            config=config,
        )
        problems = list(adapter.configuration_problems())
        if config["ENABLE_DASHBOARD"]:
            problems += _login_problems(app)
        if problems:
            raise _startup_error(problems)
        app.extensions[EXTENSION_KEY] = state
        install_pre_ping(app)
        self._connect_notifications(app, state)
        self._register_blueprints(app, config)
        if config["ENABLE_DASHBOARD"] and (problem := _template_problem(app, config)):
            del app.extensions[EXTENSION_KEY]
            raise _startup_error([problem])
        for note in adapter.notes():
            app.logger.info("flask-csvdirectory: %s", note)
        from .cli import csvdirectory_cli

        app.cli.add_command(csvdirectory_cli)

    def _connect_notifications(self, app: Flask, state: CSVDirectoryState) -> None:
        from .notify import AdminMailer, SMTPNotifier

        state.notifier = self.notifier or SMTPNotifier.from_config(app.config)
        if state.notifier is not None and state.config["NOTIFY"]:
            state.mailer = AdminMailer(app, state.notifier)
            state.mailer.connect()

    def _register_blueprints(self, app: Flask, config: dict[str, Any]) -> None:
        # The API and SCIM authenticate with bearer tokens, not cookies: a host's CSRFProtect
        # (register it before this extension) must not guard them. The dashboard checks CSRF
        # itself, after making uploads parse in memory (CSRFProtect would parse them first,
        # spooling large files to disk in plaintext).
        csrf = app.extensions.get("csrf")
        if config["ENABLE_DASHBOARD"]:
            from .web.dashboard import create_blueprint as dashboard

            blueprint = dashboard(config)
            if csrf is not None:
                csrf.exempt(blueprint)
            app.register_blueprint(blueprint, url_prefix=config["URL_PREFIX"])
        if config["ENABLE_API"]:
            from .web.api import create_blueprint as api

            blueprint = api(config)
            if csrf is not None:
                csrf.exempt(blueprint)
            app.register_blueprint(blueprint, url_prefix=config["API_URL_PREFIX"])
        if config["ENABLE_SCIM"] is None:
            config["ENABLE_SCIM"] = not _missing_modules(*SCIM_MODULES)
        if config["ENABLE_SCIM"]:
            from .web import scim_blueprint  # the SCIM libraries load on the first request

            blueprint = scim_blueprint(config)
            if csrf is not None:
                csrf.exempt(blueprint)
            app.register_blueprint(blueprint, url_prefix=config["SCIM_URL_PREFIX"])

    def create_all(self, app: Flask | None = None) -> None:
        """Bring the extension's tables to the newest revision (create them if missing).

        A new database gets the tables and its migration version stamped; an existing one is
        upgraded, as ``flask csvdirectory db upgrade`` does (see :mod:`.migrations`).
        """
        from . import migrations

        migrations.create_all(get_state(app).db.engine)

    # -- host callbacks (decorator setters, as Flask-Login's user_loader) -----------------

    def organization_loader(self, callback: Callable[[], str]) -> Callable[[], str]:
        """Set the callback giving the organization key of the current request (dashboard).

        Without one, every request belongs to ``CSVDIRECTORY_DEFAULT_ORGANIZATION``.
        """
        self._organization_loader = callback
        return callback

    def admin_checker(self, callback: Callable[[Any], bool]) -> Callable[[Any], bool]:
        """Set the callback telling whether a signed-in user may use the dashboard pages.

        Without one, a user is an admin when the adapter says so (the SQLAlchemy adapter: the
        user's role attribute holds the Admin value that Users.csv sets), else when
        ``user.is_admin`` is true.
        """
        self._admin_checker = callback
        return callback

    def actor_loader(self, callback: Callable[[Any], Actor]) -> Callable[[Any], Actor]:
        """Set the callback turning a signed-in user into an :class:`~.runs.Actor` (id, name).

        Without one: ``user.get_id()`` and the first of ``name``, ``full_name``, ``email``.
        """
        self._actor_loader = callback
        return callback

    def admin_emails_loader(
        self, callback: Callable[[str], list[str]]
    ) -> Callable[[str], list[str]]:
        """Set the callback giving the email addresses of an organization's admins (who get the
        notifications). Without one, the adapter's snapshot is read: every active person with
        the Admin role."""
        self._admin_emails_loader = callback
        return callback

    # -- what the web layer asks -----------------------------------------------------------

    def admin_emails(self, org: str) -> list[str]:
        """The addresses notifications about ``org`` go to."""
        if self._admin_emails_loader is not None:
            return list(self._admin_emails_loader(org))
        from .records import Role, normalize_email

        snapshot = get_state().adapter.snapshot(org)
        emails = []
        for access in snapshot.access:
            if Role(access.role) is not Role.ADMIN:
                continue
            person = snapshot.by_email.get(normalize_email(access.email))
            if person is None or person.active:
                emails.append(access.email)
        return sorted(emails)

    def current_organization(self) -> str:
        """The organization key of the current request."""
        if self._organization_loader is not None:
            return str(self._organization_loader())
        return str(get_state().config["DEFAULT_ORGANIZATION"])

    def is_admin(self, user: Any = None) -> bool:
        """Whether ``user`` (default: the current user) may use the dashboard pages."""
        user = current_user if user is None else user
        if not getattr(user, "is_authenticated", False):
            return False
        if self._admin_checker is not None:
            return bool(self._admin_checker(user))
        by_role = get_state().adapter.is_admin(user)
        if by_role is not None:
            return by_role
        return bool(getattr(user, "is_admin", False))

    def actor(self, user: Any = None) -> Actor:
        """The :class:`~.runs.Actor` for ``user`` (default: the current user)."""
        from .runs import Actor

        user = current_user if user is None else user
        if self._actor_loader is not None:
            return self._actor_loader(user)
        name = next(
            (
                str(value)
                for attr in ("name", "full_name", "email")
                if (value := getattr(user, attr, None))
            ),
            "unknown",
        )
        return Actor(id=str(user.get_id()), name=name)


def _startup_error(problems: list[str]) -> ConfigurationError:
    listed = "\n".join(f"  - {problem}" for problem in problems)
    return ConfigurationError(
        f"flask-csvdirectory cannot start: {len(problems)} problem(s) to fix:\n{listed}"
    )


def _login_problems(app: Flask) -> list[str]:
    """The dashboard signs admins in through Flask-Login: it must be set up, with a loader."""
    manager = getattr(app, "login_manager", None)
    if manager is None:
        return [
            "Flask-Login is not set up on this app: call LoginManager(app) (or "
            "login_manager.init_app(app)) before csvdirectory.init_app(app). The dashboard "
            "pages use it to know who is signed in (or set CSVDIRECTORY_ENABLE_DASHBOARD = "
            "False)."
        ]
    if (
        getattr(manager, "_user_callback", None) is None
        and getattr(manager, "_request_callback", None) is None
    ):
        return [
            "Flask-Login has no user_loader: before csvdirectory.init_app(app), decorate a "
            "function that returns the user for an id, e.g. "
            "@login_manager.user_loader def load_user(user_id): return db.session.get(User, "
            "int(user_id))."
        ]
    return []


def _template_problem(app: Flask, config: dict[str, Any]) -> str | None:
    """A problem when the dashboard's layout (CSVDIRECTORY_BASE_TEMPLATE) cannot be loaded."""
    from jinja2 import TemplateNotFound

    name = config["BASE_TEMPLATE"]
    try:
        app.jinja_env.loader.get_source(app.jinja_env, name)  # type: ignore[union-attr]
    except TemplateNotFound:
        return (
            f"CSVDIRECTORY_BASE_TEMPLATE is {name!r}, but no template folder has it. Create it "
            "(with the blocks title, head and content), register the blueprint that holds it "
            "before csvdirectory.init_app(app), or remove the setting to use the extension's "
            "plain layout ('csvdirectory/base.html')."
        )
    return None


#: Generates a key for CSVDIRECTORY_ENCRYPTION_KEYS (quoted in error messages and the docs).
GENERATE_KEY_COMMAND = (
    "python -c \"from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())\""
)
SCIM_MODULES = ("scim2_models", "scim2_server")
RQ_MODULES = ("rq", "redis")
_warned_derived_key = False


def _missing_modules(*names: str) -> list[str]:
    return [name for name in names if importlib.util.find_spec(name) is None]


def _check_extras(config: dict[str, Any]) -> None:
    """Refuse a configuration that needs an optional extra which is not installed."""
    if config["JOBS_MODE"] == "rq" and (missing := _missing_modules(*RQ_MODULES)):
        raise ConfigurationError(
            f"CSVDIRECTORY_JOBS_MODE is 'rq' but {' and '.join(missing)} "
            f"{'is' if len(missing) == 1 else 'are'} not installed. Install the extra: "
            "pip install 'flask-csvdirectory[rq]' (or use JOBS_MODE 'inprocess')."
        )
    if config["ENABLE_SCIM"] and (missing := _missing_modules(*SCIM_MODULES)):
        raise ConfigurationError(
            f"CSVDIRECTORY_ENABLE_SCIM is on but {' and '.join(missing)} "
            f"{'is' if len(missing) == 1 else 'are'} not installed. Install the extra: "
            "pip install 'flask-csvdirectory[scim]' (or set CSVDIRECTORY_ENABLE_SCIM = False)."
        )


def _encryption_keys(app: Flask, configured: Any) -> list[str | bytes]:
    """The Fernet keys of the file store.

    ``CSVDIRECTORY_ENCRYPTION_KEYS`` is a list (or a comma-separated string, as from an
    environment variable). Without it, a key derived from ``SECRET_KEY`` is used only in debug
    or testing (with a warning in debug); anywhere else the app refuses to start, since anyone
    who learns ``SECRET_KEY`` could then decrypt every stored file.
    """
    if isinstance(configured, str | bytes):
        configured = [part.strip() for part in _text(configured).split(",") if part.strip()]
    keys: list[str | bytes] = list(configured or ())
    for index, key in enumerate(keys):
        try:
            Fernet(key)
        except (ValueError, TypeError):
            raise ConfigurationError(
                f"CSVDIRECTORY_ENCRYPTION_KEYS[{index}] is not a Fernet key (32 url-safe "
                f"base64-encoded bytes). Make one with: {GENERATE_KEY_COMMAND}"
            ) from None
    if keys:
        return keys
    if not (app.debug or app.testing):
        raise ConfigurationError(
            "Set CSVDIRECTORY_ENCRYPTION_KEYS: uploaded files are encrypted at rest, and outside "
            "debug and testing the key is not derived from SECRET_KEY. Make a key with: "
            f"{GENERATE_KEY_COMMAND} and set CSVDIRECTORY_ENCRYPTION_KEYS = [\"<that key>\"] "
            "(keep it out of the code and the repository, like SECRET_KEY)."
        )
    secret = app.config.get("SECRET_KEY")
    if not secret:
        raise ConfigurationError(
            "Set CSVDIRECTORY_ENCRYPTION_KEYS (or, in debug and testing only, SECRET_KEY): "
            f"uploaded files are encrypted at rest. Make a key with: {GENERATE_KEY_COMMAND}"
        )
    global _warned_derived_key
    if app.debug and not _warned_derived_key:
        _warned_derived_key = True
        app.logger.warning(
            "flask-csvdirectory: CSVDIRECTORY_ENCRYPTION_KEYS is not set, so stored files are "
            "encrypted with a key derived from SECRET_KEY. That is allowed in debug only: "
            "outside debug the app will refuse to start. Make a key with: %s",
            GENERATE_KEY_COMMAND,
        )
    return [derive_key(secret)]


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value
