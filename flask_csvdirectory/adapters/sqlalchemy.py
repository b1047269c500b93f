"""The reference adapter for hosts whose people and teams are Flask-SQLAlchemy models.

Configure it with the host's models and attribute names; it reads a snapshot with a handful of
column queries and applies a change set in bulk (executemany inserts and updates, COPY on
PostgreSQL; no query per row) inside one transaction of the host's session, committed at the
end or rolled back whole.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
import weakref
from array import array
from bisect import bisect_right, insort
from collections import OrderedDict, defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from itertools import islice
from operator import itemgetter
from types import MappingProxyType
from typing import Any, cast

from sqlalchemy import (
    Boolean,
    String,
    Text,
    and_,
    bindparam,
    delete,
    false,
    func,
    insert,
    inspect,
    not_,
    null,
    or_,
    select,
    true,
    update,
)
from sqlalchemy.orm import ColumnProperty, RelationshipProperty
from sqlalchemy.pool import SingletonThreadPool, StaticPool

from .. import versions
from ..adapter import DirectoryAdapter, ExtraColumn, FieldLimit, ProgressCallback
from ..changes import Change, ChangeKind, ChangeSet
from ..checkpoints import checkpoint
from ..query import (
    CASE_EXACT,
    PERSON_FIELDS,
    TEAM_FIELDS,
    AllOf,
    AnyOf,
    Compare,
    Condition,
    Negate,
    Op,
    Page,
    Query,
    check_fields,
)
from ..records import (
    ALL_TEAMS,
    AccessRecord,
    DirectorySnapshot,
    PersonRecord,
    Role,
    TeamRecord,
    normalize_email,
    normalize_team,
)
from .pgcopy import copy_rows
from .pgupdate import update_rows

logger = logging.getLogger(__name__)

#: SCIM text fields stored as NULL when empty (a login name "" would shadow the email).
_EMPTY_IS_NULL = frozenset({"user_name", "display_name", "employee_number", "department"})
#: From this offset on, a page is found by its keys first (see find_people).
DEEP_OFFSET = 1000
#: Rows per IN (...) clause / executemany batch.
CHUNK = 5000
#: Rows per driver-level executemany of a bulk INSERT (SQLite).
_DRIVER_BATCH = 50_000
#: The ``extra`` of people when the host declares no extra columns (shared, read-only).
_NO_EXTRA: Mapping[str, str] = MappingProxyType({})


class Default(str):
    """An attribute name the mapping uses by default: when the model lacks it, the field is
    simply not stored (with a note), whereas a name the host gives must exist."""

    __slots__ = ()


@dataclass(frozen=True)
class PersonMapping:
    """Where the person model keeps each field (attribute names; ``None``: the host has none).

    Only ``email`` and ``active`` are required. Every other field left at its default is used
    when the model has that attribute and skipped otherwise (the dashboard then says what is not
    stored); a name given explicitly must exist, or the app refuses to start.
    """

    email: str = Default("email")
    first_name: str | None = Default("first_name")
    last_name: str | None = Default("last_name")
    title: str | None = Default("title")
    external_id: str | None = Default("employee_id")
    team_id: str | None = Default("team_id")
    active: str = Default("active")
    #: extra Employees.csv column name -> person attribute
    extra: Mapping[str, str] = field(default_factory=dict)
    #: values set on every person the import creates (``{"role": "employee"}``, ...)
    defaults: Mapping[str, Any] = field(default_factory=dict)
    # What SCIM reads and writes besides the CSV (``None``: the host has no such column).
    #: the login name SCIM calls ``userName`` (``None``: ``userName`` is the email)
    user_name: str | None = None
    display_name: str | None = None
    #: phone type (``work``, ``mobile``, ``fax``) -> person attribute
    phones: Mapping[str, str] = field(default_factory=dict)
    employee_number: str | None = None
    department: str | None = None
    #: the attribute holding the manager's primary key
    manager: str | None = None
    #: a unique text column holding the SCIM id (``None``: the primary key is the SCIM id)
    scim_id: str | None = None
    #: naive-UTC timestamps the adapter sets on create and on every change
    created_at: str | None = None
    updated_at: str | None = None


@dataclass(frozen=True)
class TeamMapping:
    """Where the team model keeps each field (``None``: the host has none)."""

    name: str = "name"
    scim_id: str | None = None
    created_at: str | None = None
    updated_at: str | None = None


@dataclass(frozen=True)
class AccessMapping:
    """How the person model records dashboard access (all optional, like :class:`PersonMapping`).

    ``role`` holds ``role_values[Role]`` for admins and managers and ``no_access`` otherwise;
    ``all_teams`` (a boolean attribute) marks a scope of every team; ``scope`` is a
    many-to-many relationship to the team model holding a manager's teams.
    """

    role: str | None = Default("role")
    role_values: Mapping[Role, Any] = field(
        default_factory=lambda: {Role.ADMIN: "admin", Role.MANAGER: "manager"}
    )
    no_access: Any = "employee"
    all_teams: str | None = Default("sees_all_teams")
    scope: str | None = Default("scoped_teams")


class SQLAlchemyDirectoryAdapter(DirectoryAdapter):
    """A :class:`~flask_csvdirectory.DirectoryAdapter` over Flask-SQLAlchemy models.

    ::

        adapter = SQLAlchemyDirectoryAdapter(db, person_model=User, team_model=Team)

    ``org_attribute`` names a column present on both models holding the organization key, for
    multi-organization hosts; without it the directory is the whole table.
    """

    def __init__(
        self,
        db: Any,
        *,
        person_model: type,
        team_model: type | None = None,
        person: PersonMapping | None = None,
        access: AccessMapping | None = None,
        team_name: str = "name",
        team: TeamMapping | None = None,
        org_attribute: str | None = None,
        extra_columns: Sequence[ExtraColumn] = (),
    ) -> None:
        self.db = db
        self.person_model = person_model
        self.team_model = team_model
        self.person = person or PersonMapping()
        self.access = access or AccessMapping()
        self.team = team or TeamMapping(name=team_name)
        self.team_name = self.team.name
        self.org_attribute = org_attribute
        self.extra_columns = tuple(extra_columns)
        self.scim_ids = self.person.scim_id is not None
        self._problems = self._resolve_mapping()
        self._role_by_value = {value: role for role, value in self.access.role_values.items()}
        self._key_maps: dict[type, dict[str, str]] = {}
        self._limits: Mapping[str, FieldLimit] | None = None
        #: statements built once (see _people_select)
        self._selects: dict[str, Any] = {}
        #: totals and deep-page positions, kept while the directory's version stays the same
        self._cache = versions.VersionedCache()
        #: text indexes of logins and emails, built in the background
        self._text_indexes = _TextIndexes()
        self._watch()
        #: change fields stored as-is -> person attribute (fields the host lacks left out)
        self._plain_fields = {
            name: attribute
            for name in (
                "email", "first_name", "last_name", "active", "title", "external_id",
                "user_name", "display_name", "employee_number", "department", "scim_id",
            )
            if (attribute := getattr(self.person, name))
        }

    # -- checking the mapping against the models -----------------------------------------

    def _resolve_mapping(self) -> list[str]:
        """Check every mapped attribute against the models; drop the default ones they lack.

        Returns the problems (each with its fix); :meth:`configuration_problems` reports them.
        """
        problems: list[str] = []
        P, T = self.person_model, self.team_model
        person_name = getattr(P, "__name__", repr(P))
        try:
            person_mapper: Any = inspect(P)
        except Exception:
            return [f"person_model={person_name} is not a mapped SQLAlchemy model class."]
        team_mapper: Any = None
        if T is not None:
            try:
                team_mapper = inspect(T)
            except Exception:
                problems.append(f"team_model={T!r} is not a mapped SQLAlchemy model class.")
                T = self.team_model = None

        def column(mapper: Any, model_name: str, attribute: str | None, what: str,
                   kind: tuple[type, ...], kind_name: str, required: bool = False) -> str | None:
            """The attribute if ``model`` maps it as a column of ``kind``; else a problem."""
            if attribute is None:
                return None
            prop = mapper.attrs.get(attribute)
            if prop is None or not isinstance(prop, ColumnProperty):
                if isinstance(attribute, Default) and prop is None and not required:
                    return None  # optional and absent: not stored
                if prop is not None or hasattr(mapper.class_, attribute):
                    found = "is not a mapped column (a property or relationship?)"
                else:
                    found = "does not exist"
                needed = " (required)" if required else ""
                owner, _, field_name = what.rpartition(".")
                example = f"{owner}({field_name}='...')" if owner else f"{what}='...'"
                problems.append(
                    f"{model_name}.{attribute} ({what}{needed}) {found}. Add that column, or "
                    f"map {what} to the attribute that holds it, e.g. {example}."
                )
                return None
            column_type = prop.columns[0].type
            if kind and not isinstance(column_type, kind):
                problems.append(
                    f"{model_name}.{attribute} ({what}) is {type(column_type).__name__}, not "
                    f"{kind_name}. Map {what} to a {kind_name} column."
                )
                return None
            return attribute

        text, boolean = (String, Text), (Boolean,)
        m, a = self.person, self.access
        email = column(person_mapper, person_name, m.email or "email", "PersonMapping.email",
                       text, "string", required=True)
        active = column(person_mapper, person_name, m.active or "active",
                        "PersonMapping.active", boolean, "boolean", required=True)
        resolved = {
            "first_name": column(person_mapper, person_name, m.first_name,
                                 "PersonMapping.first_name", text, "string"),
            "last_name": column(person_mapper, person_name, m.last_name,
                                "PersonMapping.last_name", text, "string"),
            "title": column(person_mapper, person_name, m.title, "PersonMapping.title", text,
                            "string"),
            "external_id": column(person_mapper, person_name, m.external_id,
                                  "PersonMapping.external_id", text, "string"),
            "team_id": None,
        }
        if T is not None:
            resolved["team_id"] = column(person_mapper, person_name, m.team_id,
                                         "PersonMapping.team_id", (), "")
        elif m.team_id is not None and not isinstance(m.team_id, Default):
            problems.append(
                f"PersonMapping.team_id={m.team_id!r} needs a team model: pass team_model=... "
                "to SQLAlchemyDirectoryAdapter, or set team_id=None."
            )
        team_name_ok = True
        if T is not None and team_mapper is not None:
            team_model_name = getattr(T, "__name__", repr(T))
            team_name_ok = column(team_mapper, team_model_name, self.team_name,
                                  "team_name", text, "string") is not None
        for name in (
            "user_name", "display_name", "employee_number", "department", "manager", "scim_id",
            "created_at", "updated_at",
        ):  # optional SCIM attributes: None unless the host names one, which must exist
            column(person_mapper, person_name, getattr(m, name, None), f"PersonMapping.{name}",
                   (), "")
        if T is not None and team_mapper is not None:
            for name in ("scim_id", "created_at", "updated_at"):
                column(team_mapper, getattr(T, "__name__", repr(T)),
                       getattr(self.team, name, None), f"TeamMapping.{name}", (), "")
        for csv_column, attribute in m.extra.items():
            column(person_mapper, person_name, attribute, f"PersonMapping.extra[{csv_column!r}]",
                   (), "")
        if self.org_attribute is not None:
            column(person_mapper, person_name, self.org_attribute, "org_attribute", (), "")
            if T is not None and team_mapper is not None:
                column(team_mapper, getattr(T, "__name__", repr(T)), self.org_attribute,
                       "org_attribute", (), "")
        for attribute in m.defaults:
            if attribute not in person_mapper.attrs:
                problems.append(
                    f"PersonMapping.defaults sets {person_name}.{attribute}, which {person_name} "
                    "does not map. Remove it or add the column."
                )

        role = column(person_mapper, person_name, a.role, "AccessMapping.role", (), "")
        all_teams = column(person_mapper, person_name, a.all_teams, "AccessMapping.all_teams",
                           boolean, "boolean") if role else None
        scope = None
        if a.scope is not None and role is not None:
            prop = person_mapper.attrs.get(a.scope)
            if prop is None:
                if not isinstance(a.scope, Default):
                    problems.append(
                        f"{person_name}.{a.scope} (AccessMapping.scope): {person_name} has no "
                        f"relationship {a.scope!r}. Add a many-to-many relationship to the team "
                        "model, or set scope=None."
                    )
            elif (
                not isinstance(prop, RelationshipProperty)
                or prop.secondary is None
                or T is None
                or prop.mapper.class_ is not T
            ):
                problems.append(
                    f"{person_name}.{a.scope} (AccessMapping.scope) must be a many-to-many "
                    "relationship (secondary=...) to the team model. Fix it, or set scope=None."
                )
            else:
                scope = a.scope
        self.person = replace(
            self.person,
            email=email or m.email,
            active=active or m.active,
            first_name=resolved["first_name"],
            last_name=resolved["last_name"],
            title=resolved["title"],
            external_id=resolved["external_id"],
            team_id=resolved["team_id"] if team_name_ok else None,
        )
        self.access = replace(self.access, role=role, all_teams=all_teams, scope=scope)
        return problems

    def _watch(self) -> None:
        """Have the host's own writes to people and teams move the directory's version (see
        :mod:`flask_csvdirectory.versions`): only the attributes this adapter reads count."""
        if self._problems:
            return
        m, a = self.person, self.access
        attributes = {
            value for value in (
                m.email, m.first_name, m.last_name, m.title, m.external_id, m.team_id,
                m.active, m.user_name, m.display_name, m.employee_number, m.department,
                m.manager, m.scim_id, m.created_at, m.updated_at, a.role, a.all_teams,
                a.scope, self.org_attribute,
            ) if value
        }
        attributes.update(m.phones.values())
        attributes.update(m.extra.values())
        mapper: Any = inspect(self.person_model)
        columns = {
            prop.columns[0] for prop in map(mapper.get_property, attributes)
            if isinstance(prop, ColumnProperty)
        }
        attributes.update(  # a relationship setting a watched column (``user.team = ...``)
            relation.key for relation in mapper.relationships
            if any(column in columns for column in relation.local_columns)
        )
        scope = self._scope_table()
        versions.watch(
            self.person_model, org_attribute=self.org_attribute,
            attributes=frozenset(attributes), tables=() if scope is None else (scope[0],),
        )
        if self.team_model is not None:
            versions.watch(self.team_model, org_attribute=self.org_attribute)

    def configuration_problems(self) -> list[str]:
        """Every mapped attribute the models lack or map with the wrong type, with the fix."""
        return list(self._problems)

    @property
    def fields(self) -> frozenset[str]:
        """The optional fields the host's models hold (after checking the mapping)."""
        m, a = self.person, self.access
        held = {
            name for name in ("first_name", "last_name", "title", "external_id")
            if getattr(m, name) is not None
        }
        if self.team_model is not None and m.team_id is not None:
            held.add("team")
        if a.role is not None:
            held.add("access")
            if a.scope is not None:
                held.add("scope")
        return frozenset(held)

    def is_admin(self, user: Any) -> bool | None:
        """Whether ``user`` (a person model instance) holds the Admin role value."""
        role = self.access.role
        if role is None or not isinstance(user, self.person_model):
            return None
        return bool(getattr(user, role, None) == self.access.role_values.get(Role.ADMIN))

    # -- mapping helpers ------------------------------------------------------------------

    def _teams_model(self) -> type:
        """The team model; :class:`LookupError` when the host has none (teams not stored)."""
        if self.team_model is None:
            raise LookupError("this directory stores no teams (no team_model)")
        return self.team_model

    def _column(self, model: type, attribute: str | None) -> Any:
        assert attribute is not None, "an optional attribute the host lacks was used"
        return getattr(model, attribute)

    def _pk(self, model: type) -> Any:
        return inspect(model).primary_key[0]

    def _pk_attr(self, model: type) -> str:
        return inspect(model).get_property_by_column(self._pk(model)).key

    def _org_filter(self, model: type, org: str) -> list[Any]:
        if self.org_attribute is None:
            return []
        return [getattr(model, self.org_attribute) == org]

    def _org_values(self, org: str) -> dict[str, Any]:
        return {} if self.org_attribute is None else {self.org_attribute: org}

    def _scope_table(self) -> tuple[Any, Any, Any] | None:
        """(secondary table, its person-id column, its team-id column) of the scope relation."""
        if self.access.scope is None:
            return None
        prop: Any = inspect(self.person_model).get_property(self.access.scope)
        assert isinstance(prop, RelationshipProperty) and prop.secondary is not None
        assert prop.secondary_synchronize_pairs is not None  # many-to-many: always set
        person_col = prop.synchronize_pairs[0][1]
        team_col = prop.secondary_synchronize_pairs[0][1]
        return prop.secondary, person_col, team_col

    @property
    def session(self) -> Any:
        """The host's session."""
        return self.db.session

    # -- limits ---------------------------------------------------------------------------

    def field_limits(self) -> Mapping[str, FieldLimit]:
        """Column lengths and NOT NULL constraints read from the host's models: the person
        columns the mapping names, the team name, the extra columns' attributes; the display
        name of a dashboard-only account gets the shorter of first and last name."""
        if self._limits is None:
            P, m = self.person_model, self.person
            attributes: dict[str, tuple[type, str | None]] = {
                "email": (P, m.email),
                "first_name": (P, m.first_name),
                "last_name": (P, m.last_name),
                "title": (P, m.title),
                "external_id": (P, m.external_id),
                "team": (self.team_model, self.team_name),  # type: ignore[dict-item]
                "user_name": (P, m.user_name),
                "display_name": (P, m.display_name),
                "phone": (P, next(iter(m.phones.values()), None)),
                "employee_number": (P, m.employee_number),
                "department": (P, m.department),
                **{name: (P, attribute) for name, attribute in m.extra.items()},
            }
            limits = {
                name: _column_limit(model, attribute)
                for name, (model, attribute) in attributes.items()
                if attribute is not None
            }
            names = [limits[k].max_length for k in ("first_name", "last_name") if k in limits]
            lengths = [length for length in names if length is not None]
            limits["name"] = FieldLimit(min(lengths) if lengths else None)
            self._limits = MappingProxyType(limits)
        return self._limits

    # -- reads ----------------------------------------------------------------------------

    def _teams(self, org: str) -> list[TeamRecord]:
        T = self.team_model
        if T is None:
            return []
        rows = self.session.execute(
            select(self._pk(T), self._column(T, self.team_name)).where(*self._org_filter(T, org))
        ).all()
        return [TeamRecord(key=str(key), name=name) for key, name in rows]

    def snapshot(self, org: str) -> DirectorySnapshot:
        """Read people, teams and access with a few Core column queries (no ORM objects)."""
        P, m, a = self.person_model, self.person, self.access
        teams = self._teams(org)
        team_names = {team.key: team.name for team in teams}

        def optional(attribute: str | None) -> Any:
            return self._column(P, attribute) if attribute else null()

        extra_names = list(m.extra)
        query = select(
            self._pk(P),
            self._column(P, m.email),
            optional(m.first_name),
            optional(m.last_name),
            optional(m.title),
            optional(m.external_id),
            optional(m.team_id if self.team_model is not None else None),
            self._column(P, m.active),
            optional(a.role),
            optional(a.all_teams),
            *(self._column(P, m.extra[name]) for name in extra_names),
        ).where(*self._org_filter(P, org))

        connection = self.session.connection()
        scopes: dict[str, list[str]] = defaultdict(list)
        scope = self._scope_table()
        if scope is not None:
            table, person_col, team_col = scope
            for person_id, team_id in connection.execute(select(person_col, team_col)):
                name = team_names.get(str(team_id))
                if name is not None:
                    scopes[str(person_id)].append(name)

        people: list[PersonRecord] = []
        access: list[AccessRecord] = []
        role_by_value = self._role_by_value
        titles: dict[str, str] = {}  # one string per job title (titles repeat)
        # yield_per: PostgreSQL streams the people through a server-side cursor, CHUNK rows per
        # fetch, instead of holding the whole result in the client (~80 MB per 300k people)
        # and fetching it row by row; SQLite reads as before.
        for row in connection.execute(query.execution_options(yield_per=CHUNK)):
            key_value, email, first, last, title, external_id, team_id, active = row[:8]
            if title:
                title = titles.setdefault(title, title)
            role_value, every = row[8], row[9]
            key = str(key_value)
            person = PersonRecord(
                key=key,
                email=email,
                first_name=first or "",
                last_name=last or "",
                title=title or "",
                external_id=external_id,
                team=None if team_id is None else team_names.get(str(team_id)),
                active=bool(active),
                extra=(
                    {name: _text(value) for name, value in zip(extra_names, row[10:], strict=True)}
                    if extra_names
                    else _NO_EXTRA
                ),
            )
            people.append(person)
            role = role_by_value.get(role_value)
            if role is not None:
                if role is Role.ADMIN or every:
                    scope_names: tuple[str, ...] = (ALL_TEAMS,)
                else:
                    scope_names = tuple(sorted(scopes.get(key, ())))
                access.append(
                    AccessRecord(
                        email=email,
                        role=role,
                        teams=scope_names,
                        name=f"{person.first_name} {person.last_name}".strip(),
                        person_key=key,
                    )
                )
        return DirectorySnapshot.build(people, teams, access, fields=self.fields)

    # -- queries: SQL WHERE / ORDER BY / LIMIT / OFFSET, one page of records ------------

    def find_people(self, org: str, query: Query) -> Page[PersonRecord]:
        """People matching ``query``, as SQL: a COUNT and one page of rows (plus one query for
        the page's team names). Text comparisons use ``lower()``: index ``lower(email)`` and
        ``lower(<user name>)`` for cheap look-ups."""
        check_fields(query, PERSON_FIELDS)
        P, m = self.person_model, self.person
        where = [*self._org_filter(P, org)]
        version = self._version(org)
        if query.where is not None:
            condition = self._text_matches(org, query.where, version)
            where.append(self._sql(condition, self._person_column))
        counted = (org, "people", query.where)
        if query.limit == 0:
            return Page(self._count(P, where, version, counted), [])
        phone_types = list(m.phones)
        extra_names = list(m.extra)
        statement = self._people_select().where(*where)
        order = self._order(query, self._person_column, P)
        if query.offset > DEEP_OFFSET:
            # a deep page: skip through the keys alone (from the nearest mark of a cached
            # position, else a scan of the narrowest index), then read the page's rows by key
            keys, marks = self._deep_keys(P, where, query, order, version, counted)
            statement = statement.where(self._pk(P).in_(keys.scalar_subquery()))
        else:
            statement = statement.offset(query.offset)
            if query.limit is not None:
                statement = statement.limit(query.limit + 1)  # one more: is there a next page?
            marks = None
        statement = statement.order_by(*order)
        rows = self.session.execute(statement).all()
        if marks is not None and rows:  # where this page and the next one start
            marks.add(query.offset, rows[0][0])
            if query.limit is not None and len(rows) > query.limit:
                marks.add(query.offset + query.limit, rows[query.limit][0])
        total = self._total(P, where, query, len(rows), version, counted)
        rows = rows[: query.limit] if query.limit is not None else rows
        people = []
        for row in rows:
            (key, email, first, last, title, external_id, team_id, active, role_value,
             user_name, display_name, employee_number, department, manager, scim_id,
             created_at, updated_at) = row[:17]
            phones = {
                kind: value for kind, value in zip(phone_types, row[17:], strict=False) if value
            }
            extras = row[17 + len(phone_types):-1]
            team_name = row[-1]
            people.append(
                PersonRecord(
                    key=str(key), email=email, first_name=first or "", last_name=last or "",
                    title=title or "", external_id=external_id,
                    team=team_name,
                    team_key=None if team_id is None else str(team_id),
                    active=bool(active),
                    extra=(
                        {n: _text(v) for n, v in zip(extra_names, extras, strict=True)}
                        if extra_names
                        else _NO_EXTRA
                    ),
                    user_name=user_name or "", display_name=display_name or "",
                    phones=phones, employee_number=employee_number or "",
                    department=department or "",
                    manager=None if manager is None else str(manager),
                    scim_id=scim_id, created_at=_aware(created_at),
                    updated_at=_aware(updated_at), role=self._role_by_value.get(role_value),
                )
            )
        return Page(total, people)

    def _text_matches(self, org: str, condition: Condition, version: _Version) -> Condition:
        """``condition`` with each ``co``/``ew`` on the login or the email answered from an
        in-memory index of that column (:class:`_TextIndex`, kept while the directory's
        version stays the same) as the keys that match: a ``LIKE '%...%'`` reads every row,
        which no B-tree index avoids. Values the index does not hold (NULL, beyond ASCII,
        with a line break) stay with SQL through their keys; the whole term is left to SQL
        when nothing may be cached, the index is not built yet, or more than
        :data:`TEXT_MATCHES` keys would be listed."""
        if isinstance(condition, Negate):
            return Negate(self._text_matches(org, condition.term, version))
        if isinstance(condition, (AllOf, AnyOf)):
            return type(condition)(
                tuple(self._text_matches(org, term, version) for term in condition.terms)
            )
        if (
            condition.field not in ("user_name", "email")
            or condition.op not in (Op.CO, Op.EW)
            or not isinstance(condition.value, str)
            or not condition.value
        ):
            return condition
        stamp = version.stamp() if self._builds_in_background() else None
        index = None
        if stamp is not None:
            field_name = condition.field
            index = self._text_indexes.get(
                (org, field_name), stamp, lambda: self._text_index(org, field_name)
            )
        found = None if index is None else index.find(condition.value, condition.op is Op.EW)
        if found is None:
            return condition
        keys, others = found
        terms: list[Condition] = []
        if keys:  # one IN list
            terms.append(AnyOf(tuple(Compare("key", Op.EQ, key) for key in keys)))
        if others:  # values the index does not hold: SQL compares them (NULL stays unknown)
            terms.append(AllOf((AnyOf(tuple(Compare("key", Op.EQ, k) for k in others)),
                                condition)))
        if not terms:
            return Negate(Compare("key", Op.PR))  # nobody
        return terms[0] if len(terms) == 1 else AnyOf(tuple(terms))

    def _engine(self) -> Any:
        """The engine of the person model."""
        return self.session.get_bind(mapper=inspect(self.person_model))

    def _connection(self) -> Any:
        """The session's connection to the person model's database (a transaction begins)."""
        return self.session.connection(bind_arguments={"mapper": inspect(self.person_model)})

    def _builds_in_background(self) -> bool:
        """Whether a thread may read the directory on a connection of its own: not with one
        connection for everything (``StaticPool``, a SQLite database in memory)."""
        engine = self._engine()
        return not isinstance(engine.pool, (StaticPool, SingletonThreadPool)) and not (
            engine.dialect.name == "sqlite" and engine.url.database in (None, "", ":memory:")
        )

    def _text_index(
        self, org: str, name: str
    ) -> Callable[[], tuple[tuple[int, int], _TextIndex] | None]:
        """How to build the text index of field ``name`` on a connection of its own (in the
        background): the version first, then every key and value."""
        P = self.person_model
        statement = select(self._pk(P), self._person_column(name)).where(
            *self._org_filter(P, org)
        )
        engine = self._engine()

        def build() -> tuple[tuple[int, int], _TextIndex] | None:
            with engine.connect() as connection:
                stamp = versions.read(connection, org)
                if stamp is None:
                    return None
                return stamp, _TextIndex.build(connection.execute(statement).all())

        return build

    def _people_select(self) -> Any:
        """The columns of a person record, with the team's name (built once: a statement is
        immutable, and building it is a good part of a look-up's cost)."""
        statement = self._selects.get("people")
        if statement is None:
            P, m, a = self.person_model, self.person, self.access

            def optional(attribute: str | None) -> Any:
                return self._column(P, attribute) if attribute else null()

            columns = [
                self._pk(P), self._column(P, m.email), self._column(P, m.first_name),
                self._column(P, m.last_name), optional(m.title), optional(m.external_id),
                self._column(P, m.team_id), self._column(P, m.active), self._column(P, a.role),
                optional(m.user_name), optional(m.display_name), optional(m.employee_number),
                optional(m.department), optional(m.manager), optional(m.scim_id),
                optional(m.created_at), optional(m.updated_at),
                *(self._column(P, m.phones[kind]) for kind in m.phones),
                *(self._column(P, m.extra[name]) for name in m.extra),
            ]
            T = self._teams_model()
            statement = self._selects["people"] = (
                select(*columns, self._column(T, self.team.name))
                .select_from(P)
                .outerjoin(T, self._column(P, m.team_id) == self._pk(T))
            )
        return statement

    def find_teams(self, org: str, query: Query) -> Page[TeamRecord]:
        """Teams matching ``query``, as SQL (``member`` conditions become an ``EXISTS``)."""
        check_fields(query, TEAM_FIELDS)
        T, t = self._teams_model(), self.team
        where = [*self._org_filter(T, org)]
        if query.where is not None:
            where.append(self._sql(query.where, self._team_column))
        counted = (org, "teams", query.where)
        version = self._version(org)
        if query.limit == 0:
            return Page(self._count(T, where, version, counted), [])

        def optional(attribute: str | None) -> Any:
            return self._column(T, attribute) if attribute else null()

        statement = select(
            self._pk(T), self._column(T, t.name), optional(t.scim_id), optional(t.created_at),
            optional(t.updated_at),
        ).where(*where)
        statement = statement.order_by(*self._order(query, self._team_column, T))
        statement = statement.offset(query.offset)
        if query.limit is not None:
            statement = statement.limit(query.limit + 1)  # one more: is there a next page?
        teams = [
            TeamRecord(str(key), name, scim_id, _aware(created), _aware(updated))
            for key, name, scim_id, created, updated in self.session.execute(statement)
        ]
        total = self._total(T, where, query, len(teams), version, counted)
        return Page(total, teams[: query.limit] if query.limit is not None else teams)

    def team_member_ids(
        self, org: str, team_key: str, *, offset: int = 0, limit: int | None = None
    ) -> Page[str]:
        """The members' SCIM ids: one column, by primary key (retired ids left out)."""
        P, m = self.person_model, self.person
        where = [self._column(P, m.team_id) == _key(team_key), *self._org_filter(P, org)]
        id_column = self._column(P, m.scim_id) if m.scim_id else self._pk(P)
        if m.scim_id:
            where.append(id_column.is_not(None))
        version = self._version(org)
        statement = select(id_column).where(*where).order_by(self._pk(P)).offset(offset)
        if limit is not None:
            statement = statement.limit(limit + 1)  # one more: is there a next page?
        # thousands of rows of one column: Core rows, no ORM result processing
        ids = [str(value) for value in self.session.connection().execute(statement).scalars()]
        total = self._total(
            P, where, Query(offset=offset, limit=limit), len(ids), version,
            (org, "members", team_key),
        )
        return Page(total, ids[:limit] if limit is not None else ids)

    def _total(
        self, model: type, where: list[Any], query: Query, found: int, version: _Version,
        counted: tuple[Any, ...],
    ) -> int:
        """How many match, ``found`` being the rows read for the page plus one: known without
        a COUNT when that is the whole result (look-ups, small results, a last page)."""
        if query.limit is None or found <= query.limit:
            if query.offset == 0 or found > 0:
                return query.offset + found
        return self._count(model, where, version, counted)

    def _count(
        self, model: type, where: list[Any], version: _Version, counted: tuple[Any, ...]
    ) -> int:
        """The COUNT of the matches; kept (under ``counted``: organization, what, condition)
        while the organization's directory version stays the same."""

        def count() -> int:
            return int(
                self.session.scalar(select(func.count()).select_from(model).where(*where)) or 0
            )

        found = self._kept(version, counted, count)
        return count() if found is None else cast(int, found)

    def _version(self, org: str) -> _Version:
        """The directory version for one query: read once, on first need, before the data
        whatever is kept under it is read from (see :mod:`flask_csvdirectory.versions`)."""
        return _Version(lambda: versions.current(self.session, org, inspect(self.person_model)))

    def _kept(self, version: _Version, key: tuple[Any, ...], read: Callable[[], Any]) -> Any:
        """What ``read()`` gave at the query's directory version, kept or read now and kept;
        ``None`` when nothing may be cached (the caller reads afresh)."""
        stamp = version.stamp()
        if stamp is None:
            return None
        try:
            found = self._cache.get(key, stamp)
        except TypeError:  # a condition holding an unhashable value: not kept
            return None
        if found is versions.MISSING:
            found = read()
            self._cache.put(key, stamp, found)
        return found

    def _deep_keys(
        self, model: type, where: list[Any], query: Query, order: list[Any], version: _Version,
        counted: tuple[Any, ...],
    ) -> tuple[Any, _Marks | None]:
        """The keys of a deep page, and the marks to note where it starts. In the default order
        (by key) the keys start from the nearest *mark* before the page: a position whose key a
        page read earlier at the same directory version (every page notes its first key and
        the next page's), so paging through in order skips nothing, and any other deep page
        skips the keys from the nearest mark instead of every key before it."""
        pk = self._pk(model)
        keys = select(pk).where(*where).order_by(*order)
        marks = None
        skip = query.offset
        if query.order_by in (None, "key"):
            marks = self._kept(version, (*counted, "marks", query.descending), _Marks)
            nearest = marks.before(query.offset) if marks is not None else None
            if nearest is not None:
                position, key = nearest
                keys = keys.where(pk <= key if query.descending else pk >= key)
                skip = query.offset - position
        keys = keys.offset(skip)
        keys = keys if query.limit is None else keys.limit(query.limit + 1)
        return keys, marks

    def _order(self, query: Query, column_of: Any, model: type) -> list[Any]:
        pk = self._pk(model)
        if query.order_by is None or query.order_by == "key":
            return [pk.desc() if query.descending else pk]
        column = column_of(query.order_by)
        if isinstance(column, list):
            column = column[0]
        if query.order_by not in CASE_EXACT and _is_text(column):
            column = func.lower(column)
        return [column.desc() if query.descending else column, pk]

    def _person_column(self, name: str) -> Any:
        """The SQL expression of a person field (a list of columns for ``phone``)."""
        P, m = self.person_model, self.person
        attribute = {
            "key": None, "id": m.scim_id, "user_name": m.user_name or m.email,
            "email": m.email, "external_id": m.external_id, "first_name": m.first_name,
            "last_name": m.last_name, "display_name": m.display_name, "title": m.title,
            "active": m.active, "employee_number": m.employee_number,
            "department": m.department, "manager": m.manager, "team": m.team_id,
            "role": self.access.role, "created_at": m.created_at, "updated_at": m.updated_at,
        }
        if name == "phone":
            return [self._column(P, column) for column in m.phones.values()]
        if name == "user_name" and m.user_name:  # the login name, else the email
            return func.coalesce(self._column(P, m.user_name), self._column(P, m.email))
        if name == "key" or (name == "id" and m.scim_id is None):
            return self._pk(P)
        column = attribute.get(name)
        return None if column is None else self._column(P, column)

    def _team_column(self, name: str) -> Any:
        T, t = self._teams_model(), self.team
        if name == "key" or (name == "id" and t.scim_id is None):
            return self._pk(T)
        if name == "member":
            return "member"
        column = {"name": t.name, "id": t.scim_id, "created_at": t.created_at,
                  "updated_at": t.updated_at}.get(name)
        return None if column is None else self._column(T, column)

    def _sql(self, condition: Condition, column_of: Any) -> Any:
        """A query condition as a SQL boolean expression."""
        if isinstance(condition, AllOf):
            return and_(*(self._sql(term, column_of) for term in condition.terms))
        if isinstance(condition, AnyOf):
            listed = self._in_list(condition, column_of)
            if listed is not None:
                return listed
            return or_(*(self._sql(term, column_of) for term in condition.terms))
        if isinstance(condition, Negate):
            return not_(self._sql(condition.term, column_of))
        column = column_of(condition.field)
        if column is None:  # a field this host does not store: never present, never equal
            return true() if condition.op is Op.NE else false()
        if isinstance(column, list):
            if not column:
                return false()
            return or_(*(self._compare(c, condition, condition.field) for c in column))
        if isinstance(column, str) and column == "member":
            P = self.person_model
            person_key = _key(str(condition.value))
            exists = (
                select(self._pk(P))
                .where(
                    self._column(P, self.person.team_id) == self._pk(self._teams_model()),
                    self._pk(P) == person_key,
                )
                .exists()
            )
            return exists if condition.op is not Op.NE else not_(exists)
        return self._compare(column, condition, condition.field)

    def _in_list(self, condition: AnyOf, column_of: Any) -> Any:
        """``field IN (...)`` for an ``AnyOf`` of equalities of one identifier field (a page's
        teams, managers, a group's members): one bound list instead of an ``OR`` per value,
        which SQLAlchemy would compile anew for every length. ``None`` when it does not apply."""
        terms = condition.terms
        first = terms[0] if terms else None
        if (
            not isinstance(first, Compare)
            or first.field not in ("key", "id", "team", "manager")
            or not all(
                isinstance(t, Compare) and t.field == first.field and t.op is Op.EQ
                for t in terms
            )
        ):
            return None
        column = column_of(first.field)
        if column is None or isinstance(column, (list, str)):
            return None
        text = _is_text(column)
        values: list[Any] = []
        for term in terms:
            value = cast(Compare, term).value
            if first.field != "id" or not text:
                value = _key(str(value))
            if isinstance(value, str) and not text:
                continue  # a text value never equals an integer key
            values.append(value)
        return column.in_(values) if values else false()

    def _compare(self, column: Any, condition: Compare, name: str) -> Any:
        op, value = condition.op, condition.value
        if name == "role":
            role_values = self.access.role_values
            if op is Op.PR:
                return column != self.access.no_access
            wanted = {r.value.casefold(): v for r, v in role_values.items()}.get(
                str(value).casefold()
            )
            if wanted is None:
                return true() if op is Op.NE else false()
            return column == wanted if op is Op.EQ else column != wanted
        if op is Op.PR:
            present = column.is_not(None)
            if name == "id" or not _is_text(column):  # ids are never empty: the index answers
                return present
            return and_(present, column != "")
        if name in ("key", "team", "manager") or (name == "id" and not _is_text(column)):
            value = _key(str(value))
            if isinstance(value, str) and not _is_text(column):
                return true() if op is Op.NE else false()
        elif isinstance(value, datetime) or name in ("created_at", "updated_at"):
            value = _naive_utc(value)
        folded = _is_text(column) and isinstance(value, str) and name not in CASE_EXACT
        if folded and op in (Op.CO, Op.SW, Op.EW):
            # SQLite's LIKE ignores ASCII case by itself (and its lower() is ASCII-only);
            # PostgreSQL's ILIKE: no lower() per row either way (a trigram index answers it)
            pattern = _like_pattern(str(value), op)
            if self.session.get_bind().dialect.name == "postgresql":
                return column.ilike(pattern, escape="\\")
            like = column.like(pattern, escape="\\")
            prefix = str(value).translate(_ASCII_LOWER)
            if op is Op.SW and prefix and prefix[-1] < chr(0x10FFFF):
                # a prefix is a range of lower(column): an index on lower(column) (the
                # example platform has lower(email) and lower(login)) seeks it
                above = prefix[:-1] + chr(ord(prefix[-1]) + 1)
                lowered = func.lower(column)
                return and_(lowered >= prefix, lowered < above, like)
            return like
        if folded:
            column, value = func.lower(column), value.lower()
        if op is Op.EQ:
            return column == value
        if op is Op.NE:
            return or_(column != value, column.is_(None))
        if op is Op.CO:
            return column.contains(str(value), autoescape=True)
        if op is Op.SW:
            return column.startswith(str(value), autoescape=True)
        if op is Op.EW:
            return column.endswith(str(value), autoescape=True)
        return {Op.GT: column > value, Op.GE: column >= value, Op.LT: column < value,
                Op.LE: column <= value}[op]

    # -- SCIM additions: single-record writes (each commits, or rolls back and raises) -----

    def delete_person(self, org: str, key: str) -> None:
        """Delete a person row and their dashboard scope rows for good (SCIM DELETE).

        Raises :class:`LookupError` when the organization has no such person. A host whose
        other tables reference people should override this (anonymise, soft-delete...).
        """
        P = self.person_model
        pk = self._pk(P)
        try:
            with versions.changing(self._connection(), org):
                found = self.session.execute(
                    select(pk).where(pk == _key(key), *self._org_filter(P, org))
                ).first()
                if found is None:
                    raise LookupError(f"no person with key {key!r}")
                scope = self._scope_table()
                if scope is not None:
                    table, person_col, _team_col = scope
                    self.session.execute(delete(table).where(person_col == _key(key)))
                if self.person.manager:
                    manager = self._column(P, self.person.manager)
                    self.session.execute(
                        update(P).where(manager == _key(key)).values({manager: None})
                    )
                self.session.execute(delete(P).where(pk == _key(key)))
                self.session.commit()
        except BaseException:
            self.session.rollback()
            raise

    def delete_team(self, org: str, name: str) -> None:
        """Delete a team nobody is in and no dashboard scope names (SCIM DELETE).

        Raises :class:`LookupError` for an unknown team, :class:`ValueError` when it is in use.
        """
        T, P = self._teams_model(), self.person_model
        try:
            with versions.changing(self._connection(), org):
                team_id = self._team_id(org, name)
                members = self.person.team_id is not None and self.session.scalar(
                    select(func.count())
                    .select_from(P)
                    .where(self._column(P, self.person.team_id) == team_id)
                )
                if members:
                    raise ValueError(f"team {name!r} is not empty")
                scope = self._scope_table()
                if scope is not None:
                    table, _person_col, team_col = scope
                    scoped = self.session.scalar(
                        select(func.count()).select_from(table).where(team_col == team_id)
                    )
                    if scoped:
                        raise ValueError(f"team {name!r} is in a dashboard scope")
                self.session.execute(delete(T).where(self._pk(T) == team_id))
                self.session.commit()
        except BaseException:
            self.session.rollback()
            raise

    def rename_team(self, org: str, name: str, new_name: str) -> None:
        """Rename a team in place (its id, members and scopes stay)."""
        T = self._teams_model()
        try:
            with versions.changing(self._connection(), org):
                team_id = self._team_id(org, name)
                holder = {normalize_team(t.name): t.key for t in self._teams(org)}.get(
                    normalize_team(new_name)
                )
                if holder is not None and _key(holder) != team_id:
                    raise ValueError(f"team {new_name!r} exists already")
                values: dict[Any, Any] = {self._column(T, self.team_name): new_name}
                if self.team.updated_at:
                    values[self._column(T, self.team.updated_at)] = now_naive_utc()
                self.session.execute(update(T).where(self._pk(T) == team_id).values(values))
                self.session.commit()
        except BaseException:
            self.session.rollback()
            raise

    def _team_id(self, org: str, name: str) -> Any:
        """The primary key of the organization's team called ``name`` (normalised match)."""
        wanted = normalize_team(name)
        if self.team_model is None:
            raise LookupError("this directory has no teams")
        for team in self._teams(org):
            if normalize_team(team.name) == wanted:
                return _key(team.key)
        raise LookupError(f"no team {name!r}")

    # -- apply ----------------------------------------------------------------------------

    def apply(
        self, org: str, changeset: ChangeSet, progress: ProgressCallback | None = None
    ) -> None:
        """Apply the change set in bulk, in one transaction of the host's session.

        Commits when every step succeeded; on any error rolls back and re-raises, leaving the
        directory exactly as it was.
        """
        session = self.session
        total = len(changeset)
        done = 0

        def step(count: int) -> None:
            nonlocal done
            done += count
            if progress is not None:
                progress(done, total)

        try:
            with versions.changing(self._connection(), org):
                created_teams = changeset.of_kind(ChangeKind.TEAM_CREATED)
                self._create_teams(org, [c.after["name"] for c in created_teams if c.after])
                step(len(created_teams))
                checkpoint("apply:teams-inserted", session)
                team_ids = _TeamKeys(
                    lambda: {normalize_team(t.name): t.key for t in self._teams(org)}
                )  # read on the first team a change names (a SCIM write often names none)

                created = changeset.of_kind(ChangeKind.EMPLOYEE_CREATED)
                self._create_people(org, [c.after for c in created if c.after], team_ids)
                step(len(created))
                checkpoint("apply:people-inserted", session)

                updates = changeset.of_kind(
                    ChangeKind.EMPLOYEE_REACTIVATED,
                    ChangeKind.EMPLOYEE_UPDATED,
                    ChangeKind.EMPLOYEE_MOVED,
                    ChangeKind.EMPLOYEE_DEACTIVATED,
                )
                merged: dict[str, dict[str, Any]] = defaultdict(dict)
                for change in updates:
                    if change.key is None:
                        raise ValueError(f"{change.kind} for {change.subject} has no person key")
                    after = dict(change.after or {})
                    extra = after.pop("extra", None)
                    target = merged[change.key]
                    target.update(after)
                    if extra:
                        target.setdefault("extra", {}).update(extra)
                self._update_people(merged, team_ids)
                self._touch_teams(
                    org,
                    [
                        name
                        for change in changeset.of_kind(ChangeKind.EMPLOYEE_MOVED)
                        for name in (
                            (change.before or {}).get("team"), (change.after or {}).get("team")
                        )
                    ],
                )
                step(len(updates))
                checkpoint("apply:people-updated", session)

                access = changeset.of_kind(
                    ChangeKind.ACCESS_GRANTED, ChangeKind.ACCESS_CHANGED, ChangeKind.ACCESS_REVOKED
                )
                self._apply_access(org, access, team_ids)
                step(len(access))
                checkpoint("apply:access-updated", session)
                session.commit()
        except BaseException:
            session.rollback()
            raise

    def _column_keys(self, model: type, row: Mapping[str, Any]) -> dict[str, Any]:
        """Attribute names -> table column keys, for Core statements (no ORM overhead); ``row``
        maps attribute names to values (or to columns of values)."""
        keys = self._key_maps.get(model)
        if keys is None:
            mapper: Any = inspect(model)
            keys = self._key_maps[model] = {
                attr.key: attr.columns[0].key for attr in mapper.column_attrs
            }
        return {keys[name]: value for name, value in row.items()}

    def _insert(self, model: type, rows: Sequence[Mapping[str, Any]]) -> None:
        """Core executemany INSERT of attribute-keyed rows, batched by key shape."""
        by_shape: dict[tuple[str, ...], list[Mapping[str, Any]]] = defaultdict(list)
        for row in rows:
            by_shape[tuple(row)].append(row)
        for shape, same_shape in by_shape.items():
            self._insert_columns(
                model,
                {name: [row[name] for row in same_shape] for name in shape},
                len(same_shape),
            )

    def _insert_columns(
        self, model: type, columns: Mapping[str, Sequence[Any]], count: int
    ) -> None:
        """Core executemany INSERT of ``count`` rows given column by column (attribute name ->
        one value per row): no dict per row is built on the fast paths."""
        if not count:
            return
        table: Any = inspect(model).local_table
        keys = self._column_keys(model, columns)
        connection = self.session.connection()
        if not _fast_insert(connection, table, keys, count):
            rows = [
                dict(zip(keys, values, strict=True))
                for values in zip(*keys.values(), strict=True)
            ]
            for chunk in _chunks(rows):
                connection.execute(insert(table), chunk)

    def _update_by_pk(self, model: type, rows: Sequence[Mapping[str, Any]]) -> None:
        """Core executemany UPDATE ... WHERE pk = :pk of attribute-keyed rows (pk included)."""
        pk_attr = self._pk_attr(model)
        by_shape: dict[tuple[str, ...], list[Mapping[str, Any]]] = defaultdict(list)
        for row in rows:
            by_shape[tuple(row)].append(row)
        for shape, same_shape in by_shape.items():
            self._update_columns(
                model,
                [row[pk_attr] for row in same_shape],
                {name: [row[name] for row in same_shape] for name in shape if name != pk_attr},
            )

    def _update_columns(
        self, model: type, keys: Sequence[Any], columns: Mapping[str, Sequence[Any]]
    ) -> None:
        """Set new values on the rows whose primary keys are ``keys``, the values given column
        by column (attribute name -> one value per key).

        PostgreSQL with psycopg 3: the values are copied into a temporary table and one
        ``UPDATE ... FROM`` sets them (:func:`.pgupdate.update_rows`); elsewhere, or for few
        rows, a Core executemany of ``UPDATE ... WHERE pk = :_pk``.
        """
        if not keys or not columns:
            return
        table: Any = inspect(model).local_table
        values = self._column_keys(model, columns)
        if update_rows(self.session.connection(), table, keys, values):
            return
        statement = (
            update(table)
            .where(self._pk(model) == bindparam("_pk"))
            .values({key: bindparam(key) for key in values})
        )
        names = [*values, "_pk"]
        rows = [
            dict(zip(names, row, strict=True))
            for row in zip(*values.values(), keys, strict=True)
        ]
        for chunk in _chunks(rows):
            self.session.execute(statement, chunk)

    def _create_teams(self, org: str, names: list[str]) -> None:
        if not names:
            return
        t, now = self.team, now_naive_utc()
        base: dict[str, Any] = {**self._org_values(org)}
        for stamp in (t.created_at, t.updated_at):
            if stamp:
                base[stamp] = now
        rows = [{t.name: name, **base} for name in names]
        if t.scim_id:
            for row in rows:
                row[t.scim_id] = new_scim_id()
        self._insert(self._teams_model(), rows)

    def _touch_teams(self, org: str, names: Iterable[str | None]) -> None:
        """Stamp ``updated_at`` on teams whose members changed (their Group changed)."""
        if not self.team.updated_at:
            return
        wanted = {normalize_team(name) for name in names if name}
        if not wanted:
            return
        keys = [_key(t.key) for t in self._teams(org) if normalize_team(t.name) in wanted]
        T = self._teams_model()
        for chunk in _chunks(keys):
            self.session.execute(
                update(T)
                .where(self._pk(T).in_(chunk))
                .values({self._column(T, self.team.updated_at): now_naive_utc()})
            )

    def _person_values(
        self,
        values: Mapping[str, Any],
        team_ids: Mapping[str, Any],
        base: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Translate change values (email, names, team, active, extra...) to model attributes,
        on top of ``base``."""
        columns = self._person_columns([values], team_ids, base or {})
        return {attribute: column[0] for attribute, column in columns.items()}

    def _person_columns(
        self,
        values: Sequence[Mapping[str, Any]],
        team_ids: Mapping[str, Any],
        base: Mapping[str, Any],
    ) -> dict[str, list[Any]]:
        """:meth:`_person_values` of many changes of one shape (the same keys, the same
        ``extra`` keys), column by column: attribute -> one value per change."""
        count = len(values)
        out: dict[str, list[Any]] = {name: [value] * count for name, value in base.items()}
        if not count:
            return out
        plain = self._plain_fields
        m = self.person
        for name in values[0]:
            column = list(map(itemgetter(name), values))
            attribute = plain.get(name)
            if attribute is not None:
                if name in _EMPTY_IS_NULL:
                    column = [None if value == "" else value for value in column]
                out[attribute] = column
            elif name == "team":
                if m.team_id is not None:
                    out[m.team_id] = [team_ids[value] if value else None for value in column]
            elif name == "extra" and column[0]:
                for csv_column in column[0]:
                    if csv_column in m.extra:
                        out[m.extra[csv_column]] = list(map(itemgetter(csv_column), column))
            elif name == "phones":
                for kind, attribute in m.phones.items():
                    out[attribute] = [(numbers or {}).get(kind) or None for numbers in column]
            elif name == "manager" and m.manager:
                out[m.manager] = [None if value is None else _key(value) for value in column]
        return out

    def _create_people(
        self, org: str, values: Iterable[Mapping[str, Any]], team_ids: Mapping[str, Any]
    ) -> None:
        m = self.person
        base = {**m.defaults, **self._org_values(org), m.active: True}
        if self.access.all_teams:
            base.setdefault(self.access.all_teams, False)
        if self.access.role:
            base.setdefault(self.access.role, self.access.no_access)
        now = now_naive_utc()
        for stamp in (m.created_at, m.updated_at):
            if stamp:
                base[stamp] = now
        for same_shape in _by_shape(values):
            columns = self._person_columns(same_shape, team_ids, base)
            if m.scim_id and m.scim_id not in columns:
                columns[m.scim_id] = new_scim_ids(len(same_shape))
            self._insert_columns(self.person_model, columns, len(same_shape))

    def _update_people(
        self, merged: Mapping[str, Mapping[str, Any]], team_ids: Mapping[str, Any]
    ) -> None:
        stamp = self.person.updated_at
        now = now_naive_utc()
        keys_of: dict[int, list[Any]] = {}
        for same_shape in _by_shape(merged.values(), keys=merged, keys_out=keys_of):
            columns = self._person_columns(same_shape, team_ids, {})
            if stamp:
                columns[stamp] = [now] * len(same_shape)
            self._update_columns(self.person_model, keys_of[id(same_shape)], columns)

    def _apply_access(self, org: str, changes: list[Change], team_ids: Mapping[str, Any]) -> None:
        if not changes or self.access.role is None:
            return
        role_attr: str = self.access.role
        P, a = self.person_model, self.access
        emails = {normalize_email(c.subject) for c in changes}
        ids = self._ids_by_email(org, emails)
        missing = [
            c for c in changes if normalize_email(c.subject) not in ids and c.after is not None
        ]
        if missing:  # dashboard-only accounts for emails no person has
            new_people = []
            for change in missing:
                first, _, last = ((change.after or {}).get("name") or "").strip().partition(" ")
                new_people.append(
                    {"email": normalize_email(change.subject), "first_name": first,
                     "last_name": last, "team": None}
                )
            self._create_people(org, new_people, team_ids)
            ids.update(self._ids_by_email(org, {str(p["email"]) for p in new_people}))

        pk = self._pk_attr(P)
        rows: list[dict[str, Any]] = []
        scoped: dict[Any, list[Any]] = {}
        for change in changes:
            person_id = ids[normalize_email(change.subject)]
            if change.kind is ChangeKind.ACCESS_REVOKED:
                row = {pk: person_id, role_attr: a.no_access}
                if a.all_teams:
                    row[a.all_teams] = False
                scoped[person_id] = []
            else:
                role = Role((change.after or {})["role"])
                teams = list((change.after or {})["teams"])
                every = role is Role.ADMIN or ALL_TEAMS in teams
                row = {pk: person_id, role_attr: a.role_values[role]}
                if a.all_teams:
                    row[a.all_teams] = every
                scoped[person_id] = (
                    [] if every else [team_ids[name] for name in teams]
                )
            if self.person.updated_at:
                row[self.person.updated_at] = now_naive_utc()
            rows.append(row)
        self._update_by_pk(P, rows)
        scope = self._scope_table()
        if scope is not None:
            table, person_col, team_col = scope
            person_ids = list(scoped)
            for chunk in _chunks(person_ids):
                self.session.execute(delete(table).where(person_col.in_(chunk)))
            links = [
                (person_id, team_id)
                for person_id, team_ids_ in scoped.items()
                for team_id in team_ids_
            ]
            names = (person_col.key, team_col.key)
            columns = {person_col.key: [link[0] for link in links],
                       team_col.key: [link[1] for link in links]}
            # _fast_insert fills the scope table's other columns' Python-side defaults (or
            # declines when one is not a plain value): COPY alone would leave them NULL
            if not _fast_insert(self.session.connection(), table, columns, len(links)):
                for chunk in _chunks([dict(zip(names, link, strict=True)) for link in links]):
                    self.session.execute(insert(table), chunk)

    def _ids_by_email(self, org: str, emails: set[str]) -> dict[str, Any]:
        """Person ids by normalised email (matched case-insensitively)."""
        P = self.person_model
        email_col = self._column(P, self.person.email)
        found: dict[str, Any] = {}
        for chunk in _chunks(sorted(emails)):
            rows = self.session.execute(
                select(self._pk(P), email_col).where(
                    func.lower(email_col).in_(chunk), *self._org_filter(P, org)
                )
            )
            for person_id, email in rows:
                found[normalize_email(email)] = person_id
        return found


class _Version:
    """A directory version, read on first need (``None``: nothing may be cached)."""

    def __init__(self, read: Callable[[], tuple[int, int] | None]) -> None:
        self._read: Callable[[], tuple[int, int] | None] | None = read
        self._stamp: tuple[int, int] | None = None

    def stamp(self) -> tuple[int, int] | None:
        """The version (read now if it was not yet)."""
        if self._read is not None:
            self._stamp, self._read = self._read(), None
        return self._stamp


#: The most positions one result keeps (the oldest noted go first).
MARKS = 1000


class _Marks:
    """Positions in a result (in key order) whose keys are known: position -> key; at most
    :data:`MARKS` (a page notes two, so paging through in order keeps the newest)."""

    def __init__(self) -> None:
        self._positions: list[int] = []
        self._keys: OrderedDict[int, Any] = OrderedDict()
        self._lock = threading.Lock()

    def add(self, position: int, key: Any) -> None:
        """Note that the match at ``position`` has ``key``."""
        with self._lock:
            if position not in self._keys:
                insort(self._positions, position)
            self._keys[position] = key
            self._keys.move_to_end(position)
            if len(self._keys) > MARKS:
                oldest, _key = self._keys.popitem(last=False)
                self._positions.remove(oldest)

    def before(self, position: int) -> tuple[int, Any] | None:
        """The nearest noted ``(position, key)`` at or before ``position``."""
        with self._lock:
            index = bisect_right(self._positions, position) - 1
            if index < 0:
                return None
            found = self._positions[index]
            return found, self._keys[found]


#: Above this many matches a ``co``/``ew`` is left to SQL (a key list that long costs more).
TEXT_MATCHES = 1000


@dataclass(frozen=True)
class _TextIndex:
    """One text column of every person as one string of lines, ASCII letters lower-cased (the
    keys beside, line by line): a substring search is then one scan in C of a few megabytes,
    about a millisecond for 100,000 people, instead of a ``LIKE`` over every row. It holds
    only plain ASCII values, where SQLite's ``LIKE`` and PostgreSQL's ``ILIKE`` agree with
    it; a value that is empty (NULL), holds other characters or a line break is an empty
    line, and its key is given back for SQL to compare. A needle beyond ASCII is SQL's
    alone. Integer keys are a packed array: about 30 bytes a person with the text."""

    text: str
    keys: array[int] | list[str]
    #: the lines left to SQL
    others: tuple[int, ...] = ()

    @classmethod
    def build(cls, rows: Sequence[Any]) -> _TextIndex:
        """From ``(key, value)`` rows."""
        values = ["" if row[1] is None else str(row[1]) for row in rows]
        joined = "\n".join(values)
        others: tuple[int, ...] = ()
        if not joined.isascii() or joined.count("\n") != max(0, len(values) - 1) or any(
            row[1] is None for row in rows
        ):
            others = tuple(
                line for line, (row, value) in enumerate(zip(rows, values, strict=True))
                if row[1] is None or not value.isascii() or "\n" in value
            )
            left = set(others)
            joined = "\n".join(
                "" if line in left else value for line, value in enumerate(values)
            )
        raw_keys = [row[0] for row in rows]
        keys: array[int] | list[str]
        if all(type(key) is int for key in raw_keys):
            keys = array("q", raw_keys)
        else:
            keys = [str(key) for key in raw_keys]
        return cls(joined.translate(_ASCII_LOWER), keys, others)

    def find(self, value: str, at_end: bool) -> tuple[list[str], list[str]] | None:
        """The keys whose value contains ``value`` (ends with it when ``at_end``), ASCII case
        folded, and the keys of the values left to SQL; ``None`` when SQL should answer: a
        needle beyond ASCII, or more than :data:`TEXT_MATCHES` keys in all."""
        if not value.isascii() or len(self.others) > TEXT_MATCHES:
            return None
        needle = value.translate(_ASCII_LOWER)
        if "\n" in needle:
            return [], [str(self.keys[line]) for line in self.others]
        lines: list[int] = []
        text = self.text
        line, counted = 0, 0  # the line of position ``counted``
        position = text.find(needle)
        while position >= 0:
            line += text.count("\n", counted, position)
            counted = position
            line_end = text.find("\n", position)
            if line_end < 0:
                line_end = len(text)
            if not at_end or text.endswith(needle, position, line_end):
                if len(lines) + len(self.others) >= TEXT_MATCHES:
                    return None
                lines.append(line)
            position = text.find(needle, line_end + 1)  # the next line that holds it
        return (
            [str(self.keys[line]) for line in lines],
            [str(self.keys[line]) for line in self.others],
        )


class _TextIndexes:
    """Text indexes by (organization, field), each kept at the directory version it was read
    at. A missing one is built in a background thread on a connection of its own while the
    query that wanted it goes to SQL: building one reads every person (0.2 to 0.9 s for
    100,000), which would cost the first query after every write more than the ``LIKE``."""

    def __init__(self) -> None:
        _ALL_TEXT_INDEXES.add(self)
        self._built = versions.VersionedCache(size=16)
        self._building: dict[tuple[str, str], Future[None]] = {}
        self._lock = threading.Lock()
        self._executor: ThreadPoolExecutor | None = None
        self._pid = os.getpid()

    def get(
        self, key: tuple[str, str], stamp: tuple[int, int],
        builder: Callable[[], Callable[[], tuple[tuple[int, int], _TextIndex] | None]],
    ) -> _TextIndex | None:
        """The index at ``stamp``; ``None`` (and a build by ``builder()`` started) when it is
        not ready."""
        found = self._built.get(key, stamp)
        if found is not versions.MISSING:
            return cast(_TextIndex, found)
        with self._lock:
            if self._pid != os.getpid():  # a forked child: the parent's thread is not here
                self._executor, self._building, self._pid = None, {}, os.getpid()
            if key not in self._building:
                build = builder()
                if self._executor is None:
                    self._executor = ThreadPoolExecutor(
                        max_workers=1, thread_name_prefix="csvdirectory-text-index"
                    )
                self._building[key] = self._executor.submit(self._build, key, build)
        return None

    def _build(
        self, key: tuple[str, str],
        build: Callable[[], tuple[tuple[int, int], _TextIndex] | None],
    ) -> None:
        time.sleep(BUILD_DELAY)  # let the request that asked finish its own query first
        try:
            built = build()
            if built is not None:
                self._built.put(key, *built)
        except Exception:  # a lost connection, a dropped table: the queries use SQL
            logger.debug("text index %s not built", key, exc_info=True)
        finally:
            with self._lock:
                self._building.pop(key, None)

    def wait(self) -> None:
        """Until every build under way has ended (for tests and benchmarks)."""
        with self._lock:
            pending = list(self._building.values())
        for future in pending:
            future.result()


_ALL_TEXT_INDEXES: weakref.WeakSet[_TextIndexes] = weakref.WeakSet()
#: Seconds a text index build waits before it starts (the asking request holds the GIL less).
BUILD_DELAY = 0.1


def wait_for_text_indexes() -> None:
    """Until every text index build under way in this process has ended (tests and
    benchmarks: before an engine is disposed, or to measure the built path)."""
    for indexes in list(_ALL_TEXT_INDEXES):
        indexes.wait()


class _TeamKeys(dict[str, Any]):
    """Team name as written -> database key, normalising each distinct name once."""

    def __init__(self, load: Callable[[], Mapping[str, str]]) -> None:
        super().__init__()
        self._load = load
        self._by_normalized_name: Mapping[str, str] | None = None

    def __missing__(self, name: str) -> Any:
        if self._by_normalized_name is None:
            self._by_normalized_name = self._load()
        key = self[name] = _key(self._by_normalized_name[normalize_team(name)])
        return key


def _by_shape(
    values: Iterable[Mapping[str, Any]],
    *,
    keys: Iterable[str] | None = None,
    keys_out: dict[int, list[Any]] | None = None,
) -> list[list[Mapping[str, Any]]]:
    """Change values grouped by shape (their keys and the keys of their ``extra``), in first
    seen order. With ``keys`` (one person key per value), ``keys_out[id(group)]`` receives each
    group's keys (as :func:`_key` gives them)."""
    groups: dict[tuple[Any, ...], list[Mapping[str, Any]]] = {}
    group_keys: dict[tuple[Any, ...], list[Any]] = {}
    person_keys = iter(keys) if keys is not None else None
    for value in values:
        extra = value.get("extra")
        shape = (*value, *extra) if extra else tuple(value)
        group = groups.get(shape)
        if group is None:
            group = groups[shape] = []
            group_keys[shape] = []
        group.append(value)
        if person_keys is not None:
            group_keys[shape].append(_key(next(person_keys)))
    if keys_out is not None:
        for shape, group in groups.items():
            keys_out[id(group)] = group_keys[shape]
    return list(groups.values())


def _fast_insert(
    connection: Any, table: Any, columns: Mapping[str, Sequence[Any]], count: int
) -> bool:
    """Insert many rows below SQLAlchemy's per-row parameter handling, where that is safe.

    PostgreSQL with psycopg 3: ``COPY ... FROM STDIN``, ten times faster than executemany.
    SQLite: the driver's own ``executemany`` of one compiled statement (twice as fast).
    Both run inside the session's transaction and apply the columns' Python-side scalar
    defaults themselves. Returns False, doing nothing, elsewhere: another database or driver,
    few rows, or a column left out whose Python-side default is not a plain value.
    """
    dialect = connection.dialect
    copy = dialect.name == "postgresql" and dialect.driver == "psycopg"
    if count < 100 or not (copy or dialect.name == "sqlite"):
        return False
    defaults: dict[str, Any] = {}
    for column in table.columns:
        if column.key in columns or column.default is None:
            continue
        if not column.default.is_scalar:
            return False
        defaults[column.key] = column.default.arg
    # table order: the order SQLAlchemy compiles an INSERT's columns in
    names = [
        column.key for column in table.columns if column.key in columns or column.key in defaults
    ]
    by_position: list[Sequence[Any]] = []
    for name in names:  # column by column, with the type conversions SQLAlchemy would apply
        values = columns[name] if name in columns else [defaults[name]] * count
        processor = table.columns[name].type.bind_processor(dialect)
        if processor is not None:
            values = [None if value is None else processor(value) for value in values]
        by_position.append(values)
    if copy:
        return copy_rows(connection, table, names, list(zip(*by_position, strict=True)))
    compiled = insert(table).values({name: bindparam(name) for name in names}).compile(
        dialect=dialect
    )
    if list(compiled.positiontup or ()) != names:  # not the positional form we built
        return False
    rows = zip(*by_position, strict=True)
    while batch := list(islice(rows, _DRIVER_BATCH)):  # a bounded list of tuples at a time
        connection.exec_driver_sql(str(compiled), batch)
    return True


def _chunks(items: Sequence[Any]) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), CHUNK):
        yield items[start : start + CHUNK]


def _key(value: str) -> Any:
    """Host keys travel as text; give integer primary keys back as int."""
    return int(value) if isinstance(value, str) and value.isdigit() else value


def _text(value: Any) -> str:
    return "" if value is None else str(value)


#: SQLite's lower(): ASCII letters only
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def _like_pattern(value: str, op: Op) -> str:
    escaped = value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    if op is Op.CO:
        return f"%{escaped}%"
    return f"{escaped}%" if op is Op.SW else f"%{escaped}"


def _is_text(column: Any) -> bool:
    try:
        return column.type.python_type is str
    except (AttributeError, NotImplementedError):
        return False


def _aware(value: datetime | None) -> datetime | None:
    """A host timestamp (naive means UTC) as an aware datetime."""
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _naive_utc(value: Any) -> Any:
    if isinstance(value, str):
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if isinstance(value, datetime) and value.tzinfo is not None:
        return value.astimezone(UTC).replace(tzinfo=None)
    return value


def now_naive_utc() -> datetime:
    """Now, as the naive UTC timestamp the adapter stores."""
    return datetime.now(UTC).replace(tzinfo=None)


def new_scim_id() -> str:
    """A fresh SCIM id: a random UUID, never one used before."""
    return str(uuid.uuid4())


def new_scim_ids(count: int) -> list[str]:
    """``count`` fresh SCIM ids at once: random version-4 UUIDs, as :func:`new_scim_id` makes
    them, from one read of the system's random source."""
    random = bytearray(os.urandom(16 * count))
    random[6::16] = bytes(b & 0x0F | 0x40 for b in random[6::16])  # version 4
    random[8::16] = bytes(b & 0x3F | 0x80 for b in random[8::16])  # RFC 4122 variant
    text = random.hex()
    return [
        f"{text[i:i + 8]}-{text[i + 8:i + 12]}-{text[i + 12:i + 16]}-{text[i + 16:i + 20]}-"
        f"{text[i + 20:i + 32]}"
        for i in range(0, 32 * count, 32)
    ]


def _column_limit(model: type, attribute: str) -> FieldLimit:
    """The length of a string column and whether it refuses NULL (no default to fall back on);
    no limit for anything that is not a plain column."""
    prop = getattr(model, attribute, None)
    columns = getattr(getattr(prop, "property", None), "columns", None)
    if not columns:
        return FieldLimit()
    column = columns[0]
    length = getattr(column.type, "length", None)
    required = (
        not column.nullable
        and column.default is None
        and column.server_default is None
        and not column.primary_key
    )
    return FieldLimit(length if isinstance(length, int) else None, required)
