"""Guards: what makes a planned run wait for a person, or refuses it, whatever the threshold.

A guard is a small pure function of a :class:`GuardContext` (the change set, the directory
snapshot it was planned against, the organization's :class:`GuardSettings`, who uploaded it)
returning a :class:`GuardReason` or ``None``. :data:`GUARDS` lists them; :func:`evaluate` runs
them all. The run stores the reasons; the run page and the API show them. Adding a guard touches
this module only.

The default guards:

- :func:`uploader_loses_admin` *refuses* a run that would take Admin access from the person who
  uploaded it (another admin must upload it);
- :func:`admin_continuity` holds a run after which no person who holds Admin access today would
  still hold it;
- :func:`admin_loses_access` holds a run that takes Admin access from anybody;
- :func:`mass_removal` holds a run whose deactivations and access revocations together reach
  more people than a share of the active directory (default 10 %; counted from
  :data:`SHARE_MINIMUM_PEOPLE` people) or a number of people (default 25).

:func:`removes_last_active_admin` answers the same continuity question for a single write
(SCIM: deactivating, demoting or deleting a person).
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .changes import Change, ChangeKind, ChangeSet
from .records import AccessRecord, DirectorySnapshot, PersonRecord, Role, normalize_email

__all__ = [
    "DEFAULT_REMOVAL_PEOPLE",
    "DEFAULT_REMOVAL_PERCENT",
    "GUARDS",
    "GuardContext",
    "GuardReason",
    "GuardSettings",
    "Verdict",
    "active_admins",
    "admin_continuity",
    "admin_loses_access",
    "evaluate",
    "mass_removal",
    "removes_last_active_admin",
    "uploader_loses_admin",
]

#: Default share of the active directory (percent) that deactivations plus access revocations
#: may reach before a run waits for approval.
DEFAULT_REMOVAL_PERCENT = 10.0
#: Default number of people that deactivations plus access revocations may reach.
DEFAULT_REMOVAL_PEOPLE = 25
#: The share test counts only from this many affected people: in a small directory one person
#: leaving is more than 10 %, but never a removal "at scale".
SHARE_MINIMUM_PEOPLE = 2
#: How many affected people a reason names (all are counted).
NAMED_PEOPLE = 100
#: How many of them its message names.
NAMED_IN_MESSAGE = 10


class Verdict(enum.StrEnum):
    """What a guard decides: the run waits for approval, or it is refused outright."""

    HOLD = "hold"
    REFUSE = "refuse"


@dataclass(frozen=True, slots=True)
class GuardSettings:
    """An organization's guard settings; ``None`` turns that limit off."""

    removal_percent: float | None = DEFAULT_REMOVAL_PERCENT
    removal_people: int | None = DEFAULT_REMOVAL_PEOPLE


@dataclass(frozen=True, slots=True)
class GuardContext:
    """What a guard looks at.

    ``uploader_key`` is the host's person key of whoever started the run (``None`` for an API
    token or the CLI); ``employees_rows`` the data rows of Employees.csv (``None`` when the run
    has no file, a revert say).
    """

    changeset: ChangeSet
    snapshot: DirectorySnapshot
    settings: GuardSettings = field(default_factory=GuardSettings)
    uploader_key: str | None = None
    employees_rows: int | None = None


@dataclass(frozen=True, slots=True)
class GuardReason:
    """Why a run waits (or is refused): the guard's code, a sentence naming who is affected, the
    affected people's emails (at most :data:`NAMED_PEOPLE`) and how many they are."""

    guard: str
    verdict: Verdict
    message: str
    people: tuple[str, ...] = ()
    people_count: int = 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (stored with the run, returned by the API)."""
        return {
            "guard": self.guard,
            "verdict": self.verdict.value,
            "message": self.message,
            "people": list(self.people),
            "people_count": self.people_count,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GuardReason:
        """Rebuild a reason stored with :meth:`to_dict`."""
        return cls(
            data["guard"],
            Verdict(data["verdict"]),
            data["message"],
            tuple(data.get("people", ())),
            int(data.get("people_count", 0)),
        )


Guard = Callable[[GuardContext], "GuardReason | None"]


# -- admin access -------------------------------------------------------------------------


def active_admins(snapshot: DirectorySnapshot) -> list[AccessRecord]:
    """Who holds Admin access today and can sign in (their person is active, or they are a
    dashboard-only account)."""
    by_key: dict[str, PersonRecord] | None = None
    admins = []
    for access in snapshot.access:
        if Role(access.role) is not Role.ADMIN:
            continue
        person = snapshot.by_email.get(normalize_email(access.email))
        if access.person_key is not None and (person is None or person.key != access.person_key):
            if by_key is None:  # rare: the access record's email is not its person's
                by_key = {p.key: p for p in snapshot.people}
            person = by_key.get(access.person_key)
        if person is None or person.active:
            admins.append(access)
    return admins


def _admin_key(admin: AccessRecord, snapshot: DirectorySnapshot) -> str | None:
    if admin.person_key is not None:
        return admin.person_key
    holder = snapshot.by_email.get(normalize_email(admin.email))
    return holder.key if holder is not None else None


def _admin_losses(changeset: ChangeSet, snapshot: DirectorySnapshot) -> dict[str, str]:
    """Today's active admins who lose Admin access: their email -> how ("access revoked",
    "demoted to Manager", "deactivated")."""
    admins = active_admins(snapshot)
    if not admins:
        return {}
    by_email = {normalize_email(admin.email): admin for admin in admins}
    by_key = {admin.person_key: admin for admin in admins if admin.person_key is not None}
    # the planner keys access changes by the email after the sync: follow email changes
    renamed = {
        normalize_email(change.after["email"]): change.key
        for change in changeset.of_kind(ChangeKind.EMPLOYEE_UPDATED)
        if change.after and "email" in change.after and change.key is not None
    }

    def admin_of(change: Change) -> AccessRecord | None:
        if change.key is not None and change.key in by_key:
            return by_key[change.key]
        subject = normalize_email(change.subject)
        key = renamed.get(subject)
        if key is not None and key in by_key:
            return by_key[key]
        return by_email.get(subject)

    losses: dict[str, str] = {}
    for change in changeset.of_kind(
        ChangeKind.ACCESS_REVOKED, ChangeKind.ACCESS_CHANGED, ChangeKind.EMPLOYEE_DEACTIVATED
    ):
        admin = admin_of(change)
        if admin is None:
            continue
        if change.kind is ChangeKind.ACCESS_CHANGED:
            role = (change.after or {}).get("role")
            if role == Role.ADMIN.value:
                continue
            how = f"demoted to {role}"
        elif change.kind is ChangeKind.ACCESS_REVOKED:
            how = "Admin access revoked"
        else:
            how = "deactivated"
        email = normalize_email(admin.email)
        losses[email] = f"{losses[email]} and {how}" if email in losses else how
    return losses


def removes_last_active_admin(
    snapshot: DirectorySnapshot,
    *,
    deactivate: Collection[str] = (),
    demote: Collection[str] = (),
    delete: Collection[str] = (),
) -> bool:
    """Whether deactivating, demoting (taking Admin away from) or deleting the people with these
    host keys would leave the organization with no active admin, when it has one today.

    The check a single write (a SCIM PATCH, PUT or DELETE) makes before it applies::

        if removes_last_active_admin(snapshot, deactivate={key}):
            refuse("this is the last active admin")
    """
    admins = active_admins(snapshot)
    if not admins:
        return False
    removed = set(deactivate) | set(demote) | set(delete)
    return all(_admin_key(admin, snapshot) in removed for admin in admins)


# -- the guards ---------------------------------------------------------------------------


def uploader_loses_admin(context: GuardContext) -> GuardReason | None:
    """Refuse a run that takes Admin access from the person who uploaded it."""
    if context.uploader_key is None:
        return None
    uploader = next(
        (
            admin
            for admin in active_admins(context.snapshot)
            if _admin_key(admin, context.snapshot) == context.uploader_key
        ),
        None,
    )
    if uploader is None:
        return None
    email = normalize_email(uploader.email)
    how = _admin_losses(context.changeset, context.snapshot).get(email)
    if how is None:
        return None
    return GuardReason(
        "uploader_loses_admin",
        Verdict.REFUSE,
        f"These files would remove your own Admin access ({email}: {how}), so this run was "
        "refused and nothing was applied. If that is intended, another admin must upload them.",
        (email,),
        1,
    )


def admin_continuity(context: GuardContext) -> GuardReason | None:
    """Hold a run after which nobody who holds Admin access today still holds it."""
    admins = active_admins(context.snapshot)
    if not admins:
        return None
    losses = _admin_losses(context.changeset, context.snapshot)
    if len(losses) < len({normalize_email(admin.email) for admin in admins}):
        return None
    grants = context.changeset.of_kind(ChangeKind.ACCESS_GRANTED, ChangeKind.ACCESS_CHANGED)
    granted = [
        change.subject
        for change in grants
        if (change.after or {}).get("role") == Role.ADMIN.value
    ]
    people = sorted(losses)
    new = f" The new admins would be: {_names(granted)}." if granted else ""
    return GuardReason(
        "admin_continuity",
        Verdict.HOLD,
        f"No current admin would keep Admin access: Users.csv removes all {len(people)} of "
        f"them ({_names(people)}).{new} At least one admin who has access today must keep it; "
        "approve only if this handover is intended.",
        tuple(people[:NAMED_PEOPLE]),
        len(people),
    )


def admin_loses_access(context: GuardContext) -> GuardReason | None:
    """Hold a run that takes Admin access from any admin."""
    losses = _admin_losses(context.changeset, context.snapshot)
    if not losses:
        return None
    people = sorted(losses)
    details = ", ".join(f"{email} ({losses[email]})" for email in people[:NAMED_IN_MESSAGE])
    more = f" and {len(people) - NAMED_IN_MESSAGE} more" if len(people) > NAMED_IN_MESSAGE else ""
    noun = "admin" if len(people) == 1 else "admins"
    return GuardReason(
        "admin_loses_access",
        Verdict.HOLD,
        f"{len(people)} {noun} would lose Admin access: {details}{more}.",
        tuple(people[:NAMED_PEOPLE]),
        len(people),
    )


def mass_removal(context: GuardContext) -> GuardReason | None:
    """Hold a run whose deactivations plus access revocations reach more people than the
    settings allow (a share of the active directory, or a number of people)."""
    settings = context.settings
    if settings.removal_percent is None and settings.removal_people is None:
        return None
    deactivated = {
        normalize_email(change.subject)
        for change in context.changeset.of_kind(ChangeKind.EMPLOYEE_DEACTIVATED)
    }
    revoked = {
        normalize_email(change.subject)
        for change in context.changeset.of_kind(ChangeKind.ACCESS_REVOKED)
    }
    affected = deactivated | revoked
    count = len(affected)
    if not count:
        return None
    active = sum(1 for person in context.snapshot.people if person.active)
    limits = []
    over = False
    if settings.removal_people is not None:
        limits.append(f"{settings.removal_people} people")
        over |= count > settings.removal_people
    if settings.removal_percent is not None:
        limits.append(f"{settings.removal_percent:g} % of the active directory")
        over |= (
            active > 0
            and count >= SHARE_MINIMUM_PEOPLE
            and count * 100 > settings.removal_percent * active
        )
    if not over:
        return None
    share = f" ({count * 100 / active:.0f} %)" if active else ""
    people = sorted(affected)
    parts = []
    if deactivated:
        parts.append(f"deactivate {len(deactivated)}")
    if revoked:
        parts.append(f"revoke the dashboard access of {len(revoked)}")
    lead = ""
    if context.employees_rows is not None and context.employees_rows < active:
        lead = (
            f"Employees.csv lists {context.employees_rows} people; the directory has "
            f"{active} active. "
        )
    return GuardReason(
        "mass_removal",
        Verdict.HOLD,
        f"{lead}This run would {' and '.join(parts)}: {count} of {active} active people"
        f"{share}, more than the limit of {' or '.join(limits)}. Affected: {_names(people)}. "
        "If the file is cut short or incomplete, reject the run and upload the whole export.",
        tuple(people[:NAMED_PEOPLE]),
        count,
    )


#: The guards every run goes through, in the order their reasons are shown.
GUARDS: tuple[Guard, ...] = (
    uploader_loses_admin,
    admin_continuity,
    admin_loses_access,
    mass_removal,
)


def evaluate(context: GuardContext, guards: Sequence[Guard] = GUARDS) -> list[GuardReason]:
    """Every reason the ``guards`` give for ``context`` (empty: nothing holds the run)."""
    return [reason for guard in guards if (reason := guard(context)) is not None]


def _names(emails: Iterable[str]) -> str:
    listed = list(emails)
    shown = ", ".join(listed[:NAMED_IN_MESSAGE])
    if len(listed) > NAMED_IN_MESSAGE:
        shown += f" and {len(listed) - NAMED_IN_MESSAGE} more"
    return shown
