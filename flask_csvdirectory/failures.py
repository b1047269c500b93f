"""Why a run failed, in words for people: exceptions become plain, private reasons.

A run's reason is shown to admins and integrators, so it says what failed and what to do, and
never carries SQL, bound parameters or cell values (a database error message holds all three).
The technical detail goes to the log under a short reference that the reason quotes, so an
operator can find it. :func:`is_transient` tells a fault a retry may cure (a lost database
connection) from one it would only repeat.
"""

from __future__ import annotations

import logging
import re
import uuid

from sqlalchemy import exc as sa_exc

from .errors import CSVDirectoryError

log = logging.getLogger("flask_csvdirectory.failures")

#: What the job was doing, as the reasons say it.
STEP_WORDS = {
    "reading": "reading the files",
    "planning": "comparing the files with the directory",
    "applying": "applying the changes",
    "re-planning": "re-checking the approved plan against the directory",
    "queued": "starting",
}

_KEY_COLUMNS = re.compile(
    r"Key \(([^)]*)\)|UNIQUE constraint failed: (?:index '([^']+)'|([\w., ]+))"
)


class TransientFault(CSVDirectoryError):
    """A fault before the apply started that a retry may cure (the database was unreachable)."""

    def __init__(self, step: str, cause: BaseException) -> None:
        super().__init__(f"transient fault while {STEP_WORDS.get(step, step)}: {cause!r}")
        self.step = step
        self.cause = cause


def is_transient(exc: BaseException) -> bool:
    """Whether ``exc`` is a lost or unusable database connection (not a fault of the data)."""
    if isinstance(exc, TransientFault):
        return True
    if isinstance(exc, sa_exc.DBAPIError):
        if exc.connection_invalidated:
            return True
        return isinstance(exc, sa_exc.OperationalError | sa_exc.InterfaceError)
    if isinstance(exc, sa_exc.DisconnectionError | sa_exc.PendingRollbackError):
        return True
    if isinstance(exc, sa_exc.TimeoutError):  # no connection free in the pool
        return True
    try:
        import psycopg
    except ImportError:  # pragma: no cover - psycopg is optional
        return False
    return isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError)


def new_reference() -> str:
    """A short reference that ties a reason shown to users to its log record."""
    return uuid.uuid4().hex[:10]


def reason_for(exc: BaseException, step: str, *, run_id: str | None = None) -> str:
    """A plain reason for ``exc`` raised while ``step`` ("reading", "planning", "applying",
    "re-planning"); logs the technical detail (with traceback) under the reference it quotes.

    Nothing from the exception's message reaches the reason unless the exception is one of the
    extension's own (their messages are written for people and carry no cell values).
    """
    doing = STEP_WORDS.get(step, step)
    cause = exc.cause if isinstance(exc, TransientFault) else exc
    reference = new_reference()
    log.error(
        "csvdirectory run %s failed while %s (reference %s)", run_id, doing, reference,
        exc_info=(type(cause), cause, cause.__traceback__),
    )
    after = "nothing was applied; you can upload again now"
    if isinstance(cause, CSVDirectoryError) and not isinstance(cause, TransientFault):
        return f"{str(cause).rstrip('.')}. The run stopped while {doing}; {after}."
    if is_transient(cause):
        return (
            f"The connection to the database was lost while {doing}; {after}. "
            f"(Reference {reference}.)"
        )
    if isinstance(cause, sa_exc.IntegrityError):
        return (
            f"The directory refused the changes: {_integrity_detail(cause)}; {after} once the "
            f"files are corrected. (Reference {reference}.)"
        )
    if isinstance(cause, sa_exc.DataError):
        return (
            "A value in the files does not fit the directory's database (for example a text "
            f"longer than the column allows); {after} once the files are corrected. "
            f"(Reference {reference}.)"
        )
    return (
        f"An unexpected error stopped the run while {doing}; {after}. The details are in the "
        f"server log under reference {reference}."
    )


def worker_lost_reason(step: str) -> str:
    """The reason of a run whose job stopped without a word (killed, worker gone)."""
    if step == "applying":
        return (
            "The worker stopped while applying; nothing was applied; you can upload again now."
        )
    return (
        f"The worker stopped while {STEP_WORDS.get(step, step)}; nothing was applied; you can "
        "upload again now."
    )


def _integrity_detail(exc: sa_exc.IntegrityError) -> str:
    """Which rule of the directory's database was broken, by column names only (no values)."""
    diag = getattr(exc.orig, "diag", None)
    detail = getattr(diag, "message_detail", None) or ""
    constraint = getattr(diag, "constraint_name", None)
    columns = _KEY_COLUMNS.search(detail)
    sqlstate = getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None)
    if sqlstate == "23505" or "UNIQUE" in str(exc.orig).upper():
        columns = columns or _KEY_COLUMNS.search(str(exc.orig))
        if columns:
            return (
                "a person or team with the same value in the column(s) "
                f"{columns.group(1) or columns.group(2) or columns.group(3)} already exists"
            )
        return "a value that must be unique (such as an email or employee ID) already exists"
    if sqlstate == "23502":
        column = getattr(diag, "column_name", None)
        return f"a required value is missing{f' (column {column})' if column else ''}"
    if sqlstate == "23503":
        return "a record refers to a team or person that does not exist"
    named = f" ({constraint})" if constraint else ""
    return f"a rule of the directory's database was broken{named}"
