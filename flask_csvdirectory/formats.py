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
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, NamedTuple

from marshmallow import ValidationError, missing
from marshmallow import fields as ma_fields
from marshmallow import validate as ma_validate

from .adapter import ExtraColumn
from .errors import ConfigurationError
from .reader import CsvTable, ErrorLog, normalize_header, read_table
from .records import ALL_TEAMS, Role, normalize_email, normalize_team
from .rows import EMPLOYEES_FILE, USERS_FILE, EmployeeRow, ParsedFile, UserRow

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


class RoleField(ma_fields.Enum):
    """A :class:`~flask_csvdirectory.records.Role`, by value, case-insensitively."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(Role, by_value=True, **kwargs)

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Role:
        if isinstance(value, str):
            folded = value.strip().casefold()
            for role in Role:
                if role.value.casefold() == folded:
                    return role
        return super()._deserialize(value, attr, data, **kwargs)


class TeamScopeField(ma_fields.Field):
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
        names = [name.strip() for name in value.split(TEAM_SEPARATOR)]
        if ALL_TEAMS in names:
            return (ALL_TEAMS,)
        unique: dict[str, str] = {}
        for name in names:
            if name:
                unique.setdefault(normalize_team(name), name)
        return tuple(sorted(unique.values()))


def _email_field(who: str) -> ma_fields.Email:
    return ma_fields.Email(
        required=True,
        error_messages={
            "required": f"is empty: {who} needs an email address",
            "invalid": "is not a valid email address (expected something like name@example.com)",
        },
    )


def _text_field(what: str) -> ma_fields.String:
    return ma_fields.String(required=True, error_messages={"required": f"is empty: {what}"})


# -- formats ------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Column:
    """One column of a file: its header name, whether the header must have it, what it means,
    an example value (the template's) and the marshmallow field validating its cells."""

    name: str
    field: ma_fields.Field
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


def employees_format(extra_columns: Sequence[ExtraColumn] = ()) -> FileFormat:
    """The Employees.csv format; the host's ``extra_columns`` follow the standard ones.

    An extra column's header is required when its field is ``required``; its name must already be
    in header form (``cost_center``) and must not repeat another column.
    """
    columns = [
        Column(
            "email",
            _email_field("every employee"),
            required=True,
            description="Work email address. Matches the person when employee_id is blank.",
            example="ada.lovelace@example.com",
        ),
        Column(
            "employee_id",
            ma_fields.String(load_default=None),
            description="Your HR system's ID for the person. When given, it matches the person "
            "(so an email can change).",
            example="E1001",
        ),
        Column(
            "first_name",
            _text_field("every employee needs a first name"),
            required=True,
            description="First name.",
            example="Ada",
        ),
        Column(
            "last_name",
            _text_field("every employee needs a last name"),
            required=True,
            description="Last name.",
            example="Lovelace",
        ),
        Column(
            "team",
            _text_field("every employee needs a team"),
            required=True,
            description="Team name. A team that does not exist yet is created.",
            example="Engineering",
        ),
        Column(
            "title",
            ma_fields.String(load_default=""),
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


def users_format() -> FileFormat:
    """The Users.csv format: who may use the dashboard, with which role and scope."""
    return FileFormat(
        USERS_FILE,
        (
            Column(
                "email",
                _email_field("every user"),
                required=True,
                description="Email address the person signs in with.",
                example="grace.hopper@example.com",
            ),
            Column(
                "name",
                ma_fields.String(load_default=""),
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


# -- parsing ------------------------------------------------------------------------------


def parse_employees(
    data: bytes, extra_columns: Sequence[ExtraColumn] = (), *, max_errors: int = 1000
) -> ParsedFile[EmployeeRow]:
    """Read and validate an Employees.csv upload: its valid rows and every error (capped).

    Besides each cell, checks that no email and no non-blank employee_id appears twice.
    """
    with _collector_paused():
        return _parse_employees(data, extra_columns, max_errors)


def parse_users(data: bytes, *, max_errors: int = 1000) -> ParsedFile[UserRow]:
    """Read and validate a Users.csv upload: its valid rows and every error (capped).

    Besides each cell, checks that no email appears twice and that every manager has a scope.
    Admins always get every team. Whether scopes name known teams is the planner's check.
    """
    with _collector_paused():
        return _parse_users(data, max_errors)


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
    data: bytes, extra_columns: Sequence[ExtraColumn], max_errors: int
) -> ParsedFile[EmployeeRow]:
    file_format = employees_format(extra_columns)
    log = ErrorLog(file_format.name, max_errors)
    table = read_table(data, log, columns=file_format.names, required=file_format.required_names)
    rules = _cell_rules(file_format, table)
    present = {rule.name for rule in rules}
    complete = present.issuperset(file_format.required_names)
    has_title = "title" in present
    email_at = table.position("email")
    extra_names = [extra.name for extra in extra_columns if extra.name in present]
    first_line_of_email: dict[str, int] = {}
    first_line_of_id: dict[str, int] = {}
    shared: dict[str, str] = {}  # one string object per repeated team / name / title
    rows: list[EmployeeRow] = []
    for line, cells, values, ok in _checked_records(table, rules, log):
        email = values.get("email")
        if email is not None:
            email = normalize_email(email)
            first = first_line_of_email.setdefault(email, line)
            if first != line:
                ok = False
                log.add(
                    line,
                    f"this email is already on line {first}: each person must appear once",
                    column="email",
                    value=_cell(cells, email_at),
                )
        employee_id = values.get("employee_id")
        if employee_id is not None:
            first = first_line_of_id.setdefault(employee_id, line)
            if first != line:
                ok = False
                log.add(
                    line,
                    f"this employee_id is already on line {first}: each ID must be unique",
                    column="employee_id",
                    value=employee_id,
                )
        if ok and complete:
            team = values["team"]
            first_name = values["first_name"]
            last_name = values["last_name"]
            title = values["title"] if has_title else None
            rows.append(
                EmployeeRow(
                    line,
                    email,
                    shared.setdefault(team, team),
                    shared.setdefault(first_name, first_name),
                    shared.setdefault(last_name, last_name),
                    title if title is None else shared.setdefault(title, title),
                    employee_id,
                    {name: values[name] for name in extra_names} if extra_names else {},
                )
            )
    return ParsedFile(file_format.name, rows, log.errors, table.row_count, log.count)


def _parse_users(data: bytes, max_errors: int) -> ParsedFile[UserRow]:
    file_format = users_format()
    log = ErrorLog(file_format.name, max_errors)
    table = read_table(data, log, columns=file_format.names, required=file_format.required_names)
    rules = _cell_rules(file_format, table)
    complete = {rule.name for rule in rules}.issuperset(file_format.required_names)
    email_at = table.position("email")
    teams_at = table.position("teams")
    teams_duplicated = teams_at is None and "teams" in table.columns  # reported with the header
    first_line_of_email: dict[str, int] = {}
    rows: list[UserRow] = []
    for line, cells, values, ok in _checked_records(table, rules, log):
        email = values.get("email")
        if email is not None:
            email = normalize_email(email)
            first = first_line_of_email.setdefault(email, line)
            if first != line:
                ok = False
                log.add(
                    line,
                    f"this email is already on line {first}: each user must appear once",
                    column="email",
                    value=_cell(cells, email_at),
                )
        role = values.get("role")
        teams = values.get("teams", ())
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
                    f"is empty: a Manager needs at least one team (names separated by "
                    f"'{TEAM_SEPARATOR}', or * for every team)"
                )
            log.add(
                line,
                message,
                column="teams",
                value=None if teams_at is None else cells[teams_at],
            )
        if ok and complete:
            rows.append(UserRow(line, email, role, teams, values.get("name", "")))
    return ParsedFile(file_format.name, rows, log.errors, table.row_count, log.count)


# -- cell checking ------------------------------------------------------------------------


class _CellRule(NamedTuple):
    """How to check one present column's cells (built once per file, used for every row)."""

    name: str
    index: int
    convert: Callable[[str], Any] | None  # None: a non-blank cell is its own value
    blank_value: Callable[[], Any]
    blank_error: str | None  # set when a blank cell is an error


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
        rules.append(_CellRule(column.name, index, _converter(field), blank_value, blank_error))
    return rules


def _checked_records(
    table: CsvTable, rules: list[_CellRule], log: ErrorLog
) -> Iterator[tuple[int, tuple[str, ...], dict[str, Any], bool]]:
    """Each record with its converted cells: ``(line, cells, values, ok)``.

    ``values`` maps column names to the values of the cells that passed; every failing cell is
    reported to ``log`` (in column order) and clears ``ok``.
    """
    # Fast path: take every cell as it is (in C), then convert the cells that need it and fill
    # in blanks. The first problem sends the row to the slow path, which reports every error.
    names = {rule.index: rule.name for rule in rules}
    keys = tuple(names.get(index, index) for index in range(len(table.columns)))
    converting = [(rule.name, rule.index, rule.convert) for rule in rules if rule.convert]
    blanks = [(rule.name, rule.index, rule.blank_value, rule.blank_error) for rule in rules]
    for line, cells in table:
        values: dict[Any, Any] = dict(zip(keys, cells, strict=True))
        ok = True
        try:
            for name, index, convert in converting:
                cell = cells[index]
                if cell:
                    values[name] = convert(cell)
        except ValidationError:
            ok = False
        if ok and not all(cells):
            for name, index, blank_value, blank_error in blanks:
                if not cells[index]:
                    if blank_error is not None:
                        ok = False
                        break
                    values[name] = blank_value()
        if not ok:
            values = _check_each_cell(line, cells, rules, log)
        yield line, cells, values, ok


def _check_each_cell(
    line: int, cells: tuple[str, ...], rules: list[_CellRule], log: ErrorLog
) -> dict[str, Any]:
    """The values of the cells that pass, reporting every cell that does not."""
    values: dict[str, Any] = {}
    for name, index, convert, blank_value, blank_error in rules:
        cell = cells[index]
        if not cell:
            if blank_error is None:
                values[name] = blank_value()
            else:
                log.add(line, blank_error, column=name, value=cell)
        elif convert is None:
            values[name] = cell
        else:
            try:
                values[name] = convert(cell)
            except ValidationError as exc:
                log.add(line, _message(exc), column=name, value=cell)
    return values


def _converter(field: ma_fields.Field) -> Callable[[str], Any] | None:
    """``field.deserialize`` for one non-blank cell, or a faster function with the same results.

    ``None`` means the cell is its own value (a stock ``String`` without validators returns its
    input unchanged).
    """
    stock = not getattr(field, "pre_load", None) and not getattr(field, "post_load", None)
    if stock and type(field) is ma_fields.String and not field.validators:
        return None
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


def _cell(cells: tuple[str, ...], index: int | None) -> str | None:
    return None if index is None else cells[index]


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
