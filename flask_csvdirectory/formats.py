"""The two files' schemas, defined once: the same columns validate uploads and make templates.

A :class:`FileFormat` is a file name and ordered :class:`Column` s; each column carries a
marshmallow field that validates and converts its cells. :func:`parse_employees` and
:func:`parse_users` read a file with :mod:`~flask_csvdirectory.reader` and check every cell,
reporting every error (capped) with its file, line, column and value.

A blank cell counts as a *missing* value for the column's field: a ``required`` field reports it,
any other field gives its ``load_default`` (``None`` when it has none). Fields are run through
``field.deserialize``; the stock ``String`` and ``Email`` fields take a fast path that only ever
accepts values marshmallow accepts (anything else goes to marshmallow for the verdict and the
message), and other fields' results are memoised per distinct cell value, so validation keeps
marshmallow's semantics while staying fast on large files.
"""

from __future__ import annotations

import csv
import datetime
import decimal
import enum
import gc
import io
import re
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import repeat
from operator import itemgetter
from typing import Any, NamedTuple

from marshmallow import ValidationError, missing
from marshmallow import fields as ma_fields
from marshmallow import validate as ma_validate

from . import columnar
from .adapter import ExtraColumn, FieldLimit
from .errors import ConfigurationError
from .reader import CsvTable, ErrorLog, normalize_header, read_table
from .records import ALL_TEAMS, DirectorySnapshot, Role, normalize_email, normalize_team
from .rows import EMPLOYEES_FILE, NO_EXTRA, USERS_FILE, EmployeeRow, ParsedFile, UserRow
from .validation import (
    Checked,
    ascii_domain_problem,
    check_email,
    check_identifier,
    normalize_text,
)

#: Separates team names in a Users.csv ``teams`` cell.
TEAM_SEPARATOR = ";"

#: ASCII addresses that marshmallow's :class:`~marshmallow.validate.Email` always accepts: the
#: dot-atom local part and the domain form of its own regexes, restricted to ASCII. A match is
#: accepted at once; anything else is left to marshmallow, so the verdict is always its verdict.
_PLAIN_EMAIL = re.compile(
    r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+"
    r"(?:[A-Za-z]{2,6}|[A-Za-z0-9-]{2,})"
)
_MEMO_LIMIT = 4096
_NO_EXTRA = NO_EXTRA
_IMMUTABLE_RESULTS = frozenset(
    {
        str,
        int,
        float,
        bool,
        bytes,
        type(None),
        decimal.Decimal,
        datetime.date,
        datetime.datetime,
        datetime.time,
        datetime.timedelta,
        uuid.UUID,
    }
)


# -- fields -------------------------------------------------------------------------------


class RoleField(ma_fields.Enum):  # type: ignore[type-arg]
    """A :class:`~flask_csvdirectory.records.Role`, by value, case-insensitively."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(Role, by_value=True, **kwargs)

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Role:
        if isinstance(value, str):
            folded = value.strip().casefold()
            for role in Role:
                if role.value.casefold() == folded:
                    return role
        return Role(super()._deserialize(value, attr, data, **kwargs))


class TeamScopeField(ma_fields.Field):  # type: ignore[type-arg]
    """A manager's scope: ``"Sales; Support;sales"`` -> ``("Sales", "Support")``.

    Team names are separated by ``;``, trimmed, deduplicated (case- and spacing-insensitively,
    keeping the first spelling) and sorted; ``*`` anywhere means every team: ``("*",)``.
    """

    default_error_messages = {"invalid": "Not a list of team names."}

    def _deserialize(
        self, value: Any, attr: str | None, data: Any, **kwargs: Any
    ) -> tuple[str, ...]:
        if not isinstance(value, str):
            raise self.make_error("invalid")
        names = [normalize_text(name.strip()).value for name in value.split(TEAM_SEPARATOR)]
        if ALL_TEAMS in names:
            return (ALL_TEAMS,)
        unique: dict[str, str] = {}
        for name in names:
            if name:
                unique.setdefault(normalize_team(name), name)
        return tuple(sorted(unique.values()))


class _CheckedString(ma_fields.String):
    """A text cell checked by a :mod:`~flask_csvdirectory.validation` function.

    :meth:`check` is the whole check of one non-blank cell (the formats call it directly on
    large files); ``max_length`` comes from the host's schema (:meth:`DirectoryAdapter
    .field_limits`).
    """

    def __init__(self, *, max_length: int | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.max_length = max_length

    def _check_value(self, value: str) -> Checked:
        raise NotImplementedError

    def check(self, value: str) -> str:
        """The normalised value, or a :class:`ValidationError` with the problem's message."""
        checked = self._check_value(value)
        if checked.problem is not None:
            raise ValidationError(checked.problem.message)
        return checked.value

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        return self.check(super()._deserialize(value, attr, data, **kwargs))


class EmailField(_CheckedString):
    """An email address (:func:`~flask_csvdirectory.validation.check_email`): no invisible or
    look-alike characters, ``email-validator`` syntax, the host's length; lower-cased."""

    def _check_value(self, value: str) -> Checked:
        return check_email(value, max_length=self.max_length)


class IdentifierField(_CheckedString):
    """An identifier such as an employee ID
    (:func:`~flask_csvdirectory.validation.check_identifier`)."""

    def _check_value(self, value: str) -> Checked:
        return check_identifier(value, max_length=self.max_length)


class TextField(_CheckedString):
    """A name or title (:func:`~flask_csvdirectory.validation.normalize_text`): NFC, no
    control characters, the host's length."""

    def _check_value(self, value: str) -> Checked:
        return normalize_text(value, max_length=self.max_length)


def _email_field(who: str, limit: FieldLimit) -> EmailField:
    return EmailField(
        required=True,
        max_length=limit.max_length,
        error_messages={"required": f"is empty: {who} needs an email address"},
    )


def _text_field(what: str, limit: FieldLimit) -> TextField:
    return TextField(
        required=True,
        max_length=limit.max_length,
        error_messages={"required": f"is empty: {what}"},
    )


_NO_LIMIT = FieldLimit()


# -- formats ------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Column:
    """One column of a file: its header name, whether the header must have it, what it means,
    an example value (the template's) and the marshmallow field validating its cells."""

    name: str
    field: ma_fields.Field[Any]
    required: bool = False
    description: str = ""
    example: str = ""


@dataclass(frozen=True, eq=False)
class FileFormat:
    """A file's schema: its canonical name and ordered columns."""

    name: str
    columns: tuple[Column, ...]

    @property
    def names(self) -> tuple[str, ...]:
        """Column names, in template order."""
        return tuple(column.name for column in self.columns)

    @property
    def required_names(self) -> tuple[str, ...]:
        """Names of the columns the header must have."""
        return tuple(column.name for column in self.columns if column.required)

    def column(self, name: str) -> Column:
        """The column called ``name`` (``KeyError`` if there is none)."""
        for column in self.columns:
            if column.name == name:
                return column
        raise KeyError(name)

    def template(self) -> bytes:
        """A UTF-8 CSV template: the exact header line and one example row."""
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(self.names)
        writer.writerow([column.example for column in self.columns])
        return out.getvalue().encode("utf-8")


def employees_format(
    extra_columns: Sequence[ExtraColumn] = (), limits: Mapping[str, FieldLimit] | None = None
) -> FileFormat:
    """The Employees.csv format; the host's ``extra_columns`` follow the standard ones.

    ``limits`` (from :meth:`DirectoryAdapter.field_limits`) caps each column's length; an
    ``external_id`` the host cannot leave empty makes ``employee_id`` required.

    An extra column's header is required when its field is ``required``; its name must already be
    in header form (``cost_center``) and must not repeat another column. Its cells are validated
    by its field; ``EmployeeRow.extra`` keeps them as text: the field's result when it is a string,
    else the cell as written.
    """
    limit = (limits or {}).get
    id_limit = limit("external_id", _NO_LIMIT)
    columns = [
        Column(
            "email",
            _email_field("every employee", limit("email", _NO_LIMIT)),
            required=True,
            description="Work email address. Matches the person when employee_id is blank.",
            example="ada.lovelace@example.com",
        ),
        Column(
            "employee_id",
            IdentifierField(
                load_default=None,
                required=id_limit.required,
                max_length=id_limit.max_length,
                error_messages={"required": "is empty: every employee needs an employee ID"},
            ),
            required=id_limit.required,
            description="Your HR system's ID for the person. When given, it matches the person "
            "(so an email can change).",
            example="E1001",
        ),
        Column(
            "first_name",
            _text_field("every employee needs a first name", limit("first_name", _NO_LIMIT)),
            required=True,
            description="First name.",
            example="Ada",
        ),
        Column(
            "last_name",
            _text_field("every employee needs a last name", limit("last_name", _NO_LIMIT)),
            required=True,
            description="Last name.",
            example="Lovelace",
        ),
        Column(
            "team",
            _text_field("every employee needs a team", limit("team", _NO_LIMIT)),
            required=True,
            description="Team name. A team that does not exist yet is created.",
            example="Engineering",
        ),
        Column(
            "title",
            TextField(load_default="", max_length=limit("title", _NO_LIMIT).max_length),
            description="Job title. Leave the cell blank to clear it; leave the column out to "
            "keep the titles the directory has.",
            example="Engineering Manager",
        ),
    ]
    taken = {column.name for column in columns}
    for extra in extra_columns:
        if normalize_header(extra.name) != extra.name:
            raise ConfigurationError(
                f"extra column {extra.name!r} must be named {normalize_header(extra.name)!r}"
            )
        if extra.name in taken:
            raise ConfigurationError(f"extra column {extra.name!r} repeats another column")
        taken.add(extra.name)
        columns.append(
            Column(
                extra.name,
                extra.field,
                required=extra.field.required,
                description=extra.description,
                example=extra.example,
            )
        )
    return FileFormat(EMPLOYEES_FILE, tuple(columns))


def users_format(limits: Mapping[str, FieldLimit] | None = None) -> FileFormat:
    """The Users.csv format: who may use the dashboard, with which role and scope (``limits``
    as for :func:`employees_format`)."""
    limit = (limits or {}).get
    return FileFormat(
        USERS_FILE,
        (
            Column(
                "email",
                _email_field("every user", limit("email", _NO_LIMIT)),
                required=True,
                description="Email address the person signs in with.",
                example="grace.hopper@example.com",
            ),
            Column(
                "name",
                TextField(load_default="", max_length=limit("name", _NO_LIMIT).max_length),
                description="Display name, used when the person is not in Employees.csv.",
                example="Grace Hopper",
            ),
            Column(
                "role",
                RoleField(
                    required=True,
                    error_messages={
                        "required": "is empty: write Admin or Manager",
                        "unknown": "is not a role: write Admin or Manager",
                    },
                ),
                required=True,
                description="Admin (sees every team) or Manager (sees the teams in 'teams').",
                example="Manager",
            ),
            Column(
                "teams",
                TeamScopeField(load_default=()),
                description="A manager's teams, separated by ';', or * for every team. "
                "Ignored for admins.",
                example="Engineering;Research",
            ),
        ),
    )


# -- pre-filled templates -----------------------------------------------------------------


def export_employees(
    snapshot: DirectorySnapshot, extra_columns: Sequence[ExtraColumn] = ()
) -> bytes:
    """The directory as an Employees.csv (UTF-8): every active person who has a team, sorted by
    email. Uploaded back with :func:`export_users`, it plans no change.

    Values are written as the directory holds them (no spreadsheet formula escaping, which
    would change them on the way back).
    """
    file_format = employees_format(extra_columns)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(file_format.names)
    extra_names = [extra.name for extra in extra_columns]
    people = sorted(
        (person for person in snapshot.people if person.active and person.team),
        key=lambda person: normalize_email(person.email),
    )
    for person in people:
        writer.writerow(
            [
                person.email,
                person.external_id or "",
                person.first_name,
                person.last_name,
                person.team,
                person.title,
                *(person.extra.get(name, "") for name in extra_names),
            ]
        )
    return out.getvalue().encode("utf-8")


def export_users(snapshot: DirectorySnapshot) -> bytes:
    """The directory's dashboard access as a Users.csv (UTF-8), sorted by email: each admin and
    manager with their role and teams (``*`` for every team)."""
    file_format = users_format()
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(file_format.names)
    for access in sorted(snapshot.access, key=lambda access: normalize_email(access.email)):
        person = snapshot.by_email.get(normalize_email(access.email))
        name = access.name or (
            f"{person.first_name} {person.last_name}".strip() if person is not None else ""
        )
        role = Role(access.role)
        teams = ALL_TEAMS if ALL_TEAMS in access.teams else TEAM_SEPARATOR.join(access.teams)
        writer.writerow([access.email, name, role.value, teams])
    return out.getvalue().encode("utf-8")


# -- parsing ------------------------------------------------------------------------------


def parse_employees(
    data: bytes,
    extra_columns: Sequence[ExtraColumn] = (),
    *,
    max_errors: int = 1000,
    limits: Mapping[str, FieldLimit] | None = None,
) -> ParsedFile[EmployeeRow]:
    """Read and validate an Employees.csv upload: its valid rows and every error (capped).

    Besides each cell (with the host's ``limits``), checks that no email and no non-blank
    employee_id appears twice, and that the template's example row is not left in.
    """
    with _collector_paused():
        try:
            return _parse_employees(data, extra_columns, max_errors, limits or {}, True)
        except columnar.NotColumnar:  # found while streaming: read it again, the Python way
            return _parse_employees(data, extra_columns, max_errors, limits or {}, False)


def parse_users(
    data: bytes, *, max_errors: int = 1000, limits: Mapping[str, FieldLimit] | None = None
) -> ParsedFile[UserRow]:
    """Read and validate a Users.csv upload: its valid rows and every error (capped).

    Besides each cell (with the host's ``limits``), checks that no email appears twice, that
    every manager has a scope and that the template's example row is not left in. Admins always
    get every team. Whether scopes name known teams is the planner's check.
    """
    with _collector_paused():
        try:
            return _parse_users(data, max_errors, limits or {}, True)
        except columnar.NotColumnar:  # found while streaming: read it again, the Python way
            return _parse_users(data, max_errors, limits or {}, False)


#: What an upload of a template's untouched example row is told.
EXAMPLE_ROW_MESSAGE = "this is the template's example row; replace it with your data"


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Pause CPython's cyclic garbage collector while a file is parsed.

    Parsing allocates many long-lived container objects (rows, dicts) and no reference cycles;
    the collector would traverse them over and over, costing 15-30% of the time on big files.
    """
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _parse_employees(
    data: bytes,
    extra_columns: Sequence[ExtraColumn],
    max_errors: int,
    limits: Mapping[str, FieldLimit],
    use_columnar: bool,
) -> ParsedFile[EmployeeRow]:
    file_format = employees_format(extra_columns, limits)
    example_email = normalize_email(file_format.column("email").example)
    extra_limits: list[tuple[str, int]] = [
        (extra.name, length)
        for extra in extra_columns
        if extra.name in limits and (length := limits[extra.name].max_length) is not None
    ]
    log = ErrorLog(file_format.name, max_errors)
    table = read_table(data, log, columns=file_format.names, required=file_format.required_names)
    checker = _RowChecker(file_format, table, log, use_columnar=use_columnar)
    slot = checker.slots.get
    complete = checker.complete
    email_at, employee_id_at = slot("email"), slot("employee_id")
    first_name_at, last_name_at = slot("first_name"), slot("last_name")
    team_at, title_at = slot("team"), slot("title")
    extra_slots = [(extra.name, slot(extra.name)) for extra in extra_columns]
    extra_at = [(name, at) for name, at in extra_slots if at is not None]
    first_line_of_email: dict[str, int] = {}
    first_line_of_id: dict[str, int] = {}
    shared: dict[str, str] = {}  # one string object per repeated team / name / title
    rows: list[EmployeeRow] = []
    teams_of_invalid_rows: set[str] = set()

    def take(records: Iterable[tuple[int, tuple[str, ...], Sequence[Any], bool]]) -> None:
        """Check each record across its cells and keep the valid rows (the general path)."""
        for line, cells, values, ok in records:
            email = _FAILED if email_at is None else values[email_at]
            if email is not _FAILED:
                email, ok = _checked_email(
                    email, ok, line, example_email, first_line_of_email, log,
                    checker.cell(cells, "email"), "each person must appear once",
                )
            for name, max_length in extra_limits:
                at = slot(name)
                cell = None if at is None else checker.cell(cells, name)
                if cell is not None and len(cell) > max_length:
                    log.add(
                        line,
                        f"is {len(cell)} characters long; at most {max_length} are allowed",
                        column=name,
                        value=cell,
                    )
                    ok = False
            employee_id = None if employee_id_at is None else values[employee_id_at]
            if employee_id is not None and employee_id is not _FAILED:
                ok &= _unique(
                    first_line_of_id, employee_id, line, log, "employee_id", employee_id,
                    "each ID must be unique",
                )
            if not (ok and complete):
                if team_at is not None and values[team_at] is not _FAILED:
                    teams_of_invalid_rows.add(values[team_at])
            else:
                # required columns: a complete file has their slots
                team = values[team_at]  # type: ignore[index]
                first_name = values[first_name_at]  # type: ignore[index]
                last_name = values[last_name_at]  # type: ignore[index]
                title = None if title_at is None else values[title_at]
                rows.append(
                    EmployeeRow(
                        line,
                        email,
                        shared.setdefault(team, team),
                        shared.setdefault(first_name, first_name),
                        shared.setdefault(last_name, last_name),
                        title if title is None else shared.setdefault(title, title),
                        employee_id,
                        _extra_values(extra_at, values, cells, checker) if extra_at else _NO_EXTRA,
                    )
                )

    def take_clean(part: _CheckedSlice) -> bool:
        """Keep a slice whose every record is valid on its own in bulk (C loops), when no
        record of it repeats an email or ID or is the example row; False: nothing done."""
        if part.bad or part.blank:
            return False
        size = len(part.lines)
        lines = list(part.lines)  # one int object per line, shared by the rows and the indexes
        assert email_at is not None  # a complete file has an email column
        emails = list(part.values[email_at])
        for at in part.todo[email_at]:  # the others are normalised by the columnar check
            emails[at] = normalize_email(emails[at])
        new_emails = dict(zip(emails, lines, strict=True))
        if (
            len(new_emails) != size
            or example_email in new_emails
            or not first_line_of_email.keys().isdisjoint(new_emails)
        ):
            return False
        ids: list[str | None] = (
            part.values[employee_id_at] if employee_id_at is not None else [None] * size
        )
        new_ids = {key: line for key, line in zip(ids, lines, strict=True) if key is not None}
        if len(new_ids) != size - ids.count(None) or not first_line_of_id.keys().isdisjoint(
            new_ids
        ):
            return False
        first_line_of_email.update(new_emails)
        first_line_of_id.update(new_ids)
        values = part.values

        def column(at: int | None) -> Iterable[Any]:
            return repeat(None, size) if at is None else values[at]

        fields = zip(
            lines,
            emails,
            column(team_at),
            column(first_name_at),
            column(last_name_at),
            column(title_at),
            ids,
            repeat(_NO_EXTRA, size),
            strict=True,
        )
        rows.extend(map(tuple.__new__, repeat(EmployeeRow, size), fields))  # EmployeeRow(*f)
        table.row_count += size
        return True

    slices = None
    if complete and not extra_at and not extra_limits:
        slices = checker.columnar_slices(data, table)
    if slices is None:
        take(checker.all_records(data, table))
    else:
        for part in slices:
            if not take_clean(part):
                take(checker.slice_records(part, table))
        columnar.give_back_memory()
    return ParsedFile(
        file_format.name, rows, log.errors, table.row_count, log.count, teams_of_invalid_rows
    )


def _unique(
    first_lines: dict[str, int],
    key: str,
    line: int,
    log: ErrorLog,
    column: str,
    value: str | None,
    rule: str,
) -> bool:
    """Record ``key`` as seen on ``line``; log a duplicate error and return False if it was
    already seen on an earlier line."""
    first = first_lines.setdefault(key, line)
    if first == line:
        return True
    log.add(line, f"this {column} is already on line {first}: {rule}", column=column, value=value)
    return False


def _checked_email(
    value: str,
    ok: bool,
    line: int,
    example: str,
    first_lines: dict[str, int],
    log: ErrorLog,
    cell: str | None,
    rule: str,
) -> tuple[str, bool]:
    """A row's email, normalised, and whether the row is still valid (``ok``): the template's
    example row is refused, and so is an email an earlier line has (``cell``: the text the
    error quotes)."""
    email = normalize_email(value)
    if email == example:
        log.add(line, EXAMPLE_ROW_MESSAGE, column="email", value=email)
        ok = False
    ok &= _unique(first_lines, email, line, log, "email", cell, rule)
    return email, ok


def _parse_users(
    data: bytes, max_errors: int, limits: Mapping[str, FieldLimit], use_columnar: bool
) -> ParsedFile[UserRow]:
    file_format = users_format(limits)
    example_email = normalize_email(file_format.column("email").example)
    log = ErrorLog(file_format.name, max_errors)
    table = read_table(data, log, columns=file_format.names, required=file_format.required_names)
    checker = _RowChecker(file_format, table, log, use_columnar=use_columnar)
    slot = checker.slots.get
    email_at, name_at, role_at, teams_at = slot("email"), slot("name"), slot("role"), slot("teams")
    teams_duplicated = teams_at is None and "teams" in table.columns  # reported with the header
    first_line_of_email: dict[str, int] = {}
    rows: list[UserRow] = []
    for line, cells, values, ok in checker.all_records(data, table):
        email = _FAILED if email_at is None else values[email_at]
        if email is not _FAILED:
            email, ok = _checked_email(
                email, ok, line, example_email, first_line_of_email, log,
                checker.cell(cells, "email"), "each user must appear once",
            )
        role = None if role_at is None else values[role_at]
        teams = () if teams_at is None else values[teams_at]
        if role is Role.ADMIN:
            teams = (ALL_TEAMS,)
        elif role is Role.MANAGER and not teams and not teams_duplicated:
            ok = False
            if teams_at is None:
                message = (
                    "a Manager needs teams, but the file has no teams column: add one with the "
                    f"team names separated by '{TEAM_SEPARATOR}' (or * for every team)"
                )
            else:
                message = (
                    "is empty: a Manager needs at least one team (names separated by "
                    f"'{TEAM_SEPARATOR}', or * for every team)"
                )
            log.add(line, message, column="teams", value=checker.cell(cells, "teams"))
        if ok and checker.complete:
            name = "" if name_at is None else values[name_at]
            rows.append(UserRow(line, email, role, teams, name))  # type: ignore[arg-type]
    return ParsedFile(file_format.name, rows, log.errors, table.row_count, log.count)


def _extra_values(
    extra_at: list[tuple[str, int]],
    values: Sequence[Any],
    cells: tuple[str, ...],
    checker: _RowChecker,
) -> dict[str, str]:
    """Extra columns as text, like the directory keeps them (``PersonRecord.extra``).

    A field returning text gives its result (it may normalise); any other field only validates,
    and the cell is kept as written (``""`` when blank).
    """
    extra = {}
    for name, at in extra_at:
        value = values[at]
        extra[name] = value if isinstance(value, str) else checker.cell(cells, name) or ""
    return extra


# -- cell checking ------------------------------------------------------------------------


class _Failed:
    """The value of a cell that failed its check (its error is already reported)."""

    def __repr__(self) -> str:
        return "<failed>"


_FAILED: Any = _Failed()


@dataclass(slots=True)
class _CheckedSlice:
    """Consecutive records checked column-wise: their ``lines``, the converted ``values`` by
    rule slot (valid where ``failed[i]`` is 0); ``bad`` whether any record failed and ``blank``
    whether any may be blank (skipped)."""

    lines: range
    source: columnar.CellSlice
    values: list[list[Any]]
    todo: list[list[int]]  # by rule slot: the records whose value its field gave
    failed: bytearray
    bad: bool
    blank: bool

    @property
    def cells(self) -> list[list[str]]:
        """The trimmed cells, by file column."""
        return self.source.cells


class _CellRule(NamedTuple):
    """How to check one present column's cells (built once per file, used for every row)."""

    name: str
    index: int  # type: ignore[assignment]  # in the record (a NamedTuple field)
    convert: Callable[[str], Any] | None  # None: a non-blank cell is its own value
    blank_value: Callable[[], Any]
    blank_error: str | None  # set when a blank cell is an error
    #: what the columnar path may vouch for itself (None: every non-blank cell is converted)
    fast: columnar.FastCheck | None = None


class _RowChecker:
    """Checks each record's cells with the fields of the columns the file has (once each).

    :meth:`records` yields ``(line, cells, values, ok)``: ``values`` holds the converted cells in
    rule order (``slots[name]`` says where), ``_FAILED`` for a cell that failed; every failure
    is reported to the log, in column order, and clears ``ok``.
    """

    def __init__(
        self, file_format: FileFormat, table: CsvTable, log: ErrorLog, *, use_columnar: bool = True
    ) -> None:
        self.log = log
        self.use_columnar = use_columnar
        self.rules = _cell_rules(file_format, table)
        self.slots = {rule.name: slot for slot, rule in enumerate(self.rules)}
        self.complete = set(self.slots).issuperset(file_format.required_names)
        self._index = {rule.name: rule.index for rule in self.rules}

    def cell(self, cells: tuple[str, ...], name: str) -> str | None:
        """The cell of column ``name`` as written (trimmed), or ``None`` without the column."""
        index = self._index.get(name)
        return None if index is None else cells[index]

    def all_records(
        self, data: bytes, table: CsvTable
    ) -> Iterator[tuple[int, tuple[str, ...], Sequence[Any], bool]]:
        """:meth:`records`, read by the columnar path when ``data`` allows it (the same
        records, values, errors and row count)."""
        slices = self.columnar_slices(data, table)
        if slices is None:
            return self.records(table)
        return (record for part in slices for record in self.slice_records(part, table))

    def columnar_slices(self, data: bytes, table: CsvTable) -> Iterator[_CheckedSlice] | None:
        """The records of ``data`` checked column-wise, slice by slice, or ``None`` when the
        columnar reader cannot read this file exactly like the Python reader (iterating may
        still raise :class:`~.columnar.NotColumnar`: the caller then starts again without)."""
        if not self.use_columnar or not table.readable or not columnar.eligible(
            data,
            delimiter=table.delimiter,
            codec=table.codec,
            header_lines=table.header_end if table.header_line == 1 else 0,
        ):
            return None
        try:
            slices = columnar.read_cells(data, delimiter=table.delimiter, width=len(table.columns))
        except columnar.NotColumnar:
            return None
        return (self._check_slice(part) for part in slices)

    def _check_slice(self, part: columnar.CellSlice) -> _CheckedSlice:
        size = part.size
        bad = bytearray(size)
        slot_values: list[list[Any]] = []
        slot_todo: list[list[int]] = []
        for rule in self.rules:
            values, todo = columnar.fast_verdicts(rule.fast, part, rule.index)
            convert = rule.convert
            for at in todo:
                cell = values[at]
                if not cell:
                    if rule.blank_error is None:
                        values[at] = rule.blank_value()
                    else:
                        bad[at] = 1
                elif convert is not None:
                    try:
                        values[at] = convert(cell)
                    except ValidationError:
                        bad[at] = 1
            slot_values.append(values)
            slot_todo.append(todo)
        lines = range(part.first_line, part.first_line + size)
        return _CheckedSlice(
            lines, part, slot_values, slot_todo, bad, any(bad), part.blank_rows()
        )

    def slice_records(
        self, part: _CheckedSlice, table: CsvTable
    ) -> Iterator[tuple[int, tuple[str, ...], Sequence[Any], bool]]:
        """The records of a checked slice, one by one, as :meth:`records` gives them (each
        failed record's cells checked again one by one, reporting every problem)."""
        pick = _picker([rule.index for rule in self.rules])
        size = len(part.lines)
        values_of = zip(*part.values, strict=True) if part.values else repeat((), size)
        rows = zip(part.lines, part.failed, zip(*part.cells, strict=True), values_of, strict=True)
        for line, failed, cells, values in rows:
            if not any(cells):
                continue
            table.row_count += 1
            if failed:
                yield line, cells, self._check_each_cell(line, pick(cells)), False
            else:
                yield line, cells, values, True

    def records(
        self, table: CsvTable
    ) -> Iterator[tuple[int, tuple[str, ...], Sequence[Any], bool]]:
        """Every usable record of ``table`` with its checked values."""
        rules = self.rules
        pick = _picker([rule.index for rule in rules])
        converting = [(slot, rule.convert) for slot, rule in enumerate(rules) if rule.convert]
        filling = [(slot, rule.blank_value, rule.blank_error) for slot, rule in enumerate(rules)]
        # Fast path: pick the cells (in C), convert those that need it, fill in blanks. The first
        # problem sends the row to the slow path, which checks and reports every cell.
        for line, cells in table:
            raw = pick(cells)
            values: Sequence[Any] = raw
            ok = True
            no_blank = all(raw)
            if converting or not no_blank:
                values = list(raw)
                try:
                    for slot, convert in converting:
                        cell = raw[slot]
                        if cell:
                            values[slot] = convert(cell)
                except ValidationError:
                    ok = False
                if ok and not no_blank:
                    for slot, blank_value, blank_error in filling:
                        if not raw[slot]:
                            if blank_error is not None:
                                ok = False
                                break
                            values[slot] = blank_value()
            if not ok:
                values = self._check_each_cell(line, raw)
            yield line, cells, values, ok

    def _check_each_cell(self, line: int, raw: tuple[str, ...]) -> list[Any]:
        values: list[Any] = []
        for rule, cell in zip(self.rules, raw, strict=True):
            value = _FAILED
            if not cell:
                if rule.blank_error is None:
                    value = rule.blank_value()
                else:
                    self.log.add(line, rule.blank_error, column=rule.name, value=cell)
            elif rule.convert is None:
                value = cell
            else:
                try:
                    value = rule.convert(cell)
                except ValidationError as exc:
                    self.log.add(line, _message(exc), column=rule.name, value=cell)
            values.append(value)
        return values


def _picker(indexes: list[int]) -> Callable[[tuple[str, ...]], Any]:
    """A function taking the cells at ``indexes`` out of a record, as a tuple."""
    if len(indexes) > 1:
        return itemgetter(*indexes)
    if indexes:
        index = indexes[0]
        return lambda cells: (cells[index],)
    return lambda cells: ()


def _cell_rules(file_format: FileFormat, table: CsvTable) -> list[_CellRule]:
    """A rule for each column of ``file_format`` the table has (once, not duplicated)."""
    rules = []
    for column in file_format.columns:
        index = table.position(column.name)
        if index is None:
            continue
        field = column.field
        blank_error = None
        blank_value: Callable[[], Any] = _constant(None)
        if callable(field.load_default):
            blank_value = field.load_default
        else:
            try:
                result = field.deserialize(missing)
            except ValidationError as exc:
                blank_error = _message(exc)
            else:
                blank_value = _constant(None if result is missing else result)
        convert = _converter(field)
        rules.append(
            _CellRule(
                column.name, index, convert, blank_value, blank_error, _fast_check(field, convert)
            )
        )
    return rules


def _fast_check(
    field: ma_fields.Field[Any], convert: Callable[[str], Any] | None
) -> columnar.FastCheck | None:
    """What the columnar path may clear without calling ``convert`` (the field's own check)."""
    if convert is None:
        return columnar.FastCheck("plain")
    if not isinstance(field, _CheckedString) or convert != field.check:
        return None
    if type(field) is EmailField:
        return columnar.FastCheck("email", field.max_length, ascii_domain_problem)
    if type(field) in (TextField, IdentifierField):
        return columnar.FastCheck("text", field.max_length)
    return None





def _converter(field: ma_fields.Field[Any]) -> Callable[[str], Any] | None:
    """``field.deserialize`` for one non-blank cell, or a faster function with the same results.

    ``None`` means the cell is its own value (a stock ``String`` without validators returns its
    input unchanged).
    """
    stock = not getattr(field, "pre_load", None) and not getattr(field, "post_load", None)
    if stock and type(field) is ma_fields.String and not field.validators:
        return None
    if stock and isinstance(field, _CheckedString) and not field.validators:
        return field.check
    deserialize = field.deserialize
    if (
        stock
        and type(field) is ma_fields.Email
        and len(field.validators) == 1
        and type(field.validators[0]) is ma_validate.Email
    ):
        plain_email = _PLAIN_EMAIL.fullmatch

        def convert_email(value: str) -> Any:
            return value if plain_email(value) else deserialize(value)

        return convert_email
    if isinstance(field, ma_fields.Function | ma_fields.Method):
        return deserialize  # may depend on more than the cell: never memoised
    return _memoized(deserialize)


def _memoized(deserialize: Callable[[str], Any]) -> Callable[[str], Any]:
    """``deserialize`` remembering its verdict on up to ``_MEMO_LIMIT`` distinct values.

    Only immutable results are remembered, so rows never share a mutable value.
    """
    verdicts: dict[str, tuple[bool, Any]] = {}

    def convert(value: str) -> Any:
        verdict = verdicts.get(value)
        if verdict is not None:
            if verdict[0]:
                return verdict[1]
            raise ValidationError(verdict[1])
        try:
            result = deserialize(value)
        except ValidationError as exc:
            if len(verdicts) < _MEMO_LIMIT:
                verdicts[value] = (False, exc.messages)
            raise
        if len(verdicts) < _MEMO_LIMIT and _is_immutable(result):
            verdicts[value] = (True, result)
        return result

    return convert


def _is_immutable(value: Any) -> bool:
    if type(value) in _IMMUTABLE_RESULTS or isinstance(value, enum.Enum):
        return True
    return type(value) in (tuple, frozenset) and all(map(_is_immutable, value))


def _constant(value: Any) -> Callable[[], Any]:
    return lambda: value


def _message(exc: ValidationError) -> str:
    """One readable sentence from a marshmallow error (list or dict of messages)."""
    messages = exc.messages
    if isinstance(messages, dict):
        messages = [message for value in messages.values() for message in _as_list(value)]
    return " ".join(str(message) for message in _as_list(messages))


def _as_list(messages: Any) -> list[Any]:
    return list(messages) if isinstance(messages, list | tuple) else [messages]
