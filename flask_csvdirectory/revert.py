"""Undoing an applied sync: the inverse of its recorded changes, planned against today's directory.

Pure functions, no I/O, like :mod:`.planner`: :func:`plan_revert` takes the changes a run applied
(each with the values it found, ``before``, and the values it wrote, ``after``) and a snapshot of
the directory now, and returns the change set that puts back what that run changed, plus the
conflicts it left alone. The result is an ordinary :class:`~.changes.ChangeSet`, so a revert run
goes through the same threshold, approval and atomic apply as an upload.

The rule for each field: it is restored only where it still holds the value the run wrote. A
field already back at its old value needs nothing; a field holding anything else was changed
since, and is listed as a :class:`Conflict` and left alone.

What each kind of change becomes:

- ``employee_created`` -> the person is deactivated (the host owns deletion). The person is
  found by the email the run gave them and, when the run set one, their employee id;
- ``team_created`` -> the team is kept: people the run created are deactivated, not deleted, and
  stay in it, and the host owns deletion of teams too;
- ``employee_reactivated`` / ``employee_deactivated`` -> the opposite;
- ``employee_updated`` / ``employee_moved`` -> the old values, field by field;
- ``access_granted`` -> revoked (and a dashboard-only account the grant created is
  deactivated); ``access_changed`` -> changed back; ``access_revoked`` -> granted again.

A person the run created who has dashboard access this revert does not take away (it was given
since) is not deactivated: that is a conflict. And a revert never leaves the organization
without an active admin: when it would, the changes that take an admin away are conflicts.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import chain
from typing import Any, Protocol

from .changes import Change, ChangeKind, ChangeSet
from .planner import gc_paused
from .records import (
    ALL_TEAMS,
    AccessRecord,
    DirectorySnapshot,
    PersonRecord,
    Role,
    normalize_email,
    normalize_team,
)

__all__ = ["AppliedChanges", "Conflict", "RevertPlan", "plan_revert"]


@dataclass(frozen=True, slots=True)
class Conflict:
    """A change of the original run that the revert leaves alone, and why.

    ``field`` is the person field or ``"access"``/``"active"``/``"team"``; ``wrote`` is what
    the run wrote, ``now`` what the directory holds today (``None`` when unknown or gone).
    """

    kind: ChangeKind
    subject: str
    field: str
    wrote: Any
    now: Any
    message: str

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (the API's conflict items)."""
        return {
            "kind": self.kind.value,
            "subject": self.subject,
            "field": self.field,
            "wrote": self.wrote,
            "now": self.now,
            "message": self.message,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Conflict:
        """Rebuild a conflict from :meth:`to_dict` output."""
        return cls(
            ChangeKind(data["kind"]),
            data["subject"],
            data["field"],
            data.get("wrote"),
            data.get("now"),
            data["message"],
        )


def conflicts_to_bytes(conflicts: list[Conflict]) -> bytes:
    """Serialise conflicts (compressed JSON) for the encrypted store."""
    return zlib.compress(json.dumps([c.to_dict() for c in conflicts]).encode(), 1)


def conflicts_from_bytes(data: bytes) -> list[Conflict]:
    """Rebuild conflicts stored with :func:`conflicts_to_bytes`."""
    return [Conflict.from_dict(item) for item in json.loads(zlib.decompress(data))]


@dataclass(slots=True)
class RevertPlan:
    """The inverse change set and what it left alone."""

    changeset: ChangeSet
    conflicts: list[Conflict] = field(default_factory=list)


class AppliedChanges(Protocol):
    """The record :func:`plan_revert` inverts, read one kind at a time in plan order, as rows
    (:meth:`.Change.to_row`): a :class:`~.changes.ChangeSet`, or a stored record that streams
    its pages (:meth:`.changestore.StoredChanges.iter_kind_rows`), so the record is never held
    whole and a first import's creations never become objects."""

    def iter_kind_rows(self, kind: ChangeKind) -> Iterable[Sequence[Any]]:
        """The rows of the applied changes of ``kind``, in plan order."""


class _ChangeSetSource:
    """A change set held in memory, read as :class:`AppliedChanges`."""

    __slots__ = ("changeset",)

    def __init__(self, changeset: ChangeSet) -> None:
        self.changeset = changeset

    def iter_kind_rows(self, kind: ChangeKind) -> Iterable[Sequence[Any]]:
        return (change.to_row() for change in self.changeset.of_kind(kind))


def plan_revert(applied: ChangeSet | AppliedChanges, snapshot: DirectorySnapshot) -> RevertPlan:
    """The changes that undo ``applied`` on ``snapshot``, where nothing changed since.

    ``applied`` is read kind by kind (see :class:`AppliedChanges`), each change once (the few
    access grants twice), and no change of it is kept: the plan's memory is the inverse
    change set, the conflicts and one look-up by person key, beside the snapshot.

    The cyclic garbage collector is paused meanwhile, as :func:`.planner.plan` does: the plan
    allocates many acyclic objects next to a large snapshot."""
    source = _ChangeSetSource(applied) if isinstance(applied, ChangeSet) else applied
    with gc_paused():
        return _Reverter(source, snapshot).plan()


#: person fields an ``employee_updated`` may carry, besides ``extra``
_PLAIN_FIELDS = ("email", "first_name", "last_name", "title", "external_id")
#: the values of every inverse (de)activation: shared, not one pair of dicts per change (a
#: change set's values are read, never changed in place)
_ACTIVE: dict[str, Any] = {"active": True}
_INACTIVE: dict[str, Any] = {"active": False}
#: the place of a deactivation decided only once every access change is inverted
_HOLE = Change(ChangeKind.EMPLOYEE_DEACTIVATED, "")


class _Reverter:
    """One revert plan in the making (keeps the look-ups of a snapshot together)."""

    def __init__(self, applied: AppliedChanges, snapshot: DirectorySnapshot) -> None:
        self.applied = applied
        self.snapshot = snapshot
        self.by_key = {person.key: person for person in snapshot.people}
        self.access_by_key: dict[str, AccessRecord] = {}
        for access in snapshot.access:
            key = access.person_key
            if key is None:
                holder = snapshot.by_email.get(normalize_email(access.email))
                key = holder.key if holder is not None else None
            if key is not None:
                self.access_by_key[key] = access
        #: the inverse changes by kind, each list in the order they were made: joined in
        #: apply order, they are what ``ChangeSet.of`` (a stable sort by kind) would give
        self.out: dict[ChangeKind, list[Change]] = {kind: [] for kind in ChangeKind}
        self.conflicts: list[Conflict] = []
        #: person key -> their email once the revert's updates are applied
        self.final_email: dict[str, str] = {}
        #: keys the revert deactivates, and keys whose access it revokes
        self.deactivating: set[str] = set()
        self.revoking: set[str] = set()
        #: deactivations that wait for the access changes (see :meth:`_pending`): their place
        #: among the deactivations, and what decides them
        self.deferred: list[tuple[int, ChangeKind, PersonRecord, str]] = []
        self.deferred_keys: set[str] = set()

    def _emit(self, change: Change) -> None:
        self.out[change.kind].append(change)

    @property
    def changes(self) -> Iterator[Change]:
        """Every inverse change so far, in apply order."""
        return chain.from_iterable(self.out.values())

    # -- the plan ---------------------------------------------------------------------------

    def plan(self) -> RevertPlan:
        rows_of = self.applied.iter_kind_rows

        def of_kind(kind: ChangeKind) -> Iterator[Change]:
            return map(Change.from_row, rows_of(kind))  # type: ignore[arg-type]
        # A grant to an email nobody had made a new account unless a row of the run created
        # that person: the (few) grants without a key are read first, so only their emails are
        # looked for among the people created.
        grant_emails = {
            normalize_email(change.subject)
            for change in of_kind(ChangeKind.ACCESS_GRANTED)
            if change.key is None
        }
        # People first: email changes decide which email the access changes are keyed by.
        for change in of_kind(ChangeKind.EMPLOYEE_UPDATED):
            self._updated(change)
        for change in of_kind(ChangeKind.EMPLOYEE_MOVED):
            self._moved(change)
        for change in of_kind(ChangeKind.EMPLOYEE_DEACTIVATED):
            self._deactivated(change)
        created_emails = self._created(rows_of(ChangeKind.EMPLOYEE_CREATED), grant_emails)
        for change in of_kind(ChangeKind.EMPLOYEE_REACTIVATED):
            person = self._person(change)
            if person is not None:
                self._pending(change.kind, person, change.subject)
        for change in of_kind(ChangeKind.ACCESS_GRANTED):
            account = self._access_granted(change, created_emails)
            if account is not None:
                self._pending(change.kind, account, change.subject)
        for change in of_kind(ChangeKind.ACCESS_CHANGED):
            self._access_changed(change)
        for change in of_kind(ChangeKind.ACCESS_REVOKED):
            self._access_revoked(change)
        # Deactivations last: they need to know whose access the revert takes away.
        self._settle_deferred()
        self._keep_an_admin()
        return RevertPlan(ChangeSet(list(self.changes)), self.conflicts)

    def _created(self, rows: Iterable[Sequence[Any]], grant_emails: set[str]) -> set[str]:
        """Deactivate the people the run created, from the rows of its creations (the bulk of
        a first import's revert, so :meth:`_created_person` and :meth:`_pending` inlined, and
        no object per change); returns the emails among ``grant_emails`` the run created."""
        created_emails: set[str] = set()
        created = ChangeKind.EMPLOYEE_CREATED
        by_email, access_by_key = self.snapshot.by_email, self.access_by_key
        deactivating, final_email = self.deactivating, self.final_email
        deferred_keys = self.deferred_keys
        deactivations = self.out[ChangeKind.EMPLOYEE_DEACTIVATED]
        deactivated = ChangeKind.EMPLOYEE_DEACTIVATED
        empty: dict[str, Any] = {}
        for row in rows:
            subject, after = row[1], row[4] or empty
            email = after.get("email", subject).strip().lower()  # normalize_email, inlined
            if grant_emails and email in grant_emails and "email" in after:
                created_emails.add(email)
            person = by_email.get(email)
            external_id = after.get("external_id")
            if person is None or (external_id and person.external_id != external_id):
                self._created_person(Change.from_row(list(row)))  # the conflict
                continue
            key = person.key
            if key in deferred_keys or key in access_by_key:
                self._pending(created, person, subject)
            elif person.active and key not in deactivating:
                deactivating.add(key)
                deactivations.append(
                    Change(deactivated, final_email.get(key, person.email), key, _ACTIVE, _INACTIVE)
                )
        return created_emails

    def _pending(self, kind: ChangeKind, person: PersonRecord, subject: str) -> None:
        """Deactivate a person the run created or reactivated (or whose account a grant made).

        Only a person the run created who has dashboard access today waits for the access
        changes (is that access revoked by this revert?), and so does any later deactivation of
        a person already waiting; the rest are decided now, in their place, so nothing of the
        record is kept for the end. The outcome is the same as deciding them all at the end in
        this order."""
        key = person.key
        if key in self.deferred_keys or (
            kind is not ChangeKind.EMPLOYEE_REACTIVATED and key in self.access_by_key
        ):
            holes = self.out[ChangeKind.EMPLOYEE_DEACTIVATED]
            self.deferred.append((len(holes), kind, person, subject))
            self.deferred_keys.add(key)
            holes.append(_HOLE)
            return
        self._deactivate(kind, person, subject)

    def _settle_deferred(self) -> None:
        if not self.deferred:
            return
        deactivations = self.out[ChangeKind.EMPLOYEE_DEACTIVATED]
        for at, kind, person, subject in self.deferred:
            change = self._deactivate(kind, person, subject, emit=False)
            if change is not None:
                deactivations[at] = change
        self.out[ChangeKind.EMPLOYEE_DEACTIVATED] = [c for c in deactivations if c is not _HOLE]

    def _keep_an_admin(self) -> None:
        """Never leave the organization without an active admin: when the inverse would, the
        changes that take an admin away are left out, as conflicts."""
        admins_now = {
            key
            for key, access in self.access_by_key.items()
            if access.role is Role.ADMIN and self.by_key[key].active
        }
        if not admins_now:
            return  # nobody to lock out (the directory has no active admin today)
        reactivating = {c.key for c in self.out[ChangeKind.EMPLOYEE_REACTIVATED]}

        def takes_admin_away(change: Change) -> bool:
            if change.key not in admins_now:
                return False
            if change.kind is ChangeKind.EMPLOYEE_DEACTIVATED:
                return True
            if change.kind is ChangeKind.ACCESS_REVOKED:
                return True
            after = change.after or {}
            return change.kind is ChangeKind.ACCESS_CHANGED and after.get("role") != "Admin"

        def gives_admin(change: Change) -> bool:
            after = change.after or {}
            return (
                after.get("role") == Role.ADMIN.value
                and change.key is not None
                and change.key not in self.deactivating
                and (self.by_key[change.key].active or change.key in reactivating)
            )

        # only deactivations and access changes can take an admin away or give one
        admin_kinds = (
            ChangeKind.EMPLOYEE_DEACTIVATED,
            ChangeKind.ACCESS_GRANTED,
            ChangeKind.ACCESS_CHANGED,
            ChangeKind.ACCESS_REVOKED,
        )
        removed = {
            change.key
            for kind in admin_kinds
            for change in self.out[kind]
            if change.key in admins_now and takes_admin_away(change)
        }
        if admins_now - removed or any(
            gives_admin(change)
            for kind in (ChangeKind.ACCESS_GRANTED, ChangeKind.ACCESS_CHANGED)
            for change in self.out[kind]
        ):
            return
        reactivated = {
            row[2] for row in self.applied.iter_kind_rows(ChangeKind.EMPLOYEE_REACTIVATED)
        }
        # the conflicts in the order the inverse changes are made (revokes, access changes,
        # deactivations), as they always were listed
        for kind in (
            ChangeKind.ACCESS_REVOKED,
            ChangeKind.ACCESS_CHANGED,
            ChangeKind.EMPLOYEE_DEACTIVATED,
        ):
            kept = []
            for change in self.out[kind]:
                if change.key in admins_now and takes_admin_away(change):
                    self._conflict_at(
                        _original_kind(change, reactivated),
                        change.subject,
                        "access",
                        None,
                        "Admin",
                        "Reverting this would leave the organization without an active admin; "
                        "it is left as it is.",
                    )
                else:
                    kept.append(change)
            self.out[kind] = kept

    # -- people -----------------------------------------------------------------------------

    def _person(self, change: Change) -> PersonRecord | None:
        """Today's record of the person ``change`` was about, or a conflict when gone."""
        person = self.by_key.get(change.key) if change.key is not None else None
        if person is None:
            self._conflict(
                change, "person", None, None, "This person is no longer in the directory."
            )
        return person

    def _created_person(self, change: Change) -> PersonRecord | None:
        """The person the run created: by the email it gave them, checked by employee id."""
        after = change.after or {}
        person = self.snapshot.by_email.get(normalize_email(after.get("email", change.subject)))
        external_id = after.get("external_id")
        if person is None or (external_id and person.external_id != external_id):
            self._conflict(
                change,
                "email",
                after.get("email"),
                None,
                "The person this sync created no longer has the email it gave them (or their "
                "employee id changed since), so they are left as they are.",
            )
            return None
        return person

    def _email(self, person: PersonRecord) -> str:
        return self.final_email.get(person.key, person.email)

    def _updated(self, change: Change) -> None:
        person = self._person(change)
        if person is None:
            return
        before, after = change.before or {}, change.after or {}
        now_values: dict[str, Any] = {}
        restored: dict[str, Any] = {}
        for name in _PLAIN_FIELDS:
            if name not in after:
                continue
            current = getattr(person, name)
            if _same(name, current, before.get(name)):
                continue
            if not _same(name, current, after[name]):
                self._conflict(
                    change,
                    name,
                    after[name],
                    current,
                    f"{_label(name)} was changed since this sync; it is left as it is.",
                )
                continue
            holder = self._holder(name, before.get(name))
            if holder is not None and holder.key != person.key:
                self._conflict(
                    change,
                    name,
                    after[name],
                    current,
                    f"Another person ({holder.email}) has this person's former "
                    f"{_label(name).lower()} now; it is left as it is.",
                )
                continue
            now_values[name], restored[name] = current, before.get(name)
        if "extra" in after:
            old_extra = before.get("extra") or {}
            now_extra: dict[str, Any] = {}
            back_extra: dict[str, Any] = {}
            for column, wrote in after["extra"].items():
                current = person.extra.get(column)
                if _blank(current) == _blank(old_extra.get(column)):
                    continue
                if _blank(current) != _blank(wrote):
                    self._conflict(
                        change,
                        f"extra.{column}",
                        wrote,
                        current,
                        f"{column} was changed since this sync; it is left as it is.",
                    )
                    continue
                now_extra[column], back_extra[column] = current, old_extra.get(column)
            if back_extra:
                now_values["extra"], restored["extra"] = now_extra, back_extra
        if not restored:
            return
        if "email" in restored:
            self.final_email[person.key] = restored["email"]
        self._emit(
            Change(
                ChangeKind.EMPLOYEE_UPDATED, self._email(person), person.key, now_values, restored
            )
        )

    def _holder(self, name: str, value: Any) -> PersonRecord | None:
        """Who holds ``value`` of a unique field (email, employee id) today."""
        if not value:
            return None
        if name == "email":
            return self.snapshot.by_email.get(normalize_email(value))
        if name == "external_id":
            return self.snapshot.by_external_id.get(value)
        return None

    def _moved(self, change: Change) -> None:
        person = self._person(change)
        if person is None:
            return
        old_team = (change.before or {}).get("team")
        new_team = (change.after or {}).get("team")
        if _same_team(person.team, old_team):
            return
        if not _same_team(person.team, new_team):
            self._conflict(
                change,
                "team",
                new_team,
                person.team,
                "This person was moved to another team since this sync; they stay there.",
            )
            return
        if old_team is not None and normalize_team(old_team) not in self.snapshot.team_by_name:
            self._conflict(
                change,
                "team",
                new_team,
                person.team,
                f"The former team {old_team!r} no longer exists; the person stays where they are.",
            )
            return
        if old_team is not None:
            old_team = self.snapshot.team_by_name[normalize_team(old_team)].name
        self._emit(
            Change(
                ChangeKind.EMPLOYEE_MOVED,
                self._email(person),
                person.key,
                {"team": person.team},
                {"team": old_team},
            )
        )

    def _deactivated(self, change: Change) -> None:
        person = self._person(change)
        if person is None or person.active:
            return
        self._emit(
            Change(
                ChangeKind.EMPLOYEE_REACTIVATED,
                self._email(person),
                person.key,
                _INACTIVE,
                _ACTIVE,
            )
        )

    def _deactivate(
        self, kind: ChangeKind, person: PersonRecord, subject: str, *, emit: bool = True
    ) -> Change | None:
        """Undo a creation or reactivation: deactivate. A person the sync created who has
        dashboard access it did not give (so given since) is left active, as a conflict.
        Returns the deactivation (emitted unless ``emit`` is false), if any."""
        if not person.active or person.key in self.deactivating:
            return None
        created = kind is not ChangeKind.EMPLOYEE_REACTIVATED
        if created and person.key in self.access_by_key and person.key not in self.revoking:
            self._conflict_at(
                kind,
                subject,
                "active",
                True,
                True,
                "This person has dashboard access that this sync did not give; they stay "
                "active (deactivate them by hand if that is intended).",
            )
            return None
        change = Change(
            ChangeKind.EMPLOYEE_DEACTIVATED, self._email(person), person.key, _ACTIVE, _INACTIVE
        )
        self.deactivating.add(person.key)
        if emit:
            self._emit(change)
        return change

    # -- dashboard access -------------------------------------------------------------------

    def _access_person(self, change: Change) -> PersonRecord | None:
        if change.key is not None:
            return self.by_key.get(change.key)
        return self.snapshot.by_email.get(normalize_email(change.subject))

    def _access_granted(self, change: Change, created_emails: set[str]) -> PersonRecord | None:
        """Revoke what the grant gave; return the account to deactivate when the grant made it."""
        person = self._access_person(change)
        wrote = _access_values(change.after)
        if person is None:
            self._conflict(
                change, "access", wrote, None, "This person is no longer in the directory."
            )
            return None
        # a grant to an email nobody had (and no row of the run created) made a new account
        made_account = change.key is None and normalize_email(change.subject) not in created_emails
        current = self.access_by_key.get(person.key)
        if current is None:
            return person if made_account else None
        now = _access_of(current)
        if now != wrote:
            self._conflict(
                change,
                "access",
                wrote,
                now,
                "This person's dashboard access was changed since this sync; it is left as it is.",
            )
            return None
        self.revoking.add(person.key)
        self._emit(
            Change(ChangeKind.ACCESS_REVOKED, self._email(person), person.key, before=now)
        )
        return person if made_account else None

    def _access_changed(self, change: Change) -> None:
        person = self._access_person(change)
        wrote, old = _access_values(change.after), _access_values(change.before)
        if person is None:
            self._conflict(
                change, "access", wrote, None, "This person is no longer in the directory."
            )
            return
        current = self.access_by_key.get(person.key)
        now = _access_of(current) if current is not None else None
        if now == old:
            return
        if now != wrote:
            self._conflict(
                change,
                "access",
                wrote,
                now,
                "This person's dashboard access was changed since this sync; it is left as it is.",
            )
            return
        if not self._teams_exist(change, old, now):
            return
        self._emit(
            Change(ChangeKind.ACCESS_CHANGED, self._email(person), person.key, now, old)
        )

    def _access_revoked(self, change: Change) -> None:
        person = self._access_person(change)
        old = _access_values(change.before)
        if person is None:
            self._conflict(
                change, "access", None, None, "This person is no longer in the directory."
            )
            return
        current = self.access_by_key.get(person.key)
        if current is not None:
            now = _access_of(current)
            if now != old:
                self._conflict(
                    change,
                    "access",
                    None,
                    now,
                    "This person was given dashboard access since this sync; it is left as it is.",
                )
            return
        if not self._teams_exist(change, old, None):
            return
        name = f"{person.first_name} {person.last_name}".strip()
        self._emit(
            Change(
                ChangeKind.ACCESS_GRANTED,
                self._email(person),
                person.key,
                after={**old, "name": name},
            )
        )

    def _teams_exist(self, change: Change, access: dict[str, Any], now: Any) -> bool:
        missing = [
            team
            for team in access["teams"]
            if team != ALL_TEAMS and normalize_team(team) not in self.snapshot.team_by_name
        ]
        if missing:
            self._conflict(
                change,
                "access",
                None,
                now,
                f"The former dashboard scope names teams that no longer exist "
                f"({', '.join(missing)}); the access is left as it is.",
            )
        return not missing

    # -- conflicts --------------------------------------------------------------------------

    def _conflict(self, change: Change, name: str, wrote: Any, now: Any, message: str) -> None:
        self._conflict_at(change.kind, change.subject, name, wrote, now, message)

    def _conflict_at(
        self, kind: ChangeKind, subject: str, name: str, wrote: Any, now: Any, message: str
    ) -> None:
        self.conflicts.append(
            Conflict(kind, subject, name, _jsonable(wrote), _jsonable(now), message)
        )


def _original_kind(inverse: Change, reactivated: set[str | None]) -> ChangeKind:
    """The kind of the original change an inverse change undoes."""
    if inverse.kind is ChangeKind.EMPLOYEE_DEACTIVATED:
        if inverse.key in reactivated:
            return ChangeKind.EMPLOYEE_REACTIVATED
        return ChangeKind.EMPLOYEE_CREATED
    if inverse.kind is ChangeKind.ACCESS_REVOKED:
        return ChangeKind.ACCESS_GRANTED
    return inverse.kind


def _access_values(values: Mapping[str, Any] | None) -> dict[str, Any]:
    values = values or {}
    role = Role(values["role"]).value if values.get("role") else None
    teams = sorted(values.get("teams") or [])
    if role == Role.ADMIN.value:
        teams = [ALL_TEAMS]
    return {"role": role, "teams": teams}


def _access_of(access: AccessRecord) -> dict[str, Any]:
    return _access_values({"role": access.role, "teams": list(access.teams)})


def _same(name: str, current: Any, value: Any) -> bool:
    if name == "email":
        return normalize_email(current or "") == normalize_email(value or "")
    return bool(_blank(current) == _blank(value))


def _same_team(current: str | None, value: str | None) -> bool:
    if current is None or value is None:
        return current is None and value is None
    return normalize_team(current) == normalize_team(value)


def _blank(value: Any) -> Any:
    """``None`` and ``""`` are the same absent value (adapters store either)."""
    return None if value == "" else value


def _label(name: str) -> str:
    return {"external_id": "Employee ID", "first_name": "First name", "last_name": "Last name"}.get(
        name, name.replace("_", " ").capitalize()
    )


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, Mapping):
        return dict(value)
    return value
