"""The extension's own tables: settings, sync runs, stored files, API tokens, idempotency keys.

They live on their own SQLAlchemy ``MetaData`` (:data:`metadata`), not on the host's models, and
are used through the host's Flask-SQLAlchemy session, so they share its engine and transactions.
Create them with ``csvdirectory.create_all()`` or include :data:`metadata` in the host's Alembic
``target_metadata``. Every row carries the organization key it belongs to.
"""

from __future__ import annotations

import enum
import json
import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    DDL,
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy import event as sa_event
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator


def utcnow() -> datetime:
    """Now, timezone-aware UTC (every timestamp the extension stores)."""
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored naive-UTC and always read back timezone-aware (SQLite drops zones)."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given; use flask_csvdirectory.models.utcnow()")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


class _Encrypted(TypeDecorator[Any]):
    """A value encrypted at rest with the app's file-store keys (Fernet), like the files.

    Bound values are encrypted with the newest key of the current app's extension state; read
    values are decrypted with any configured key. A value that is not a token (written before
    encryption, or by hand) is returned as stored.
    """

    cache_ok = True

    @staticmethod
    def _store() -> Any:
        from flask import current_app

        return current_app.extensions["csvdirectory"].store

    def _seal(self, plaintext: str) -> str:
        return str(self._store().encrypt(plaintext.encode("utf-8")).decode("ascii"))

    def _open(self, value: str) -> str | None:
        from .errors import CSVDirectoryError

        if not value.startswith("gAAAA"):
            return None
        try:
            return str(self._store().decrypt(value.encode("ascii")).decode("utf-8"))
        except (CSVDirectoryError, ValueError):
            return None


#: What a reason encrypted with a key the app no longer has reads as.
UNREADABLE_REASON = (
    "(This reason cannot be decrypted: its key is not in CSVDIRECTORY_ENCRYPTION_KEYS.)"
)


class EncryptedText(_Encrypted):
    """Text encrypted at rest (a run's failure reason may quote a value from the files)."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: str | None, dialect: Any) -> str | None:
        return None if value is None else self._seal(value)

    def process_result_value(self, value: str | None, dialect: Any) -> str | None:
        if value is None:
            return None
        opened = self._open(value)
        if opened is not None:
            return opened
        if value.startswith("gAAAA"):
            return UNREADABLE_REASON
        return value


class EncryptedJSON(_Encrypted):
    """JSON encrypted at rest, stored as one JSON string (a run's row errors hold cell values)."""

    impl = JSON
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Any) -> Any:
        return None if value is None else self._seal(json.dumps(value))

    def process_result_value(self, value: Any, dialect: Any) -> Any:
        if not isinstance(value, str):
            return value  # None, or a list stored before encryption
        opened = self._open(value)
        return None if opened is None else json.loads(opened)


metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


class Base(DeclarativeBase):
    """Declarative base of the extension's tables (separate from the host's)."""

    metadata = metadata


class RunStatus(enum.StrEnum):
    """The six statuses of a sync run, with the product's exact labels."""

    PROCESSING = "File Processing"
    WAITING = "Waiting for Approval"
    APPROVED = "Approved"
    REJECTED = "Rejected"
    AUTO_APPROVED = "Auto-Approved"
    ERROR = "Error while processing"


class Channel(enum.StrEnum):
    """Where an upload came from."""

    DASHBOARD = "dashboard"
    API = "api"
    CLI = "cli"
    REVERT = "revert"


class Phase(enum.StrEnum):
    """What a run's job is doing now (for live progress)."""

    QUEUED = "queued"
    READING = "reading"
    PLANNING = "planning"
    APPLYING = "applying"
    DONE = "done"


class IntegrationSettings(Base):
    """Per-organization settings; also the row an upload locks so two cannot both pass."""

    __tablename__ = "csvdirectory_settings"

    id: Mapped[int] = mapped_column(primary_key=True)
    org: Mapped[str] = mapped_column(String(255), unique=True)
    enabled: Mapped[bool] = mapped_column(Boolean, default=False)
    approval_threshold: Mapped[int] = mapped_column(Integer)
    approval_percent: Mapped[float | None] = mapped_column(Float, nullable=True)
    #: the destructive-change guard: deactivations plus access revocations above this share of
    #: the active directory (percent), or above this many people, wait for approval (None: off)
    guard_removal_percent: Mapped[float | None] = mapped_column(Float, nullable=True)
    guard_removal_people: Mapped[int | None] = mapped_column(Integer, nullable=True)
    intake_counter: Mapped[int] = mapped_column(Integer, default=0)
    #: SCIM provisioning is off until an admin turns it on
    scim_enabled: Mapped[bool] = mapped_column(Boolean, default=False)
    #: DELETE /Users removes people for good (default: deactivates them)
    scim_hard_delete: Mapped[bool] = mapped_column(Boolean, default=False)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_by: Mapped[str | None] = mapped_column(String(255), nullable=True)


class SyncRun(Base):
    """One upload+sync: its files, status, plan counts, decision, timings and errors."""

    __tablename__ = "csvdirectory_runs"
    __table_args__ = (
        Index("ix_csvdirectory_runs_org_created", "org", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=lambda: uuid.uuid4().hex)
    org: Mapped[str] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(32), default=RunStatus.PROCESSING.value)
    phase: Mapped[str] = mapped_column(String(16), default=Phase.QUEUED.value)
    channel: Mapped[str] = mapped_column(String(16))
    uploaded_by_id: Mapped[str | None] = mapped_column(String(255), nullable=True)
    uploaded_by_name: Mapped[str] = mapped_column(String(255), default="")
    token_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    decided_by_id: Mapped[str | None] = mapped_column(String(255), nullable=True)
    decided_by_name: Mapped[str | None] = mapped_column(String(255), nullable=True)
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)

    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    planned_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    timings: Mapped[dict[str, float]] = mapped_column(JSON, default=dict)

    users_filename: Mapped[str] = mapped_column(String(255), default="Users.csv")
    employees_filename: Mapped[str] = mapped_column(String(255), default="Employees.csv")
    users_size: Mapped[int] = mapped_column(Integer, default=0)
    employees_size: Mapped[int] = mapped_column(Integer, default=0)
    users_rows: Mapped[int | None] = mapped_column(Integer, nullable=True)
    employees_rows: Mapped[int | None] = mapped_column(Integer, nullable=True)

    progress_done: Mapped[int] = mapped_column(Integer, default=0)
    progress_total: Mapped[int] = mapped_column(Integer, default=0)
    change_count: Mapped[int | None] = mapped_column(Integer, nullable=True)
    change_counts: Mapped[dict[str, int] | None] = mapped_column(JSON, nullable=True)
    #: the changes that count toward the approval threshold (see Change.structural)
    structural_change_count: Mapped[int | None] = mapped_column(Integer, nullable=True)
    #: why the run waits or was refused: GuardReason.to_dict() of each guard that spoke
    guard_reasons: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON, nullable=True)
    fingerprint: Mapped[str | None] = mapped_column(String(64), nullable=True)
    directory_size: Mapped[int | None] = mapped_column(Integer, nullable=True)
    threshold: Mapped[int | None] = mapped_column(Integer, nullable=True)
    threshold_percent: Mapped[float | None] = mapped_column(Float, nullable=True)
    replans: Mapped[int] = mapped_column(Integer, default=0)
    notice: Mapped[str | None] = mapped_column(Text, nullable=True)
    reject_reason: Mapped[str | None] = mapped_column(Text, nullable=True)

    #: when the change set was applied (the moment the run counts in the sync window from)
    applied_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    #: a revert run: the applied run it undoes; an applied run: its latest revert run
    reverts_run_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    reverted_by_run_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    #: a revert run: how many changes made since the original were left alone
    conflict_count: Mapped[int | None] = mapped_column(Integer, nullable=True)

    #: encrypted at rest: a reason may quote a value from the files
    error_reason: Mapped[str | None] = mapped_column(EncryptedText, nullable=True)
    error_count: Mapped[int] = mapped_column(Integer, default=0)
    #: encrypted at rest: row errors carry cell values
    row_errors: Mapped[list[dict[str, Any]] | None] = mapped_column(EncryptedJSON, nullable=True)
    job_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    worker: Mapped[str | None] = mapped_column(String(255), nullable=True)

    files: Mapped[list[StoredFile]] = relationship(
        back_populates="run", cascade="all, delete-orphan", lazy="select"
    )

    @property
    def status_enum(self) -> RunStatus:
        """The status as a :class:`RunStatus`."""
        return RunStatus(self.status)

    @property
    def status_label(self) -> str:
        """The status as the product shows it: "Approved by Jane Doe", "Auto-Approved", ..."""
        status = self.status_enum
        if status in (RunStatus.APPROVED, RunStatus.REJECTED) and self.decided_by_name:
            return f"{status.value} by {self.decided_by_name}"
        return status.value

    @property
    def is_finished(self) -> bool:
        """Whether nothing more will happen to this run."""
        return self.finished_at is not None

    @property
    def is_open(self) -> bool:
        """Whether this run still blocks a new one (File Processing, Waiting for Approval, or
        approved and not yet applied)."""
        return self.finished_at is None

    @property
    def is_applied(self) -> bool:
        """Whether this run's change set was applied to the directory."""
        return self.applied_at is not None

    @property
    def is_revert(self) -> bool:
        """Whether this run undoes another (channel ``revert``)."""
        return self.reverts_run_id is not None

    @property
    def is_waiting(self) -> bool:
        """Whether an admin can approve or reject this run now."""
        return self.status == RunStatus.WAITING.value

    def file(self, role: str) -> StoredFile | None:
        """The stored file of ``role``: "users", "employees", "changeset", "applied" (the
        applied changes with their before-values) or "conflicts" (of a revert run)."""
        return next((f for f in self.files if f.role == role), None)


class StoredFile(Base):
    """An uploaded file, a planned change set, an applied record or a revert's conflicts,
    encrypted (Fernet) at rest."""

    __tablename__ = "csvdirectory_files"
    __table_args__ = (UniqueConstraint("run_id", "role", name="uq_csvdirectory_files_run_role"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    org: Mapped[str] = mapped_column(String(255))
    run_id: Mapped[str] = mapped_column(ForeignKey("csvdirectory_runs.id", ondelete="CASCADE"))
    role: Mapped[str] = mapped_column(String(16))
    filename: Mapped[str] = mapped_column(String(255))
    size: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    purged_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    ciphertext: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)

    run: Mapped[SyncRun] = relationship(back_populates="files")


# Fernet tokens do not compress: on PostgreSQL store them out of line without trying (revision
# 0005 does the same for databases made before it).
sa_event.listen(
    StoredFile.__table__,
    "after_create",
    DDL(  # type: ignore[no-untyped-call]
        "ALTER TABLE csvdirectory_files ALTER COLUMN ciphertext SET STORAGE EXTERNAL"
    ).execute_if(dialect="postgresql"),
)


class TokenScope(enum.StrEnum):
    """What a token may call: the CSV JSON API, SCIM, or both."""

    API = "api"
    SCIM = "scim"


class ApiToken(Base):
    """A bearer token for the JSON API and/or SCIM, scoped to one organization; stored hashed.

    ``scopes`` is a space-separated list of :class:`TokenScope` values.
    """

    __tablename__ = "csvdirectory_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    org: Mapped[str] = mapped_column(String(255), index=True)
    name: Mapped[str] = mapped_column(String(255))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    scopes: Mapped[str] = mapped_column(String(64), default=TokenScope.API.value)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_by: Mapped[str | None] = mapped_column(String(255), nullable=True)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)

    @property
    def active(self) -> bool:
        """Whether the token still authenticates."""
        return self.revoked_at is None

    def allows(self, scope: TokenScope) -> bool:
        """Whether the token was created for ``scope``."""
        return scope.value in (self.scopes or "").split()

    @property
    def scope_label(self) -> str:
        """"CSV API", "SCIM" or "CSV API and SCIM"."""
        labels = {TokenScope.API: "CSV API", TokenScope.SCIM: "SCIM"}
        return " and ".join(labels[s] for s in TokenScope if self.allows(s)) or "none"


class IdempotentResponse(Base):
    """The first response to an API request sent with an ``Idempotency-Key`` header."""

    __tablename__ = "csvdirectory_idempotency"
    __table_args__ = (UniqueConstraint("org", "key", name="uq_csvdirectory_idempotency_org_key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    org: Mapped[str] = mapped_column(String(255))
    key: Mapped[str] = mapped_column(String(255))
    request_hash: Mapped[str] = mapped_column(String(64))
    status_code: Mapped[int] = mapped_column(Integer)
    body: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class HistoryEntry(Base):
    """One change to the directory, whoever made it: a CSV run applied, or a SCIM write.

    The one history of the organization, newest last. ``summary`` is a plain line without
    personal data ("User updated", "42 changes applied"); ``details`` is the encrypted JSON
    of what changed (``{"before": ..., "after": ...}``), read with :func:`~.history.details`.
    A CSV run's entry points to the run (``run_id``), whose stored change set holds every
    change with its before-values.
    """

    __tablename__ = "csvdirectory_history"
    __table_args__ = (Index("ix_csvdirectory_history_org_at", "org", "at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    org: Mapped[str] = mapped_column(String(255))
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    #: "csv" (a sync run) or "scim"
    source: Mapped[str] = mapped_column(String(16))
    action: Mapped[str] = mapped_column(String(64))
    actor_id: Mapped[str | None] = mapped_column(String(255), nullable=True)
    actor_name: Mapped[str] = mapped_column(String(255), default="")
    run_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    resource_type: Mapped[str | None] = mapped_column(String(16), nullable=True)
    resource_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    summary: Mapped[str] = mapped_column(Text, default="")
    details: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)


class DirectoryVersion(Base):
    """A counter per organization that every write to its directory moves on, in the write's
    own transaction (see :mod:`flask_csvdirectory.versions`): what the reference adapter's
    caches of totals and page positions are keyed by. No row means version 0; the row ``*``
    counts writes that could touch any organization."""

    __tablename__ = "csvdirectory_directory_versions"

    org: Mapped[str] = mapped_column(String(255), primary_key=True)
    version: Mapped[int] = mapped_column(BigInteger)
