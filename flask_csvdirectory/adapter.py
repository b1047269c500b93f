"""The host adapter: the only way the extension reads or changes the host's directory.

A host implements :class:`DirectoryAdapter` (or configures the reference
:class:`~flask_csvdirectory.adapters.sqlalchemy.SQLAlchemyDirectoryAdapter`). The contract has two
levels, as Flask-Security's datastores do:

- *domain operations* the extension calls: :meth:`~DirectoryAdapter.snapshot` reads the whole
  directory as plain records, :meth:`~DirectoryAdapter.apply` applies a change set all or nothing;
- *storage primitives* the default :meth:`~DirectoryAdapter.apply` is built from
  (:meth:`~DirectoryAdapter.transaction`, :meth:`~DirectoryAdapter.create_team`, ...). An adapter
  may override :meth:`~DirectoryAdapter.apply` instead to work in bulk.

Every method takes the organization key first; a single-organization host ignores it.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field, replace
from typing import Any

from marshmallow import fields as ma_fields

from .changes import Change, ChangeKind, ChangeSet
from .query import (
    PERSON_FIELDS,
    TEAM_FIELDS,
    AllOf,
    Compare,
    Op,
    Page,
    Query,
    check_fields,
    eq,
    key_order,
    one,
    person_value,
    run_query,
    team_value,
)
from .records import (
    FIELD_NOTES,
    OPTIONAL_FIELDS,
    DirectorySnapshot,
    PersonRecord,
    Role,
    TeamRecord,
    normalize_email,
)

#: ``progress(done, total)``: called while applying, so a run can show how far it got.
ProgressCallback = Callable[[int, int], None]


@dataclass(frozen=True)
class ExtraColumn:
    """A host-declared extra Employees.csv column (``cost_center``, ...).

    ``field`` validates and converts the cell (a marshmallow field; a plain optional string by
    default); ``example`` is what the template's example row shows.
    """

    name: str
    field: ma_fields.Field[Any] = field(default_factory=lambda: ma_fields.String(load_default=""))
    example: str = ""
    description: str = ""


@dataclass(frozen=True)
class FieldLimit:
    """What the host can store for one field: at most ``max_length`` characters (``None``: no
    limit) and, when ``required``, never an empty value (a NOT NULL column without default)."""

    max_length: int | None = None
    required: bool = False


#: The fields :meth:`DirectoryAdapter.field_limits` may name (besides extra column names):
#: person fields, the team name, and the display name of a dashboard-only account (Users.csv).
LIMITED_FIELDS = (
    "email", "first_name", "last_name", "title", "external_id", "team", "name",
    # SCIM's fields (see PersonRecord)
    "user_name", "display_name", "phone", "employee_number", "department",
)


class DirectoryAdapter(abc.ABC):
    """The contract between the extension and the host's people, teams and dashboard access.

    Subclasses implement :meth:`snapshot` and either :meth:`apply` or the primitives below it.
    The adapter owns its transactions: :meth:`apply` commits on success and leaves the directory
    exactly as it was when it raises.
    """

    #: Extra Employees.csv columns the host declares (validated, shown in the template).
    extra_columns: Sequence[ExtraColumn] = ()
    #: Whether people and teams carry a stable ``scim_id`` (else their key is their SCIM id).
    scim_ids: bool = False

    # -- what the host's directory holds ----------------------------------------------------

    @property
    def fields(self) -> frozenset[str]:
        """The optional fields (:data:`~flask_csvdirectory.records.OPTIONAL_FIELDS`) the host
        stores; the planner plans no change of the others. Default: all of them."""
        return OPTIONAL_FIELDS

    def configuration_problems(self) -> list[str]:
        """Every way the adapter's configuration does not fit the host, each with its fix.

        ``init_app`` refuses to start when this is not empty. Default: none.
        """
        return []

    def is_admin(self, user: Any) -> bool | None:
        """Whether the host's ``user`` has the Admin role as Users.csv sets it, or ``None``
        when the adapter cannot tell (the extension then reads ``user.is_admin``)."""
        return None

    def notes(self) -> list[str]:
        """Sentences telling admins what the host does not store (shown with the templates)."""
        return [FIELD_NOTES[name] for name in sorted(OPTIONAL_FIELDS - self.fields)]

    # -- domain operations -------------------------------------------------------------------

    def field_limits(self) -> Mapping[str, FieldLimit]:
        """The host's storage limits by field (see :data:`LIMITED_FIELDS`, and extra column
        names). The validator refuses a cell that would not fit, so a dry run and a real import
        never disagree. The default declares none; the reference adapter reads its models.
        """
        return {}

    @abc.abstractmethod
    def snapshot(self, org: str) -> DirectorySnapshot:
        """Return the organization's whole directory as records (people active or not).

        The records are copies: changing the host afterwards does not change them.
        """

    def apply(
        self, org: str, changeset: ChangeSet, progress: ProgressCallback | None = None
    ) -> None:
        """Apply ``changeset`` in one transaction: every change or none.

        The default runs the primitives inside :meth:`transaction`, in apply order. On any
        exception the transaction is rolled back and the exception propagates.
        """
        ordered = changeset.sorted()
        total = len(ordered)
        with self.transaction(org):
            for done, change in enumerate(ordered, start=1):
                self.apply_change(org, change)
                if progress is not None and (done % 1000 == 0 or done == total):
                    progress(done, total)

    def apply_change(self, org: str, change: Change) -> None:
        """Apply one change through the primitives (called inside :meth:`transaction`)."""
        after = change.after or {}
        if change.kind is ChangeKind.TEAM_CREATED:
            self.create_team(org, after["name"])
        elif change.kind is ChangeKind.EMPLOYEE_CREATED:
            self.create_person(org, after)
        elif change.kind in _PERSON_UPDATES:
            if change.key is None:
                raise ValueError(f"{change.kind} for {change.subject} has no person key")
            self.update_person(org, change.key, after)
        elif change.kind in (ChangeKind.ACCESS_GRANTED, ChangeKind.ACCESS_CHANGED):
            self.set_access(
                org,
                change.subject,
                Role(after["role"]),
                tuple(after["teams"]),
                name=after.get("name", ""),
            )
        elif change.kind is ChangeKind.ACCESS_REVOKED:
            self.revoke_access(org, change.subject)
        else:  # pragma: no cover - every kind is handled above
            raise ValueError(f"unknown change kind {change.kind!r}")

    # -- storage primitives (used by the default apply) --------------------------------------

    def transaction(self, org: str) -> AbstractContextManager[None]:
        """A context manager: commit when the block ends, roll back everything if it raises."""
        raise NotImplementedError(f"{type(self).__name__} must implement transaction() or apply()")

    def create_team(self, org: str, name: str) -> TeamRecord:
        """Create a team; return its record."""
        raise NotImplementedError

    def create_person(self, org: str, values: Mapping[str, Any]) -> PersonRecord:
        """Create an active person from ``employee_created`` values (team given by name)."""
        raise NotImplementedError

    def update_person(self, org: str, key: str, values: Mapping[str, Any]) -> None:
        """Set the given fields of a person (any of email, first_name, last_name, title,
        external_id, extra, team (a name), active, and the SCIM fields user_name,
        display_name, phones, employee_number, department, manager (a person key)).

        An adapter stamps ``updated_at`` on every person it changes and gives every person it
        creates a new ``scim_id`` (never one used before) and ``created_at``."""
        raise NotImplementedError

    def set_access(
        self, org: str, email: str, role: Role, teams: tuple[str, ...], name: str = ""
    ) -> None:
        """Give the person with ``email`` dashboard ``role`` over ``teams``.

        When no person has that email, create a dashboard-only account for it (named ``name``).
        """
        raise NotImplementedError

    def revoke_access(self, org: str, email: str) -> None:
        """Remove the dashboard access of the person with ``email`` (the person stays)."""
        raise NotImplementedError

    # -- queries (SCIM, review pages): indexed reads and one page at a time ------------------
    # The defaults filter a snapshot in Python, so every adapter answers them; an adapter over
    # a database overrides find_people and find_teams with real queries (the reference adapter
    # translates them to SQL), which makes each SCIM request cost the same at any size.

    def find_people(self, org: str, query: Query) -> Page[PersonRecord]:
        """People matching ``query.where`` (fields: :data:`~.query.PERSON_FIELDS`), sorted and
        paged as it asks, with the total count of matches. Records are copies."""
        check_fields(query, PERSON_FIELDS)
        snapshot = self.snapshot(org)
        team_keys = {t.name: t.key for t in snapshot.teams}
        roles = {a.person_key or normalize_email(a.email): a.role for a in snapshot.access}
        people = [
            replace(
                p,
                team_key=team_keys.get(p.team) if p.team else None,
                role=roles.get(p.key) or roles.get(normalize_email(p.email)),
            )
            for p in snapshot.people
        ]
        return run_query(people, query, person_value, lambda p: key_order(p.key))

    def find_teams(self, org: str, query: Query) -> Page[TeamRecord]:
        """Teams matching ``query`` (fields: :data:`~.query.TEAM_FIELDS`), with the total."""
        check_fields(query, TEAM_FIELDS)
        snapshot = self.snapshot(org)
        members: dict[str, set[str]] = {}
        for person in snapshot.people:
            if person.team is not None:
                members.setdefault(person.team, set()).add(person.key)

        def value(team: TeamRecord, name: str) -> Any:
            if name == "member":
                return sorted(members.get(team.name, ()))
            return team_value(team, name)

        return run_query(snapshot.teams, query, value, lambda t: key_order(t.key))

    def get_person(self, org: str, key: str) -> PersonRecord | None:
        """The person with host key ``key``, or ``None``."""
        return one(self.find_people(org, eq("key", key)))

    def find_person(self, org: str, field_name: str, value: Any) -> PersonRecord | None:
        """The person whose ``field_name`` (``id``, ``email``, ``user_name``, ``external_id``,
        ...) equals ``value`` (case-insensitively for text), or ``None``."""
        return one(self.find_people(org, eq(field_name, value)))

    def get_team(self, org: str, key: str) -> TeamRecord | None:
        """The team with host key ``key``, or ``None``."""
        return one(self.find_teams(org, eq("key", key)))

    def find_team(self, org: str, field_name: str, value: Any) -> TeamRecord | None:
        """The team whose ``field_name`` (``id``, ``name``) equals ``value``, or ``None``."""
        return one(self.find_teams(org, eq(field_name, value)))

    def team_members(
        self, org: str, team_key: str, *, offset: int = 0, limit: int | None = None
    ) -> Page[PersonRecord]:
        """One page of the people in team ``team_key`` (creation order) and their count."""
        return self.find_people(
            org, Query(Compare("team", Op.EQ, team_key), offset=offset, limit=limit)
        )

    def team_member_ids(
        self, org: str, team_key: str, *, offset: int = 0, limit: int | None = None
    ) -> Page[str]:
        """One page of the SCIM ids of team ``team_key``'s members (creation order) and their
        count; people whose SCIM id was retired are left out. The cheap read behind a Group's
        members: an adapter over a database selects the one column."""
        where = Compare("team", Op.EQ, team_key)
        if getattr(self, "scim_ids", False):
            where = AllOf((where, Compare("id", Op.PR)))  # type: ignore[assignment]
        page = self.find_people(org, Query(where, offset=offset, limit=limit))
        return Page(page.total, [p.scim_id or p.key for p in page.items])

    def iter_people(self, org: str) -> Iterator[PersonRecord]:
        """Every person of the organization, in a stable order (by key)."""
        yield from sorted(self.snapshot(org).people, key=lambda p: _sort_key(p.key))

    def delete_person(self, org: str, key: str) -> None:
        """Remove a person for good (SCIM DELETE). The default refuses."""
        raise NotImplementedError(f"{type(self).__name__} does not delete people")

    def delete_team(self, org: str, name: str) -> None:
        """Remove an empty team for good (SCIM DELETE). The default refuses."""
        raise NotImplementedError(f"{type(self).__name__} does not delete teams")

    # -- SCIM additions: single-record writes outside change sets ----------------------------
    # delete_person, delete_team and rename_team are complete operations: an adapter whose
    # storage has transactions commits them itself (they are not called inside transaction()).

    def rename_team(self, org: str, name: str, new_name: str) -> None:
        """Rename team ``name`` to ``new_name``, keeping its key, members and dashboard scopes
        (SCIM PATCH/PUT of a group's displayName). The default refuses."""
        raise NotImplementedError(f"{type(self).__name__} does not rename teams")


_PERSON_UPDATES = frozenset(
    {
        ChangeKind.EMPLOYEE_UPDATED,
        ChangeKind.EMPLOYEE_MOVED,
        ChangeKind.EMPLOYEE_DEACTIVATED,
        ChangeKind.EMPLOYEE_REACTIVATED,
    }
)


def _sort_key(key: str) -> tuple[int, int | str]:
    """Numeric keys in numeric order, then the rest as text."""
    return (0, int(key)) if key.isdigit() else (1, key)
