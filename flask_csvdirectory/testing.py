"""Helpers for tests, the extension's and a host's.

:class:`InMemoryAdapter` is a complete :class:`~flask_csvdirectory.adapter.DirectoryAdapter`
over plain dicts: people, teams and dashboard access per organization. It enforces what a
database would (unique emails and team names, people in existing teams, access for existing
teams) so a wrong plan fails loudly, and it can be told to fail after a number of writes
(``fail_after``) to test that a sync is all or nothing.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from .adapter import DirectoryAdapter, ExtraColumn
from .query import (
    PERSON_FIELDS,
    TEAM_FIELDS,
    Page,
    Query,
    check_fields,
    key_order,
    person_value,
    run_query,
    team_value,
)
from .records import (
    ALL_TEAMS,
    AccessRecord,
    DirectorySnapshot,
    PersonRecord,
    Role,
    TeamRecord,
    normalize_email,
    normalize_team,
)

__all__ = ["InMemoryAdapter", "InjectedFailure"]

#: The fields :meth:`InMemoryAdapter.update_person` accepts.
_PERSON_FIELDS = frozenset(
    {
        "email", "first_name", "last_name", "title", "external_id", "extra", "team", "active",
        "user_name", "display_name", "phones", "employee_number", "department", "manager",
        "scim_id",
    }
)


class InjectedFailure(RuntimeError):
    """Raised by :class:`InMemoryAdapter` when its ``fail_after`` budget of writes is spent."""


@dataclass(frozen=True, slots=True)
class _Access:
    role: Role
    teams: tuple[str, ...]
    name: str = ""


@dataclass(slots=True)
class _Org:
    """One organization's directory. Its records are immutable (replaced, never changed in
    place), so a shallow copy of the dicts is a restorable copy of the state."""

    people: dict[str, PersonRecord] = field(default_factory=dict)
    teams: dict[str, TeamRecord] = field(default_factory=dict)  # normalised name -> team
    access: dict[str, _Access] = field(default_factory=dict)  # person key -> access
    email_index: dict[str, str] = field(default_factory=dict)  # normalised email -> person key
    login_index: dict[str, str] = field(default_factory=dict)  # folded login -> person key

    def copy(self) -> _Org:
        return _Org(
            dict(self.people), dict(self.teams), dict(self.access), dict(self.email_index),
            dict(self.login_index),
        )


class InMemoryAdapter(DirectoryAdapter):
    """An in-memory host directory implementing the whole adapter contract.

    ``fail_after``: when set, the write primitive called after that many successful writes
    raises :class:`InjectedFailure` (``fail_after=0`` fails the first write). ``writes`` counts
    the writes made so far. Keys are stringified integers, shared across organizations.
    """

    def __init__(
        self,
        *,
        fail_after: int | None = None,
        extra_columns: Sequence[ExtraColumn] = (),
    ) -> None:
        self.fail_after = fail_after
        self.writes = 0
        self.extra_columns = tuple(extra_columns)
        self._orgs: dict[str, _Org] = {}
        self._next_key = 1

    #: people and teams carry stable SCIM ids (random UUIDs, never reused)
    scim_ids = True

    # -- setting up -------------------------------------------------------------------------

    def seed(
        self,
        org: str,
        *,
        people: Iterable[PersonRecord] = (),
        teams: Iterable[TeamRecord | str] = (),
        access: Iterable[AccessRecord] = (),
    ) -> None:
        """Add records as they are (keys kept; teams may be given by name). Not a counted write.

        Access records find their person by ``person_key``, else by email; a missing person is
        created as a dashboard-only account.
        """
        state = self._org(org)
        now = _now()
        for team in teams:
            record = team if isinstance(team, TeamRecord) else TeamRecord(self._new_key(), team)
            record = replace(
                record,
                scim_id=record.scim_id or _scim_id(),
                created_at=record.created_at or now,
                updated_at=record.updated_at or now,
            )
            self._reserve(record.key)
            state.teams[normalize_team(record.name)] = record
        for person in people:
            self._reserve(person.key)
            if person.team is not None:
                self._team(state, person.team)
            self._index(state, person)
            state.people[person.key] = replace(
                person,
                extra=dict(person.extra),
                phones=dict(person.phones),
                scim_id=person.scim_id or _scim_id(),
                created_at=person.created_at or now,
                updated_at=person.updated_at or now,
            )
        for grant in access:
            key = grant.person_key
            if key is None or key not in state.people:
                key = state.email_index.get(normalize_email(grant.email))
            if key is None:
                key = self._dashboard_person(state, grant.email, grant.name).key
            state.access[key] = _Access(grant.role, self._scope(state, grant), grant.name)

    @classmethod
    def from_snapshot(
        cls, snapshot: DirectorySnapshot, org: str = "default", **kwargs: Any
    ) -> InMemoryAdapter:
        """An adapter holding ``snapshot`` as organization ``org``."""
        adapter = cls(**kwargs)
        adapter.seed(org, people=snapshot.people, teams=snapshot.teams, access=snapshot.access)
        return adapter

    # -- domain operations ------------------------------------------------------------------

    def snapshot(self, org: str) -> DirectorySnapshot:
        """The organization's directory as fresh records (extra dicts copied)."""
        state = self._org(org)
        people = [  # SCIM bookkeeping left out, as the reference adapter's snapshot does
            replace(p, extra=dict(p.extra), scim_id=None, created_at=None, updated_at=None)
            for p in state.people.values()
        ]
        access = [
            AccessRecord(state.people[key].email, a.role, a.teams, a.name, key)
            for key, a in state.access.items()
        ]
        teams = [TeamRecord(t.key, t.name) for t in state.teams.values()]
        return DirectorySnapshot.build(people, teams, access)

    # -- storage primitives -----------------------------------------------------------------

    @contextmanager
    def transaction(self, org: str) -> Iterator[None]:
        """Keep the block's writes if it ends normally; restore the state if it raises."""
        saved = self._org(org).copy()
        next_key = self._next_key
        try:
            yield
        except BaseException:
            self._orgs[org] = saved
            self._next_key = next_key
            raise

    def create_team(self, org: str, name: str) -> TeamRecord:
        """Create team ``name``; a team of the same normalised name must not exist."""
        self._write()
        state = self._org(org)
        norm = normalize_team(name)
        if norm in state.teams:
            raise ValueError(f"team {name!r} exists already")
        now = _now()
        record = state.teams[norm] = TeamRecord(self._new_key(), name, _scim_id(), now, now)
        return record

    def create_person(self, org: str, values: Mapping[str, Any]) -> PersonRecord:
        """Create an active person from ``employee_created`` values."""
        self._write()
        state = self._org(org)
        team = values.get("team")
        now = _now()
        person = PersonRecord(
            key=self._new_key(),
            email=values["email"],
            first_name=values.get("first_name", ""),
            last_name=values.get("last_name", ""),
            title=values.get("title") or "",
            team=self._team(state, team).name if team is not None else None,
            active=True,
            external_id=values.get("external_id"),
            extra=dict(values.get("extra") or {}),
            user_name=values.get("user_name") or "",
            display_name=values.get("display_name") or "",
            phones=dict(values.get("phones") or {}),
            employee_number=values.get("employee_number") or "",
            department=values.get("department") or "",
            manager=values.get("manager"),
            scim_id=_scim_id(),
            created_at=now,
            updated_at=now,
        )
        self._index(state, person)
        state.people[person.key] = person
        return person

    def update_person(self, org: str, key: str, values: Mapping[str, Any]) -> None:
        """Set the given fields; ``extra`` is merged, ``team`` is a team name (or ``None``)."""
        self._write()
        state = self._org(org)
        person = self._person(state, key)
        unknown = set(values) - _PERSON_FIELDS
        if unknown:
            raise ValueError(f"unknown person fields {sorted(unknown)}")
        changes = dict(values)
        if "team" in changes and changes["team"] is not None:
            changes["team"] = self._team(state, changes["team"]).name
        if "extra" in changes:
            changes["extra"] = {**person.extra, **(changes["extra"] or {})}
        if "phones" in changes:
            changes["phones"] = {k: v for k, v in (changes["phones"] or {}).items() if v}
        for text in ("user_name", "display_name", "employee_number", "department", "title"):
            if text in changes:
                changes[text] = changes[text] or ""
        changes["updated_at"] = _now()
        updated = replace(person, **changes)
        if "email" in changes or "user_name" in changes:
            self._unindex(state, person)
            try:
                self._index(state, updated)
            except ValueError:
                self._index(state, person)
                raise
        state.people[key] = updated
        if "team" in changes and changes["team"] != person.team:
            self._touch_teams(state, person.team, changes["team"])

    def set_access(
        self, org: str, email: str, role: Role, teams: tuple[str, ...], name: str = ""
    ) -> None:
        """Give ``email`` dashboard access, creating a dashboard-only person when needed."""
        self._write()
        state = self._org(org)
        key = state.email_index.get(normalize_email(email))
        if key is None:
            key = self._dashboard_person(state, email, name).key
        record = AccessRecord(email, Role(role), tuple(teams), name)
        state.access[key] = _Access(record.role, self._scope(state, record), name)

    def revoke_access(self, org: str, email: str) -> None:
        """Remove the access of the person with ``email`` (who must have some)."""
        self._write()
        state = self._org(org)
        key = state.email_index.get(normalize_email(email))
        if key is None or key not in state.access:
            raise LookupError(f"no dashboard access for {email!r}")
        del state.access[key]

    # -- single-record operations -----------------------------------------------------------

    def delete_person(self, org: str, key: str) -> None:
        """Remove a person and their access for good."""
        self._write()
        state = self._org(org)
        person = self._person(state, key)
        del state.people[key]
        self._unindex(state, person)
        state.access.pop(key, None)
        for other_key, other in list(state.people.items()):
            if other.manager == key:
                state.people[other_key] = replace(other, manager=None)

    def delete_team(self, org: str, name: str) -> None:
        """Remove a team nobody is in and no access scope names."""
        self._write()
        state = self._org(org)
        team = self._team(state, name)
        if any(p.team == team.name for p in state.people.values()):
            raise ValueError(f"team {team.name!r} is not empty")
        if any(team.name in a.teams for a in state.access.values()):
            raise ValueError(f"team {team.name!r} is in a dashboard scope")
        del state.teams[normalize_team(name)]

    # -- queries ----------------------------------------------------------------------------

    def find_people(self, org: str, query: Query) -> Page[PersonRecord]:
        """People matching ``query``, evaluated over the stored records (copies returned)."""
        check_fields(query, PERSON_FIELDS)
        state = self._org(org)
        people = [
            replace(
                person,
                team_key=state.teams[normalize_team(person.team)].key if person.team else None,
                role=state.access[key].role if key in state.access else None,
            )
            for key, person in state.people.items()
        ]
        page = run_query(people, query, person_value, lambda p: key_order(p.key))
        return Page(
            page.total,
            [replace(p, extra=dict(p.extra), phones=dict(p.phones)) for p in page.items],
        )

    def find_teams(self, org: str, query: Query) -> Page[TeamRecord]:
        """Teams matching ``query`` (``member``: a person key in the team)."""
        check_fields(query, TEAM_FIELDS)
        state = self._org(org)
        members: dict[str, list[str]] = {}
        for key, person in state.people.items():
            if person.team is not None:
                members.setdefault(normalize_team(person.team), []).append(key)

        def value(team: TeamRecord, name: str) -> Any:
            if name == "member":
                return members.get(normalize_team(team.name), [])
            return team_value(team, name)

        return run_query(state.teams.values(), query, value, lambda t: key_order(t.key))

    # -- SCIM additions (flask_csvdirectory.scim) -------------------------------------------

    def rename_team(self, org: str, name: str, new_name: str) -> None:
        """Rename a team: its key stays, its members and dashboard scopes follow the new name."""
        self._write()
        state = self._org(org)
        team = self._team(state, name)
        norm = normalize_team(new_name)
        holder = state.teams.get(norm)
        if holder is not None and holder.key != team.key:
            raise ValueError(f"team {new_name!r} exists already")
        del state.teams[normalize_team(team.name)]
        state.teams[norm] = replace(team, name=new_name, updated_at=_now())
        for key, person in list(state.people.items()):
            if person.team == team.name:
                state.people[key] = replace(person, team=new_name)
        for key, access in list(state.access.items()):
            if team.name in access.teams:
                teams = tuple(sorted(new_name if t == team.name else t for t in access.teams))
                state.access[key] = replace(access, teams=teams)

    # -- internals --------------------------------------------------------------------------

    def _org(self, org: str) -> _Org:
        state = self._orgs.get(org)
        if state is None:
            state = self._orgs[org] = _Org()
        return state

    def _write(self) -> None:
        if self.fail_after is not None and self.writes >= self.fail_after:
            raise InjectedFailure(f"injected failure after {self.writes} writes")
        self.writes += 1

    def _new_key(self) -> str:
        key = str(self._next_key)
        self._next_key += 1
        return key

    def _reserve(self, key: str) -> None:
        """Keep generated keys clear of a seeded numeric key."""
        if key.isdigit():
            self._next_key = max(self._next_key, int(key) + 1)

    @staticmethod
    def _person(state: _Org, key: str) -> PersonRecord:
        try:
            return state.people[key]
        except KeyError:
            raise LookupError(f"no person with key {key!r}") from None

    @staticmethod
    def _team(state: _Org, name: str) -> TeamRecord:
        try:
            return state.teams[normalize_team(name)]
        except KeyError:
            raise LookupError(f"no team {name!r}") from None

    @staticmethod
    def _index(state: _Org, person: PersonRecord) -> None:
        """Index a person's email and login name; both are unique (login case-insensitively)."""
        email = normalize_email(person.email)
        holder = state.email_index.get(email)
        if holder is not None and holder != person.key:
            raise ValueError(f"email {person.email!r} is already person {holder}'s")
        login = person.login.casefold()
        login_holder = state.login_index.get(login)
        if login_holder is not None and login_holder != person.key:
            raise ValueError(f"login name {person.login!r} is already person {login_holder}'s")
        state.email_index[email] = person.key
        state.login_index[login] = person.key

    @staticmethod
    def _unindex(state: _Org, person: PersonRecord) -> None:
        state.email_index.pop(normalize_email(person.email), None)
        state.login_index.pop(person.login.casefold(), None)

    @staticmethod
    def _touch_teams(state: _Org, *names: str | None) -> None:
        for name in names:
            if name is not None and normalize_team(name) in state.teams:
                team = state.teams[normalize_team(name)]
                state.teams[normalize_team(name)] = replace(team, updated_at=_now())

    def _scope(self, state: _Org, record: AccessRecord) -> tuple[str, ...]:
        """Admins see every team; a manager's teams must exist (canonical names, sorted)."""
        if record.role is Role.ADMIN or ALL_TEAMS in record.teams:
            return (ALL_TEAMS,)
        return tuple(sorted({self._team(state, t).name for t in record.teams}))

    def _dashboard_person(self, state: _Org, email: str, name: str) -> PersonRecord:
        first, _, last = name.strip().partition(" ")
        now = _now()
        person = PersonRecord(
            self._new_key(), email, first_name=first, last_name=last.strip(), scim_id=_scim_id(),
            created_at=now, updated_at=now,
        )
        self._index(state, person)
        state.people[person.key] = person
        return person


def _now() -> datetime:
    return datetime.now(UTC)


def _scim_id() -> str:
    return str(uuid.uuid4())
