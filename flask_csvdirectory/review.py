"""What an admin needs to review a change set: who each change touches, what is risky, search.

Pure functions over a :class:`~.changes.ChangeSet` and the :class:`People` index made when it was
planned; the dashboard, the downloads and the notifications use them, so they all tell the same
story.

- :func:`describe_people` builds the index at plan time from the directory snapshot: name, team
  (before and after) and role (before and after) of every person a change touches. It is stored
  encrypted with the run beside the change set.
- :func:`risk_of` classifies a change: deactivations, access revoked and access reduced are
  *destructive*; an admin losing the Admin role (or being deactivated) is an *admin affected*.
- :func:`summarize` gives the counts, destructive kinds first, and the admins losing access.
- :func:`matches` searches email, name and team (before and after) in every kind.
- :func:`changes_csv` and :func:`result_csv` are the downloads (formula-safe in every cell).
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

from .changes import Change, ChangeKind, ChangeSet
from .planner import gc_paused
from .records import ALL_TEAMS, DirectorySnapshot, PersonRecord, Role, normalize_email
from .rows import csv_bytes

#: A pseudo-kind for filtering: the access changes that take a role or teams away.
ACCESS_REDUCED = "access_reduced"

#: Kinds whose every change is destructive, in review order.
DESTRUCTIVE_KINDS = (ChangeKind.EMPLOYEE_DEACTIVATED, ChangeKind.ACCESS_REVOKED)

PERSON_KINDS = frozenset(
    {
        ChangeKind.EMPLOYEE_CREATED,
        ChangeKind.EMPLOYEE_REACTIVATED,
        ChangeKind.EMPLOYEE_UPDATED,
        ChangeKind.EMPLOYEE_MOVED,
        ChangeKind.EMPLOYEE_DEACTIVATED,
        ChangeKind.ACCESS_GRANTED,
        ChangeKind.ACCESS_CHANGED,
        ChangeKind.ACCESS_REVOKED,
    }
)
_PERSON_KINDS = PERSON_KINDS


@dataclass(slots=True)
class Who:
    """One person a change set touches: name, team and dashboard role before and after."""

    email: str
    name: str = ""
    team_before: str | None = None
    team_after: str | None = None
    role_before: str | None = None
    role_after: str | None = None
    teams_before: list[str] | None = None
    teams_after: list[str] | None = None
    active_after: bool = True

    @property
    def team(self) -> str:
        """The team as a reader wants it: ``Sales``, or ``Sales → Support`` when it moves."""
        before, after = self.team_before, self.team_after
        if before and after and before != after:
            return f"{before} → {after}"
        return after or before or "—"

    @property
    def role(self) -> str:
        """The dashboard role: ``Admin``, ``Admin → Manager``, ``—`` for none."""
        before, after = self.role_before, self.role_after
        if before != after:
            return f"{before or 'none'} → {after or 'none'}"
        return before or "—"


#: The fields of :class:`Who` in constructor order (how the stored indexes write a person).
WHO_FIELDS = tuple(f.name for f in fields(Who))
_WHO_FIELDS = WHO_FIELDS




@dataclass(slots=True)
class People:
    """Who each change touches, by normalised email (see :func:`describe_people`)."""

    by_email: dict[str, Who] = field(default_factory=dict)

    def of(self, change: Change) -> Who | None:
        """The person a change is about (None for a team)."""
        if change.kind not in _PERSON_KINDS:
            return None
        email = normalize_email(change.subject)
        found = self.by_email.get(email)
        return found if found is not None else Who(email=email)

    def to_bytes(self) -> bytes:
        """Compressed JSON (one row of :data:`_WHO_FIELDS` per person), stored encrypted with
        the run."""
        rows = [[getattr(who, name) for name in _WHO_FIELDS] for who in self.by_email.values()]
        return zlib.compress(json.dumps(rows, separators=(",", ":")).encode(), 1)

    @classmethod
    def from_bytes(cls, data: bytes) -> People:
        """Rebuild an index stored with :meth:`to_bytes`."""
        with gc_paused():
            return cls({row[0]: Who(*row) for row in json.loads(zlib.decompress(data))})


def describe_people(changeset: ChangeSet, snapshot: DirectorySnapshot) -> People:
    """Name, team and role before and after the change set, for every person it touches.

    One pass over the changes with snapshot look-ups; only touched people are described.
    """
    with gc_paused():
        return _describe_people(changeset, snapshot)


def _describe_people(changeset: ChangeSet, snapshot: DirectorySnapshot) -> People:
    people: dict[str, Who] = {}
    by_key: dict[str, PersonRecord] = {}  # built on first need: only renames miss by email

    def who(change: Change) -> Who:
        email = normalize_email(change.subject)
        found = people.get(email)
        if found is not None:
            return found
        person = snapshot.by_email.get(email)
        if change.key and (person is None or person.key != change.key):
            if not by_key:
                by_key.update((p.key, p) for p in snapshot.people)
            person = by_key.get(change.key, person)
        access = snapshot.access_by_email.get(email)
        if access is None and person is not None:
            access = snapshot.access_by_email.get(normalize_email(person.email))
        name = ""
        if person is not None:
            name = " ".join(p for p in (person.first_name, person.last_name) if p)
        if not name and access is not None:
            name = access.name
        role = Role(access.role).value if access is not None else None
        teams = sorted(access.teams) if access is not None else None
        found = people[email] = Who(
            email=email,
            name=name,
            team_before=person.team if person is not None else None,
            team_after=person.team if person is not None else None,
            role_before=role,
            role_after=role,
            teams_before=teams,
            teams_after=teams,
            active_after=person.active if person is not None else True,
        )
        return found

    for change in changeset:
        if change.kind not in _PERSON_KINDS:
            continue
        entry = who(change)
        after = change.after or {}
        match change.kind:
            case ChangeKind.EMPLOYEE_CREATED:
                entry.name = " ".join(
                    p for p in (after.get("first_name"), after.get("last_name")) if p
                )
                entry.team_after = after.get("team")
                entry.active_after = True
            case ChangeKind.EMPLOYEE_UPDATED:
                if "first_name" in after or "last_name" in after:
                    first, last = (entry.name.split(" ", 1) + [""])[:2]
                    entry.name = " ".join(
                        p for p in (after.get("first_name", first), after.get("last_name", last))
                        if p
                    )
            case ChangeKind.EMPLOYEE_MOVED:
                entry.team_before = (change.before or {}).get("team")
                entry.team_after = after.get("team")
            case ChangeKind.EMPLOYEE_DEACTIVATED:
                entry.active_after = False
            case ChangeKind.EMPLOYEE_REACTIVATED:
                entry.active_after = True
            case ChangeKind.ACCESS_GRANTED:
                entry.role_after = after.get("role")
                entry.teams_after = after.get("teams")
                if not entry.name:
                    entry.name = after.get("name") or ""
            case ChangeKind.ACCESS_CHANGED:
                entry.role_before = (change.before or {}).get("role")
                entry.teams_before = (change.before or {}).get("teams")
                entry.role_after = after.get("role")
                entry.teams_after = after.get("teams")
            case ChangeKind.ACCESS_REVOKED:
                entry.role_before = (change.before or {}).get("role")
                entry.teams_before = (change.before or {}).get("teams")
                entry.role_after = None
                entry.teams_after = None
    return People(people)


# -- risk -----------------------------------------------------------------------------------


def access_reduced(change: Change) -> bool:
    """Whether an access change takes something away: Admin -> Manager, or fewer teams."""
    if change.kind is not ChangeKind.ACCESS_CHANGED:
        return False
    before, after = change.before or {}, change.after or {}
    if before.get("role") == Role.ADMIN.value and after.get("role") != Role.ADMIN.value:
        return True
    old, new = set(before.get("teams") or []), set(after.get("teams") or [])
    if ALL_TEAMS in old:
        return ALL_TEAMS not in new
    return ALL_TEAMS not in new and bool(old - new)


def is_destructive(change: Change) -> bool:
    """Deactivations, access revoked and access reduced."""
    return change.kind in DESTRUCTIVE_KINDS or access_reduced(change)


def affects_admin(change: Change, people: People) -> bool:
    """Whether an Admin loses the role or is deactivated by this change."""
    who = people.of(change)
    if who is None or who.role_before != Role.ADMIN.value:
        return False
    if change.kind is ChangeKind.EMPLOYEE_DEACTIVATED:
        return True
    if change.kind is ChangeKind.ACCESS_REVOKED:
        return True
    return change.kind is ChangeKind.ACCESS_CHANGED and access_reduced(change)


def review_rank(change: Change) -> int:
    """The review order: deactivations, access revoked, access reduced, then apply order."""
    if change.kind is ChangeKind.EMPLOYEE_DEACTIVATED:
        return 0
    if change.kind is ChangeKind.ACCESS_REVOKED:
        return 1
    if access_reduced(change):
        return 2
    return 3 + change.kind.order


def in_review_order(changes: Iterable[Change]) -> list[Change]:
    """``changes`` with the destructive ones first (stable within a rank)."""
    return sorted(changes, key=review_rank)


@dataclass(frozen=True, slots=True)
class CountRow:
    """One line of the counts table: a kind (or ``access_reduced``), its label and count."""

    value: str
    label: str
    count: int
    destructive: bool


@dataclass(frozen=True, slots=True)
class Summary:
    """Counts, destructive first, and who loses admin access: what the review leads with."""

    rows: list[CountRow]
    total: int
    destructive: int
    admins_affected: list[Who]

    @property
    def destructive_rows(self) -> list[CountRow]:
        """The destructive lines with a count."""
        return [row for row in self.rows if row.destructive]


def summarize(changeset: ChangeSet, people: People) -> Summary:
    """The review's lead: counts by kind (destructive kinds marked and first) and the admins
    who lose access."""
    reduced = sum(1 for change in changeset.of_kind(ChangeKind.ACCESS_CHANGED)
                  if access_reduced(change))
    admins: dict[str, Who] = {}
    for change in changeset:
        if affects_admin(change, people):
            who = people.of(change)
            assert who is not None
            admins.setdefault(who.email, who)
    return summary_from(changeset.counts(), reduced, list(admins.values()))


def summary_from(counts: dict[str, int], reduced: int, admins_affected: list[Who]) -> Summary:
    """:func:`summarize` from what a stored change set's index keeps: the counts by kind, how
    many access changes reduce access, and the admins who lose access."""
    rows = [
        CountRow(kind.value, kind.label, counts[kind.value], True)
        for kind in DESTRUCTIVE_KINDS
        if counts[kind.value]
    ]
    if reduced:
        rows.append(CountRow(ACCESS_REDUCED, "Dashboard access reduced", reduced, True))
    for kind in ChangeKind:
        if kind in DESTRUCTIVE_KINDS or not counts[kind.value]:
            continue
        count = counts[kind.value] - (reduced if kind is ChangeKind.ACCESS_CHANGED else 0)
        if count:
            label = "Dashboard access widened" if kind is ChangeKind.ACCESS_CHANGED and reduced \
                else kind.label
            rows.append(CountRow(kind.value, label, count, False))
    return Summary(
        rows=rows,
        total=sum(counts.values()),
        destructive=sum(row.count for row in rows if row.destructive),
        admins_affected=admins_affected,
    )


#: How many admins losing access the approve confirmation names (then "and N more").
CONFIRM_NAMES = 10


def confirmation(summary: Summary) -> str:
    """The approve dialog's question, naming destructive counts and admins losing access."""
    parts = [f"Apply these {summary.total} changes to the directory?"]
    if summary.destructive_rows:
        parts.append(
            "This includes: "
            + "; ".join(f"{row.label}: {row.count}" for row in summary.destructive_rows)
            + "."
        )
    if summary.admins_affected:
        shown = summary.admins_affected[:CONFIRM_NAMES]
        names = ", ".join(_person_label(who) for who in shown)
        more = len(summary.admins_affected) - len(shown)
        parts.append(f"Admins losing access: {names}{f' and {more} more' if more else ''}.")
    return "\n".join(parts)


def _person_label(who: Who) -> str:
    return f"{who.name} ({who.email})" if who.name else who.email


# -- search and filters ---------------------------------------------------------------------


def matches(change: Change, query: str, people: People) -> bool:
    """Whether ``query`` (case-insensitive) is in the change's email, the person's name, or a
    team before or after, in any kind."""
    needle = query.casefold().strip()
    if not needle:
        return True
    haystack: list[str | None] = [change.subject]
    who = people.of(change)
    if who is not None:
        haystack += [who.email, who.name, who.team_before, who.team_after]
        haystack += list(who.teams_before or []) + list(who.teams_after or [])
    for values in (change.before, change.after):
        for key in ("email", "first_name", "last_name", "team", "name"):
            value = (values or {}).get(key)
            if isinstance(value, str):
                haystack.append(value)
        teams = (values or {}).get("teams")
        if isinstance(teams, list):
            haystack += [str(team) for team in teams]
    return any(needle in text.casefold() for text in haystack if text)


def select(
    changeset: ChangeSet, people: People, *, kind: str | None = None, query: str = ""
) -> list[Change]:
    """The changes of one kind (or ``access_reduced``) matching ``query``, in review order."""
    wanted: ChangeKind | None = None
    if kind and kind != ACCESS_REDUCED:
        wanted = ChangeKind(kind)
    chosen = [
        change
        for change in changeset
        if (wanted is None or change.kind is wanted)
        and (kind != ACCESS_REDUCED or access_reduced(change))
        and matches(change, query, people)
    ]
    return in_review_order(chosen)


# -- downloads -------------------------------------------------------------------------------

CHANGE_COLUMNS = (
    "change", "destructive", "email_or_team", "name", "team_before", "team_after",
    "role_before", "role_after", "field", "before", "after",
)
RESULT_COLUMNS = ("email", "name", "team", "active", "dashboard_role", "dashboard_teams",
                  "changes")


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list | tuple):
        return ";".join(str(item) for item in value)
    if isinstance(value, dict):
        return "; ".join(f"{key}={_text(item)}" for key, item in value.items())
    return str(value)


def changes_csv(changes: Sequence[Change], people: People) -> bytes:
    """The change set as CSV, one line per changed field (a line per change without fields)."""
    rows: list[Sequence[Any]] = []
    for change in changes:
        who = people.of(change)
        base = [
            change.kind.label,
            "yes" if is_destructive(change) else "no",
            change.subject,
            who.name if who else "",
            (who.team_before if who else None) or "",
            (who.team_after if who else change.subject) or "",
            (who.role_before if who else None) or "",
            (who.role_after if who else None) or "",
        ]
        fields = [
            (key, (change.before or {}).get(key), (change.after or {}).get(key))
            for key in dict.fromkeys([*(change.before or {}), *(change.after or {})])
        ]
        fields = [item for item in fields if item[1] != item[2]]
        if not fields:
            rows.append([*base, "", "", ""])
        for key, before, after in fields:
            rows.append([*base, key, _text(before), _text(after)])
    return csv_bytes(CHANGE_COLUMNS, rows)


def result_csv(changes: Sequence[Change], people: People) -> bytes:
    """What the applied run left: each touched person's state after it, and what changed."""
    touched: dict[str, list[str]] = {}
    for change in changes:
        if people.of(change) is not None:
            touched.setdefault(normalize_email(change.subject), []).append(change.kind.label)
    rows = []
    for email, labels in touched.items():
        who = people.by_email.get(email) or Who(email=email)
        rows.append(
            [
                email,
                who.name,
                who.team_after or "",
                "yes" if who.active_after else "no",
                who.role_after or "",
                _text(who.teams_after),
                "; ".join(dict.fromkeys(labels)),
            ]
        )
    return csv_bytes(RESULT_COLUMNS, rows)
