"""What the reader makes of the two files: typed rows and row errors with their place.

These are the planner's input. A row error always names the file, the line (1-based, the header
is line 1, as a spreadsheet shows it), the column and the offending value.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Generic, NamedTuple, TypeVar

from .records import Role

USERS_FILE = "Users.csv"
EMPLOYEES_FILE = "Employees.csv"


#: The ``extra`` of rows without extra columns: one shared empty dict (never mutated).
NO_EXTRA: dict[str, str] = {}


class EmployeeRow(NamedTuple):
    """One valid Employees.csv row; ``email`` is normalised (trimmed, lower-case).

    ``title`` is ``None`` when the file has no ``title`` column (keep what the directory has)
    and ``""`` when the cell is blank (clear it). ``employee_id`` is ``None`` when absent or blank.
    ``extra`` holds the host's extra columns present in the file (read-only).

    A named tuple: a large file makes a million of them, and a tuple is built in C.
    """

    line: int
    email: str
    team: str
    first_name: str = ""
    last_name: str = ""
    title: str | None = None
    employee_id: str | None = None
    extra: dict[str, str] = NO_EXTRA


@dataclass(frozen=True, slots=True)
class UserRow:
    """One valid Users.csv row; ``teams`` is sorted, ``("*",)`` for all teams (always for
    admins)."""

    line: int
    email: str
    role: Role
    teams: tuple[str, ...]
    name: str = ""


@dataclass(frozen=True, slots=True)
class RowError:
    """A problem at one place of one file. ``column`` and ``value`` are ``None`` for whole-file
    or whole-row problems (an encoding error, a missing column, ...)."""

    file: str
    line: int
    column: str | None
    value: str | None
    message: str

    def __str__(self) -> str:
        where = f"{self.file}, line {self.line}"
        if self.column:
            where += f", column {self.column!r}"
        if self.value is not None:
            where += f" (value {self.value!r})"
        return f"{where}: {self.message}"

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready dict (API, stored with the run, CSV download)."""
        return {
            "file": self.file,
            "line": self.line,
            "column": self.column,
            "value": self.value,
            "message": self.message,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RowError:
        """Rebuild an error stored with :meth:`to_dict`."""
        return cls(data["file"], data["line"], data["column"], data["value"], data["message"])


RowT = TypeVar("RowT", EmployeeRow, UserRow)


@dataclass(slots=True)
class ParsedFile(Generic[RowT]):
    """The result of reading one file: its valid rows and every error found (capped).

    ``row_count`` counts the data rows read (blank lines excluded), valid or not;
    ``error_count`` counts every error, including those past the cap.
    """

    file: str
    rows: list[RowT]
    errors: list[RowError]
    row_count: int
    error_count: int = 0
    #: Team names written on rows that had an error elsewhere (Employees.csv): the cross-file
    #: checks still know these teams, so every error of both files is found in one pass.
    teams_of_invalid_rows: set[str] = field(default_factory=set)

    @property
    def ok(self) -> bool:
        """True when the file has no error at all."""
        return self.error_count == 0 and not self.errors


#: Cell starts a spreadsheet would run as a formula (CSV injection).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
ERROR_COLUMNS = ("file", "line", "column", "value", "message")


def spreadsheet_safe(value: object) -> str:
    """A CSV cell text that spreadsheets show as text, never run as a formula."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text


def csv_bytes(header: Iterable[object], rows: Iterable[Iterable[object]]) -> bytes:
    """A UTF-8 CSV download in which every cell, the header included, is
    :func:`spreadsheet_safe`: no cell the product writes can run as a formula."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow([spreadsheet_safe(cell) for cell in header])
    for row in rows:
        writer.writerow([spreadsheet_safe(cell) for cell in row])
    return out.getvalue().encode("utf-8")


def errors_to_csv(errors: Iterable[RowError]) -> bytes:
    """Row errors as a UTF-8 CSV download: file, line, column, value, message (every cell
    formula-safe, the column name taken from the uploaded header included)."""
    return csv_bytes(
        ERROR_COLUMNS,
        ([e.file, e.line, e.column or "", e.value, e.message] for e in errors),
    )
