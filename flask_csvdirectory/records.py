"""Plain records: how the extension sees the host's directory.

The extension never touches the host's models. An adapter reads the host's people, teams and
dashboard access into these records (a :class:`DirectorySnapshot`) and applies a
:class:`~flask_csvdirectory.changes.ChangeSet` back. Records are immutable and cheap (slots).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

#: The scope value meaning "every team" (written ``*`` in Users.csv).
ALL_TEAMS = "*"

#: What a directory may hold beside each person's email and active flag (which every directory
#: holds). A host without one of these leaves it out of :attr:`DirectorySnapshot.fields`; the
#: planner then plans no change of it (see :data:`FIELD_NOTES`).
OPTIONAL_FIELDS: frozenset[str] = frozenset(
    {"first_name", "last_name", "title", "external_id", "team", "access", "scope"}
)

#: What a person reads when the host's directory lacks an optional field.
FIELD_NOTES: Mapping[str, str] = {
    "first_name": "First names are not stored: the first_name column is checked but not applied.",
    "last_name": "Last names are not stored: the last_name column is checked but not applied.",
    "title": "Job titles are not stored: the title column is checked but not applied.",
    "external_id": (
        "Employee IDs are not stored: people are matched by email only, and the employee_id "
        "column is checked but not applied."
    ),
    "team": (
        "Teams are not stored: the team column is checked, but no team is created and nobody "
        "is moved between teams."
    ),
    "access": (
        "Dashboard access is not stored: Users.csv is checked, but grants, changes and revokes "
        "no role."
    ),
    "scope": (
        "Managers' teams are not stored: a Manager's teams in Users.csv are checked but not "
        "applied (their role is)."
    ),
}


class Role(enum.StrEnum):
    """Dashboard roles that Users.csv manages."""

    ADMIN = "Admin"
    MANAGER = "Manager"


@dataclass(frozen=True, slots=True)
class PersonRecord:
    """One person of the host's directory.

    ``key`` is the host's own identifier (stringified primary key); ``team`` is a team name or
    ``None``; ``extra`` holds host-declared extra columns
    (see :attr:`DirectoryAdapter.extra_columns`).

    The fields after ``extra`` are what SCIM reads and writes besides the CSV's: ``user_name``
    (the login name; empty when the host signs in by email), ``phones`` (``work``, ``mobile``,
    ``fax`` -> number), the enterprise extension's ``employee_number``, ``department`` and
    ``manager`` (the manager's person key), and ``scim_id`` (stable, never reused), ``created_at``
    and ``updated_at``. ``role`` is the person's dashboard role. A snapshot may leave them at
    their defaults; the queries (:meth:`DirectoryAdapter.find_people`) fill them.
    """

    key: str
    email: str
    first_name: str = ""
    last_name: str = ""
    title: str = ""
    team: str | None = None
    active: bool = True
    external_id: str | None = None
    extra: Mapping[str, str] = field(default_factory=dict)
    user_name: str = ""
    display_name: str = ""
    phones: Mapping[str, str] = field(default_factory=dict)
    employee_number: str = ""
    department: str = ""
    manager: str | None = None
    scim_id: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    role: Role | None = None
    team_key: str | None = None

    @property
    def login(self) -> str:
        """The SCIM ``userName``: the login name, or the email when the host has none."""
        return self.user_name or self.email


@dataclass(frozen=True, slots=True)
class TeamRecord:
    """One team of the host's directory."""

    key: str
    name: str
    scim_id: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class AccessRecord:
    """Dashboard access of one person: a role and, for managers, a scope of team names.

    ``teams`` is a sorted tuple of team names, or ``(ALL_TEAMS,)`` for every team. Admins always
    see every team, so their ``teams`` is ``(ALL_TEAMS,)``.
    """

    email: str
    role: Role
    teams: tuple[str, ...] = (ALL_TEAMS,)
    name: str = ""
    person_key: str | None = None


def normalize_email(email: str) -> str:
    """The form emails are matched in: trimmed and lower-cased."""
    return email.strip().lower()


def _normalized(email: str) -> str:
    """:func:`normalize_email`, giving back ``email`` itself when it is normalised already (a
    large directory keeps one string per address, not two)."""
    normalized = email.strip().lower()
    return email if normalized == email else normalized


def normalize_team(name: str) -> str:
    """The form team names are matched in: inner whitespace folded, case-insensitive."""
    return " ".join(name.split()).casefold()


@dataclass(slots=True)
class DirectorySnapshot:
    """The host's directory at one moment, as plain records, with lookup indexes.

    Build one with :meth:`build`; the planner reads it and never queries the host itself.
    """

    people: list[PersonRecord]
    teams: list[TeamRecord]
    access: list[AccessRecord]
    by_email: dict[str, PersonRecord] = field(default_factory=dict)
    by_external_id: dict[str, PersonRecord] = field(default_factory=dict)
    team_by_name: dict[str, TeamRecord] = field(default_factory=dict)
    access_by_email: dict[str, AccessRecord] = field(default_factory=dict)
    #: The optional fields (:data:`OPTIONAL_FIELDS`) this directory holds.
    fields: frozenset[str] = OPTIONAL_FIELDS

    @classmethod
    def build(
        cls,
        people: Iterable[PersonRecord],
        teams: Iterable[TeamRecord],
        access: Iterable[AccessRecord],
        fields: frozenset[str] = OPTIONAL_FIELDS,
    ) -> DirectorySnapshot:
        """Make a snapshot and its indexes (emails and team names normalised)."""
        snapshot = cls(list(people), list(teams), list(access), fields=frozenset(fields))
        snapshot.by_email = {_normalized(p.email): p for p in snapshot.people}
        snapshot.by_external_id = {p.external_id: p for p in snapshot.people if p.external_id}
        snapshot.team_by_name = {normalize_team(t.name): t for t in snapshot.teams}
        snapshot.access_by_email = {_normalized(a.email): a for a in snapshot.access}
        return snapshot

    @property
    def size(self) -> int:
        """How many people the directory holds (the base of a percentage threshold)."""
        return len(self.people)
