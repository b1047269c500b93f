"""Every ``CSVDIRECTORY_*`` configuration key, with its default and what it does.

``init_app`` applies the defaults with ``app.config.setdefault`` and reads them once into the
extension's state; :func:`config_value` refuses a key that is not listed here, so a typo fails
loudly instead of silently using a default. ``docs/configuration.md`` documents the same keys.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from flask import Flask

from .errors import ConfigurationError

PREFIX = "CSVDIRECTORY_"

#: key (without prefix) -> (default, one-line doc)
DEFAULTS: dict[str, tuple[Any, str]] = {
    "URL_PREFIX": (
        "/settings/integrations/csv-import",
        "Where the admin dashboard pages are mounted.",
    ),
    "API_URL_PREFIX": ("/api/csv-directory/v1", "Where the JSON API is mounted."),
    "SCIM_URL_PREFIX": ("/scim/v2", "Where the SCIM 2.0 endpoints are mounted."),
    "ENABLE_DASHBOARD": (True, "Register the admin dashboard blueprint."),
    "ENABLE_API": (True, "Register the JSON API blueprint."),
    "ENABLE_SCIM": (
        None,
        "Register the SCIM 2.0 blueprint. None: when the [scim] extra is installed; True "
        "requires it. Each organization still turns SCIM on in its settings (off by default).",
    ),
    "SCIM_LOCK_TIMEOUT": (
        10.0,
        "Seconds a SCIM write waits for the organization's write lock (held by a CSV apply or "
        "another write) before it is answered 409 with Retry-After.",
    ),
    "BASE_TEMPLATE": (
        "csvdirectory/base.html",
        "The layout the dashboard pages extend (blocks: title, head, content). The default is "
        "a plain page shipped with the extension; set your own 'base.html' to fit your app.",
    ),
    "JOBS_MODE": (
        "inprocess",
        "How jobs run: 'rq' (RQ workers), 'inprocess' (a background thread, the embedded "
        "default) or 'sync' (inline, for tests and the CLI).",
    ),
    "REDIS_URL": ("redis://127.0.0.1:6379/0", "Redis for RQ jobs (JOBS_MODE='rq')."),
    "QUEUE_NAME": ("csvdirectory", "The RQ queue the jobs go to."),
    "JOB_TIMEOUT": (3600, "Seconds an RQ job may run before RQ stops it."),
    "HEARTBEAT_GRACE": (
        timedelta(seconds=60),
        "A running job refreshes its run's heartbeat every quarter of this; a run whose heartbeat "
        "is older than this and whose job is not alive is ended as Error while processing by the "
        "next reader of runs (a page, the API, a worker).",
    ),
    "JOB_RETRY_INTERVALS": (
        (5, 30, 120),
        "Seconds to wait before each retry of a job hit by a transient fault (lost database "
        "connection) before its apply started; one retry per value. An apply is never retried "
        "blindly: a retry re-plans first.",
    ),
    "PAUSE_DIR": (
        None,
        "Test only: a directory of pause points for fault-injection tests (see "
        "flask_csvdirectory.checkpoints). Leave unset in production.",
    ),
    "ENCRYPTION_KEYS": (
        (),
        "Fernet keys (urlsafe base64, newest first; a list, or a comma-separated string) that "
        "encrypt stored files. Required outside debug and testing (there, a key derived from "
        "SECRET_KEY is used, with a warning in debug). Rotate by putting a new key first, then "
        "run 'flask csvdirectory rotate-keys'.",
    ),
    "MIN_SYNC_INTERVAL": (
        timedelta(hours=12),
        "One synchronization per organization per this interval, counted from when the last "
        "one was applied (Error while processing and Rejected runs and reverts do not count; "
        "timedelta(0) turns the window off).",
    ),
    "MAX_UPLOAD_BYTES": (100 * 1024 * 1024, "Largest accepted size of each uploaded file."),
    "MAX_FORM_BYTES": (
        64 * 1024,
        "Largest accepted body of a request without files (dashboard forms, API approve/"
        "reject).",
    ),
    "MAX_SCIM_BYTES": (1024 * 1024, "Largest accepted body of a SCIM request."),
    "DEFAULT_APPROVAL_THRESHOLD": (
        50,
        "Structural change count above which a run waits for approval, until an admin sets "
        "another.",
    ),
    "DEFAULT_APPROVAL_PERCENT": (
        None,
        "Optional: a run also waits when its changes exceed this percentage of the directory.",
    ),
    "DEFAULT_GUARD_REMOVAL_PERCENT": (
        10.0,
        "Destructive-change guard: a run whose deactivations plus access revocations exceed "
        "this percentage of the active directory waits for approval (None: off), until an "
        "admin sets another.",
    ),
    "DEFAULT_GUARD_REMOVAL_PEOPLE": (
        25,
        "Destructive-change guard: ... or exceed this many people (None: off).",
    ),
    "MAX_ROW_ERRORS": (1000, "Row errors kept and shown per file (all are counted)."),
    "DEFAULT_ORGANIZATION": (
        "default",
        "The organization key of single-organization hosts (no organization_loader).",
    ),
    "FILE_RETENTION": (
        timedelta(days=90),
        "Stored files, change sets and before-values of runs finished longer ago than this are "
        "purged by 'flask csvdirectory purge'; a purged sync can no longer be reverted.",
    ),
    "RUNS_PER_PAGE": (25, "Runs per page of the history and of the API listing."),
    "NOTIFY": (
        True,
        "Email every admin of the organization when a run waits for approval, is held by a "
        "safeguard, fails or is applied (needs a mail server, below, or a notifier).",
    ),
    "DIRECTORY_URL": (
        None,
        "Where the host lists its people (a path or URL): a finished run links to it.",
    ),
    "EXTERNAL_URL": (
        None,
        "The host's public base URL (https://app.example.com), for links in emails.",
    ),
    "MAIL_SERVER": (None, "SMTP host for notifications; unset: the host's MAIL_SERVER."),
    "MAIL_PORT": (None, "SMTP port; unset: the host's MAIL_PORT, else 25."),
    "MAIL_SENDER": (None, "From address; unset: the host's MAIL_DEFAULT_SENDER."),
    "MAIL_USERNAME": (None, "SMTP user; unset: the host's MAIL_USERNAME."),
    "MAIL_PASSWORD": (None, "SMTP password; unset: the host's MAIL_PASSWORD."),
    "MAIL_USE_TLS": (None, "STARTTLS; unset: the host's MAIL_USE_TLS."),
    "MAIL_USE_SSL": (None, "SMTP over TLS; unset: the host's MAIL_USE_SSL."),
}


def apply_defaults(app: Flask) -> None:
    """Set every missing ``CSVDIRECTORY_*`` key of ``app.config`` to its default."""
    for key, (default, _doc) in DEFAULTS.items():
        app.config.setdefault(PREFIX + key, default)
    unknown = sorted(
        key for key in app.config if key.startswith(PREFIX) and key[len(PREFIX) :] not in DEFAULTS
    )
    if unknown:
        raise ConfigurationError(f"Unknown configuration key(s): {', '.join(unknown)}")
    mode = app.config[PREFIX + "JOBS_MODE"]
    if mode not in ("rq", "inprocess", "sync"):
        raise ConfigurationError(
            f"CSVDIRECTORY_JOBS_MODE must be 'rq', 'inprocess' or 'sync', not {mode!r}"
        )


def config_value(app: Flask, key: str) -> Any:
    """The value of ``CSVDIRECTORY_<key>`` for ``app``; refuses keys that do not exist."""
    if key not in DEFAULTS:
        raise ConfigurationError(f"{PREFIX}{key} is not a flask-csvdirectory setting")
    return app.config.get(PREFIX + key, DEFAULTS[key][0])
