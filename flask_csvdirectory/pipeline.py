"""Files to plan: read and validate both files, then plan against a directory snapshot.

One function, :func:`build_plan`, shared by the run jobs, the API's dry run, the CLI and the
re-plan at approval, so they can never disagree about what a pair of files means.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from . import formats, planner, review
from .adapter import ExtraColumn, FieldLimit
from .changes import ChangeSet
from .errors import FileValidationError
from .guards import GuardReason
from .records import DirectorySnapshot
from .rows import EmployeeRow, ParsedFile, UserRow


@dataclass(slots=True)
class ParsedPair:
    """Both files read and validated, each on its own."""

    users: ParsedFile[UserRow]
    employees: ParsedFile[EmployeeRow]

    def raise_for_errors(self) -> None:
        """Raise :class:`FileValidationError` with every error of both files, if any."""
        errors = self.users.errors + self.employees.errors
        count = self.users.error_count + self.employees.error_count
        if errors or count:
            raise FileValidationError(errors, max(count, len(errors)))


@dataclass(slots=True)
class PlanOutcome:
    """A validated plan: the change set and what it was built from."""

    changeset: ChangeSet
    users_rows: int
    employees_rows: int
    directory_size: int
    timings: dict[str, float] = field(default_factory=dict)
    people: review.People = field(default_factory=review.People)
    #: what the guards say about the plan (filled by :func:`~flask_csvdirectory.runs.dry_run`)
    guard_reasons: list[GuardReason] = field(default_factory=list)


def read_pair(
    users_data: bytes,
    employees_data: bytes,
    *,
    extra_columns: Sequence[ExtraColumn] = (),
    max_errors: int = 1000,
    limits: Mapping[str, FieldLimit] | None = None,
) -> ParsedPair:
    """Read and validate both files (each error names its file, line and column); ``limits``
    are the host's (:meth:`~flask_csvdirectory.DirectoryAdapter.field_limits`)."""
    return ParsedPair(
        users=formats.parse_users(users_data, max_errors=max_errors, limits=limits),
        employees=formats.parse_employees(
            employees_data, extra_columns, max_errors=max_errors, limits=limits
        ),
    )


def plan_pair(pair: ParsedPair, snapshot: DirectorySnapshot) -> ChangeSet:
    """Check the files against each other and the directory, then plan the change set.

    Raises :class:`FileValidationError` when either file, or the pair, has an error: every
    error at once (the cross-file checks run on the valid rows even when a file had errors).

    The pair's rows are released once the plan is made (``rows`` left empty; the counts stay):
    a large import does not hold a million rows through the apply that follows.
    """
    users, employees = pair.users, pair.employees
    readable = not _unreadable(users) and not _unreadable(employees)
    cross = (
        planner.check_pair(
            users.rows,
            employees.rows,
            snapshot,
            users_complete=users.ok,
            employees_complete=employees.ok,
            more_teams=employees.teams_of_invalid_rows,
        )
        if readable
        else []
    )
    errors = users.errors + employees.errors + cross
    count = users.error_count + employees.error_count + len(cross)
    if errors or count:
        raise FileValidationError(errors, max(count, len(errors)))
    changeset = planner.plan(users.rows, employees.rows, snapshot)
    users.rows, employees.rows = [], []
    return changeset


def _unreadable(parsed: ParsedFile[EmployeeRow] | ParsedFile[UserRow]) -> bool:
    """A file with errors and no valid row (unreadable, a required column missing, every row
    wrong): checking the other file against it would only report noise."""
    return not parsed.rows and bool(parsed.errors or parsed.error_count)


def build_plan(
    users_data: bytes,
    employees_data: bytes,
    snapshot: DirectorySnapshot,
    *,
    extra_columns: Sequence[ExtraColumn] = (),
    max_errors: int = 1000,
    limits: Mapping[str, FieldLimit] | None = None,
) -> PlanOutcome:
    """Read, validate and plan in one call; raises :class:`FileValidationError` on bad input."""
    started = time.perf_counter()
    pair = read_pair(
        users_data,
        employees_data,
        extra_columns=extra_columns,
        max_errors=max_errors,
        limits=limits,
    )
    read_done = time.perf_counter()
    changeset = plan_pair(pair, snapshot)
    return PlanOutcome(
        changeset=changeset,
        users_rows=pair.users.row_count,
        employees_rows=pair.employees.row_count,
        directory_size=snapshot.size,
        people=review.describe_people(changeset, snapshot),
        timings={
            "read_seconds": round(read_done - started, 4),
            "plan_seconds": round(time.perf_counter() - read_done, 4),
        },
    )
