"""The example platform's own directory: people (``User``) and ``Team``.

These are the host's models: flask-csvdirectory never imports them; it reaches them through the
adapter configured in :mod:`example_app`.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from flask import current_app
from flask_login import UserMixin
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import (
    DDL,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    event,
    func,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from werkzeug.security import check_password_hash, generate_password_hash


class Base(DeclarativeBase):
    pass


db = SQLAlchemy(model_class=Base)

manager_teams = Table(
    "manager_teams",
    Base.metadata,
    Column("user_id", ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    Column("team_id", ForeignKey("teams.id", ondelete="CASCADE"), primary_key=True),
)


def _scim_id() -> str:
    return str(uuid.uuid4())


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


class Team(db.Model):
    __tablename__ = "teams"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    #: the team's SCIM id: a random UUID, never reused (the integer id may be)
    scim_id: Mapped[str] = mapped_column(String(36), unique=True, default=_scim_id)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=_now)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=_now, index=True)

    members: Mapped[list[User]] = relationship(back_populates="team")


class User(UserMixin, db.Model):
    """A person of the platform: an employee, and possibly a dashboard admin or manager.

    ``username`` is the login name (SCIM ``userName``), separate from the email; people the CSV
    import creates get their email as login name until an identity provider sets another.
    """

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    username: Mapped[str | None] = mapped_column(String(320), nullable=True)
    display_name: Mapped[str | None] = mapped_column(String(200), nullable=True)
    work_phone: Mapped[str | None] = mapped_column(String(64), nullable=True)
    mobile_phone: Mapped[str | None] = mapped_column(String(64), nullable=True)
    fax_phone: Mapped[str | None] = mapped_column(String(64), nullable=True)
    employee_number: Mapped[str | None] = mapped_column(String(100), nullable=True)
    department: Mapped[str | None] = mapped_column(String(200), nullable=True)
    manager_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    scim_id: Mapped[str | None] = mapped_column(
        String(36), unique=True, nullable=True, default=_scim_id
    )
    created_at: Mapped[datetime] = mapped_column(DateTime, default=_now)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=_now, index=True)
    employee_id: Mapped[str | None] = mapped_column(String(100), unique=True, nullable=True)
    first_name: Mapped[str] = mapped_column(String(200), default="")
    last_name: Mapped[str] = mapped_column(String(200), default="")
    title: Mapped[str] = mapped_column(String(200), default="")
    team_id: Mapped[int | None] = mapped_column(ForeignKey("teams.id"), nullable=True)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    #: "admin", "manager" or "employee" (no dashboard access)
    role: Mapped[str] = mapped_column(String(20), default="employee")
    sees_all_teams: Mapped[bool] = mapped_column(Boolean, default=False)
    password_hash: Mapped[str | None] = mapped_column(String(256), nullable=True)
    login_count: Mapped[int] = mapped_column(Integer, default=0)

    team: Mapped[Team | None] = relationship(back_populates="members")
    manager: Mapped[User | None] = relationship(remote_side="User.id")
    scoped_teams: Mapped[list[Team]] = relationship(secondary=manager_teams)

    @property
    def name(self) -> str:
        return f"{self.first_name} {self.last_name}".strip() or self.email

    @property
    def is_active(self) -> bool:  # Flask-Login: inactive people cannot sign in
        return self.active

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    def set_password(self, password: str) -> None:
        # tests set a cheap method: scrypt's deliberate cost adds up over hundreds of apps
        method = current_app.config.get("PASSWORD_HASH_METHOD", "scrypt")
        self.password_hash = generate_password_hash(password, method=method)

    def check_password(self, password: str) -> bool:
        return bool(self.password_hash) and check_password_hash(self.password_hash, password)


# Look-ups by email and by login name (username, else email) are case-insensitive and indexed;
# the login name is unique whatever its case.
Index("ix_users_email_lower", func.lower(User.email))
Index("ix_users_login", func.lower(func.coalesce(User.username, User.email)), unique=True)
# Paging SCIM users (those with a SCIM id) in creation order reads this index alone (SQLite);
# PostgreSQL counts and skips them in a narrower partial index.
Index("ix_users_id_scim_id", User.id, User.scim_id)
Index(
    "ix_users_scim_page", User.id, postgresql_where=User.scim_id.is_not(None)
).ddl_if(dialect="postgresql")
# A team's members (a Group's members: their SCIM ids in creation order) from this index alone.
Index("ix_users_team_members", User.team_id, User.id, User.scim_id)

# SCIM "contains" filters on userName: on PostgreSQL a trigram index answers ILIKE '%...%'
# (and 'sw'/'ew') without reading every row. pg_trgm is a contrib extension: where it cannot
# be created (not installed, no privilege) the table is made without it and such filters scan.
event.listen(
    User.__table__,
    "after_create",
    DDL(
        """
        DO $$
        BEGIN
            CREATE EXTENSION IF NOT EXISTS pg_trgm;
            CREATE INDEX IF NOT EXISTS ix_users_login_trgm
                ON users USING gin ((coalesce(username, email)) gin_trgm_ops);
        EXCEPTION WHEN OTHERS THEN
            RAISE NOTICE 'no trigram index on users (contains filters scan): %%', SQLERRM;
        END $$;
        """
    ).execute_if(dialect="postgresql"),
)
