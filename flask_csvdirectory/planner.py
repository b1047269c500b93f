"""The planner: what a sync of Users.csv + Employees.csv does to a directory snapshot.

Pure functions, no I/O: :func:`check_pair` finds the problems that need both files and the
directory (run it after both files parsed cleanly), :func:`plan` turns consistent rows into a
:class:`~flask_csvdirectory.changes.ChangeSet`. The CSV is authoritative: planning the same rows
again against the directory the plan produced gives an empty change set.

Matching rules (shared by both functions):

- a team is matched by :func:`~flask_csvdirectory.records.normalize_team`; an existing team keeps
  its canonical name, a new team is named as Employees.csv first writes it;
- an Employees.csv row is the person whose ``external_id`` is the row's ``employee_id`` (when
  set), else the person with the row's email, else a new person;
- emails are compared normalised (a case-only difference is not a change).

Both functions are one pass over each input with dict lookups (no per-row scans).
"""

from __future__ import annotations

import gc
import itertools
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from .changes import Change, ChangeKind, ChangeSet
from .records import (
    ALL_TEAMS,
    OPTIONAL_FIELDS,
    AccessRecord,
    DirectorySnapshot,
    PersonRecord,
    Role,
    normalize_email,
    normalize_team,
)
from .rows import EMPLOYEES_FILE, USERS_FILE, EmployeeRow, RowError, UserRow
from .validation import LookalikeIndex

__all__ = ["check_pair", "plan"]

#: The ``extra`` of a created person when the file has no extra column: one shared empty dict
#: (a change's values are never mutated), not one per change.
_NO_EXTRA: dict[str, str] = {}


# -- cross-file checks ----------------------------------------------------------------------


def check_pair(
    users: Sequence[UserRow],
    employees: Sequence[EmployeeRow],
    snapshot: DirectorySnapshot,
    *,
    users_complete: bool = True,
    employees_complete: bool = True,
    more_teams: Iterable[str] = (),
) -> list[RowError]:
    """The problems that need both files and the directory; empty when :func:`plan` may run.

    - Users.csv lists no Admin (reported on Users.csv line 1, column ``role``);
    - a manager scope names a team that is neither in the directory nor in Employees.csv;
    - two Employees.csv rows are the same person (by employee_id and by email, say), or repeat an
      email or an employee_id;
    - a row gives a person the email another existing person has now. When that other person
      changes email too (a swap or a chain) it is still reported: the sync does not order them;
    - a new email differs from an existing person's (or from another new one) only by
      look-alike characters (Unicode confusables): the error names both.

    Errors come sorted by file, line and column.

    It also runs when a file had row errors, on the valid rows, so one upload reports every
    problem: ``users_complete``/``employees_complete`` false (a row was invalid) skip the checks
    that a missing row could make wrong (at least one (active) Admin), and ``more_teams`` are the
    teams of invalid Employees.csv rows, still known to the scope check.
    """
    errors: list[RowError] = []
    errors.extend(
        _check_users(
            users, employees, snapshot,
            admins=users_complete, active_admins=users_complete and employees_complete,
            more_teams=more_teams,
        )
    )
    errors.extend(_check_employees(employees, snapshot))
    errors.extend(_check_renamed_users(users, employees, snapshot))
    errors.extend(_check_lookalikes(users, employees, snapshot))
    errors.sort(key=lambda e: (e.file, e.line, e.column or "", e.value or ""))
    return errors


def _check_users(
    users: Sequence[UserRow],
    employees: Sequence[EmployeeRow],
    snapshot: DirectorySnapshot,
    *,
    admins: bool = True,
    active_admins: bool = True,
    more_teams: Iterable[str] = (),
) -> list[RowError]:
    errors: list[RowError] = []
    listed = [user for user in users if user.role is Role.ADMIN]
    if not admins:
        pass
    elif not listed:
        errors.append(
            RowError(USERS_FILE, 1, "role", None, "Users.csv must list at least one Admin.")
        )
    elif active_admins and not any(
        _active_after_sync(admin.email, employees, snapshot) for admin in listed
    ):
        errors.append(
            RowError(
                USERS_FILE,
                listed[0].line,
                "email",
                listed[0].email,
                "Users.csv must list at least one active Admin: every Admin listed is a "
                "deactivated person who is not in Employees.csv, so nobody could sign in.",
            )
        )
    known = set(snapshot.team_by_name)
    known.update(normalize_team(raw) for raw in {row.team for row in employees})
    known.update(normalize_team(raw) for raw in more_teams)
    for user in users:
        for team in user.teams:
            if team != ALL_TEAMS and normalize_team(team) not in known:
                errors.append(
                    RowError(
                        USERS_FILE,
                        user.line,
                        "teams",
                        team,
                        f"Team {team!r} is neither in the directory nor in Employees.csv.",
                    )
                )
    return errors


def _check_renamed_users(
    users: Sequence[UserRow], employees: Sequence[EmployeeRow], snapshot: DirectorySnapshot
) -> list[RowError]:
    """A Users.csv row naming the old email of someone Employees.csv renames (matched by
    employee_id) is almost surely a file that was not updated: granting the old email would
    make a new account and take the renamed person's access away."""
    renamed: dict[str, EmployeeRow] = {}
    for row in employees:
        person = snapshot.by_external_id.get(row.employee_id) if row.employee_id else None
        if person is not None and normalize_email(person.email) != row.email:
            renamed[normalize_email(person.email)] = row
    errors = []
    for user in users:
        renamed_row = renamed.get(user.email)
        if renamed_row is not None and user.email not in {r.email for r in employees}:
            errors.append(
                RowError(
                    USERS_FILE,
                    user.line,
                    "email",
                    user.email,
                    f"Employees.csv line {renamed_row.line} changes this person's email to "
                    f"{renamed_row.email} (employee_id {renamed_row.employee_id}); use the new "
                    "email here.",
                )
            )
    return errors


def _check_lookalikes(
    users: Sequence[UserRow], employees: Sequence[EmployeeRow], snapshot: DirectorySnapshot
) -> list[RowError]:
    """Emails that imitate an existing person's, or another new email of the files."""
    known = snapshot.by_email
    index = LookalikeIndex(known.keys())
    errors: list[RowError] = []
    if not index.has_skeletons() and all(
        email.isascii() and email.lower() == email
        for email in itertools.chain(
            (row.email for row in employees), (user.email for user in users)
        )
    ):
        return errors  # lower-case ASCII only: each is its own skeleton, nothing imitates
    rows: Iterable[tuple[str, int, str]] = itertools.chain(
        ((EMPLOYEES_FILE, row.line, row.email) for row in employees),
        ((USERS_FILE, user.line, user.email) for user in users),
    )
    for file, line, email in rows:
        if email in known:
            continue
        other = index.find(email)
        if other is None:
            index.add(email)
            continue
        holder = known.get(other)
        whose = f"the email of {_describe_person(holder)}" if holder else "an email above"
        errors.append(
            RowError(
                file,
                line,
                "email",
                email,
                f"looks like {other} ({whose}) but differs from it by look-alike characters "
                f"({_differences(email, other)}): use {other} if it is the same person, or a "
                "clearly different address.",
            )
        )
    return errors


def _describe_person(person: PersonRecord) -> str:
    name = f"{person.first_name} {person.last_name}".strip()
    return f"{name}, an existing person" if name else "an existing person"


def _differences(email: str, other: str) -> str:
    """The characters of ``email`` that are not those of ``other``, by code point."""
    differing = [
        f"{character!r} U+{ord(character):04X}"
        for character, known in zip(email, other, strict=False)
        if character != known
    ]
    return ", ".join(differing[:5]) or "different characters"


def _active_after_sync(
    email: str, employees: Sequence[EmployeeRow], snapshot: DirectorySnapshot
) -> bool:
    """Whether the person with ``email`` is active once the sync is applied: every
    Employees.csv person is; a dashboard-only person keeps their state; a new one is active."""
    person = snapshot.by_email.get(normalize_email(email))
    if person is None or person.active:
        return True
    return any(row.email == normalize_email(email) for row in employees)


def _check_employees(
    employees: Sequence[EmployeeRow], snapshot: DirectorySnapshot
) -> list[RowError]:
    errors: list[RowError] = []
    by_external_id = snapshot.by_external_id.get
    by_email = snapshot.by_email.get
    line_of_person: dict[str, int] = {}  # person key -> line of the first row resolving to it
    line_of_email: dict[str, int] = {}
    line_of_id: dict[str, int] = {}
    # Rows matched by employee_id that give their person another email: checked once every row
    # is resolved (a row matched by email keeps its person's email; a new row's email is free).
    new_emails: list[tuple[EmployeeRow, PersonRecord]] = []
    for row in employees:
        email, employee_id = row.email, row.employee_id
        person = by_external_id(employee_id) if employee_id else None
        by = "employee_id"
        if person is None:
            person, by = by_email(email), "email"
        elif person.email != email and normalize_email(person.email) != email:
            new_emails.append((row, person))
        if person is not None and person.key in line_of_person:
            errors.append(
                RowError(
                    EMPLOYEES_FILE,
                    row.line,
                    by,
                    employee_id if by == "employee_id" else email,
                    f"This row is the same person ({person.email}) as line "
                    f"{line_of_person[person.key]}.",
                )
            )
            continue
        if email in line_of_email:
            errors.append(
                RowError(
                    EMPLOYEES_FILE,
                    row.line,
                    "email",
                    email,
                    f"Email already used on line {line_of_email[email]}.",
                )
            )
            continue
        if employee_id and employee_id in line_of_id:
            errors.append(
                RowError(
                    EMPLOYEES_FILE,
                    row.line,
                    "employee_id",
                    employee_id,
                    f"Employee ID already used on line {line_of_id[employee_id]}.",
                )
            )
            continue
        if person is not None:
            line_of_person[person.key] = row.line
        line_of_email[email] = row.line
        if employee_id:
            line_of_id[employee_id] = row.line

    # After the sync every email must be unique. The other holder of the email keeps it unless
    # a row matches them; either way it is an error, since a swap or a chain of email changes
    # would need an apply order the sync does not attempt.
    reported = {e.line for e in errors}
    for row, person in new_emails:
        holder = by_email(row.email)
        if holder is None or holder.key == person.key or row.line in reported:
            continue
        if holder.key in line_of_person:
            message = (
                f"This email belongs to another person, whom line {line_of_person[holder.key]} "
                "gives a new email: swapping or chaining emails in one import is not supported "
                "(import the change in two steps)."
            )
        else:
            message = "This email belongs to another person, who keeps it."
        errors.append(RowError(EMPLOYEES_FILE, row.line, "email", row.email, message))
    return errors


# -- the plan ---------------------------------------------------------------------------------


def plan(
    users: Sequence[UserRow], employees: Sequence[EmployeeRow], snapshot: DirectorySnapshot
) -> ChangeSet:
    """The changes that make ``snapshot`` say what the two files say, in apply order.

    Call it only when :func:`check_pair` found nothing. The result is sorted by kind (apply
    order), then subject, then key, so equal inputs give equal fingerprints.

    The cyclic garbage collector is paused meanwhile (and restored): a plan allocates many
    acyclic objects, and full collections over a large heap would double its time.
    """
    with gc_paused():
        return _plan(users, employees, snapshot)


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause CPython's cyclic collector while many acyclic objects are built (restored after)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _plan(
    users: Sequence[UserRow], employees: Sequence[EmployeeRow], snapshot: DirectorySnapshot
) -> ChangeSet:
    buckets: dict[ChangeKind, list[Change]] = {kind: [] for kind in ChangeKind}
    user_emails = {normalize_email(user.email) for user in users}

    # Team names: normalised -> canonical (existing first, then as Employees.csv first writes).
    existing_teams = snapshot.team_by_name
    canonical: dict[str, str] = {norm: team.name for norm, team in existing_teams.items()}
    team_of_raw: dict[str, tuple[str, str]] = {}  # raw spelling -> (canonical, normalised)

    def canonical_team(raw: str) -> tuple[str, str]:
        norm = normalize_team(raw)
        name = canonical.get(norm)
        if name is None:
            name = canonical[norm] = raw.strip()
            buckets[ChangeKind.TEAM_CREATED].append(
                Change(ChangeKind.TEAM_CREATED, name, after={"name": name})
            )
        found = team_of_raw[raw] = (name, norm)
        return found

    fields = snapshot.fields
    has_team = "team" in fields
    stored = _stored_fields(fields)
    created = buckets[ChangeKind.EMPLOYEE_CREATED].append
    reactivated = buckets[ChangeKind.EMPLOYEE_REACTIVATED].append
    updated = buckets[ChangeKind.EMPLOYEE_UPDATED].append
    moved = buckets[ChangeKind.EMPLOYEE_MOVED].append
    by_external_id = snapshot.by_external_id.get
    by_email = snapshot.by_email.get
    final_email: dict[str, str] = {}  # key of each matched person -> their email after the sync
    renamed: dict[str, str] = {}  # new email -> key of the matched person it is given to
    for row in employees:
        team: str | None
        team_norm: str | None
        if has_team:
            team, team_norm = team_of_raw.get(row.team) or canonical_team(row.team)
        else:
            team = team_norm = None
        email, employee_id = row.email, row.employee_id if "external_id" in fields else None
        person = by_external_id(employee_id) if employee_id else None
        if person is None:
            person = by_email(email)
        if person is None:
            after = {
                "email": email,
                "first_name": row.first_name,
                "last_name": row.last_name,
                "title": row.title or "",
                "team": team,
                "external_id": employee_id,
                "extra": dict(row.extra) if row.extra else _NO_EXTRA,
            }
            if stored is not None:  # the host lacks some fields: plan only the others
                after = {name: value for name, value in after.items() if name in stored}
            created(Change(ChangeKind.EMPLOYEE_CREATED, email, None, None, after))
            continue
        key = person.key
        final_email[key] = email
        if not person.active:
            reactivated(
                Change(
                    ChangeKind.EMPLOYEE_REACTIVATED, email, key, {"active": False}, {"active": True}
                )
            )
        if not (  # the common case, nothing changed, is tested without building anything
            person.email == email
            and person.first_name == row.first_name
            and person.last_name == row.last_name
            and (row.title is None or person.title == row.title)
            and (not employee_id or person.external_id == employee_id)
            and (not row.extra or row.extra.items() <= person.extra.items())
        ):
            update = _person_update(person, row, stored)
            if update is not None:
                updated(Change(ChangeKind.EMPLOYEE_UPDATED, email, key, *update))
                if "email" in update[1]:
                    renamed[email] = key
        current = person.team
        if not has_team:
            continue
        if current != team and (current is None or normalize_team(current) != team_norm):
            if current is not None:
                existing = existing_teams.get(normalize_team(current))
                current = existing.name if existing is not None else current
            moved(Change(ChangeKind.EMPLOYEE_MOVED, email, key, {"team": current}, {"team": team}))

    deactivated = buckets[ChangeKind.EMPLOYEE_DEACTIVATED].append
    for person in snapshot.people:
        if (
            person.active
            and person.key not in final_email
            and normalize_email(person.email) not in user_emails
        ):
            deactivated(
                Change(
                    ChangeKind.EMPLOYEE_DEACTIVATED,
                    person.email,
                    person.key,
                    {"active": True},
                    {"active": False},
                )
            )

    access_changes = (
        _plan_access(users, user_emails, snapshot, final_email, renamed, canonical)
        if "access" in fields
        else []
    )
    for change in access_changes:
        buckets[change.kind].append(change)
    ordered: list[Change] = []
    for bucket in buckets.values():  # ChangeKind order is apply order
        bucket.sort(key=_by_subject)
        ordered += bucket
    return ChangeSet(ordered)


def _by_subject(change: Change) -> tuple[str, str]:
    return change.subject, change.key or ""


def _stored_fields(fields: frozenset[str]) -> frozenset[str] | None:
    """The change-value names a directory with optional ``fields`` stores (``None``: all)."""
    if fields >= OPTIONAL_FIELDS:
        return None
    return frozenset({"email", "extra", *fields})


def _person_update(
    person: PersonRecord, row: EmployeeRow, stored: frozenset[str] | None = None
) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """``(before, after)`` with the fields ``row`` changes on ``person``, or ``None``.

    ``stored``: the fields the directory holds (``None``: every one); others never change.
    """
    before: dict[str, Any] = {}
    after: dict[str, Any] = {}
    if person.email != row.email and normalize_email(person.email) != row.email:
        before["email"], after["email"] = person.email, row.email
    if person.first_name != row.first_name:
        before["first_name"], after["first_name"] = person.first_name, row.first_name
    if person.last_name != row.last_name:
        before["last_name"], after["last_name"] = person.last_name, row.last_name
    if row.title is not None and person.title != row.title:
        before["title"], after["title"] = person.title, row.title
    if row.employee_id and person.external_id != row.employee_id:
        before["external_id"], after["external_id"] = person.external_id, row.employee_id
    if row.extra:
        current = person.extra
        changed = {k: v for k, v in row.extra.items() if current.get(k) != v}
        if changed:
            before["extra"] = {k: current.get(k) for k in changed}
            after["extra"] = changed
    if stored is not None:
        before = {name: value for name, value in before.items() if name in stored}
        after = {name: value for name, value in after.items() if name in stored}
    return (before, after) if after else None


def _plan_access(
    users: Sequence[UserRow],
    user_emails: set[str],
    snapshot: DirectorySnapshot,
    final_email: dict[str, str],
    renamed: dict[str, str],
    canonical: dict[str, str],
) -> list[Change]:
    """Grants, changes and revocations, keyed by the email each person has after the sync.

    A directory without manager scopes (no ``scope`` field) compares roles only.
    """
    changes: list[Change] = []
    has_scope = "scope" in snapshot.fields

    # Existing access, re-keyed to its person's email after the sync.
    current: dict[str, tuple[AccessRecord, str | None]] = {}
    for access in snapshot.access:
        email = normalize_email(access.email)
        key = access.person_key
        if key is None:
            holder = snapshot.by_email.get(email)
            key = holder.key if holder is not None else None
        if key is not None and key in final_email:
            email = final_email[key]
        current[email] = (access, key)

    for user in users:
        email = normalize_email(user.email)
        if user.role is Role.ADMIN or ALL_TEAMS in user.teams:
            teams = [ALL_TEAMS]
        else:
            teams = sorted({canonical.get(normalize_team(t), t) for t in user.teams})
        existing = current.get(email)
        if existing is None:
            key = renamed.get(email)
            if key is None:
                holder = snapshot.by_email.get(email)
                # A holder whose email changes gives it up: a new account will get it.
                if holder is not None and final_email.get(holder.key, email) == email:
                    key = holder.key
            changes.append(
                Change(
                    ChangeKind.ACCESS_GRANTED,
                    email,
                    key,
                    after={"role": user.role.value, "teams": teams, "name": user.name},
                )
            )
            continue
        access, key = existing
        old_teams = sorted(access.teams)
        if access.role != user.role or (has_scope and old_teams != teams):
            changes.append(
                Change(
                    ChangeKind.ACCESS_CHANGED,
                    email,
                    key,
                    {"role": Role(access.role).value, "teams": old_teams},
                    {"role": user.role.value, "teams": teams},
                )
            )

    for email, (access, key) in current.items():
        if email not in user_emails:
            changes.append(
                Change(
                    ChangeKind.ACCESS_REVOKED,
                    email,
                    key,
                    before={"role": Role(access.role).value, "teams": sorted(access.teams)},
                )
            )
    return changes
