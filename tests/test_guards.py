"""The guards as pure functions of a change set, a snapshot, settings and the uploader; the
structural count; the truncation check of the reader."""

from __future__ import annotations

import pytest

from flask_csvdirectory.changes import Change, ChangeKind, ChangeSet
from flask_csvdirectory.formats import parse_employees
from flask_csvdirectory.guards import (
    GuardContext,
    GuardReason,
    GuardSettings,
    Verdict,
    active_admins,
    evaluate,
    mass_removal,
    removes_last_active_admin,
)
from flask_csvdirectory.records import AccessRecord, DirectorySnapshot, PersonRecord, Role

pytestmark = pytest.mark.safeguards


def snapshot(people: int = 20, *, admins: tuple[str, ...] = ("1",)) -> DirectorySnapshot:
    records = [
        PersonRecord(key=str(n), email=f"p{n}@x.com", first_name="F", last_name="L", team="T")
        for n in range(1, people + 1)
    ]
    access = [
        AccessRecord(email=f"p{key}@x.com", role=Role.ADMIN, person_key=key) for key in admins
    ]
    return DirectorySnapshot.build(records, [], access)


def deactivate(*keys: str) -> list[Change]:
    return [
        Change(ChangeKind.EMPLOYEE_DEACTIVATED, f"p{key}@x.com", key, {"active": True},
               {"active": False})
        for key in keys
    ]


def revoke(*keys: str) -> list[Change]:
    return [
        Change(ChangeKind.ACCESS_REVOKED, f"p{key}@x.com", key,
               {"role": "Admin", "teams": ["*"]})
        for key in keys
    ]


def context(changes: list[Change], snap: DirectorySnapshot | None = None, **kwargs: object
            ) -> GuardContext:
    return GuardContext(ChangeSet.of(changes), snap or snapshot(), **kwargs)  # type: ignore[arg-type]


def test_nothing_holds_a_small_harmless_plan() -> None:
    assert evaluate(context(deactivate("5"))) == []


@pytest.mark.parametrize(
    ("people", "removed", "settings", "held"),
    [
        (100, 10, GuardSettings(), False),  # exactly 10 %: not more
        (100, 11, GuardSettings(), True),
        (1000, 25, GuardSettings(), False),  # 2.5 %, 25 people: at both limits
        (1000, 26, GuardSettings(), True),  # more than 25 people
        (1000, 26, GuardSettings(removal_people=None), False),
        (100, 11, GuardSettings(removal_percent=None), False),
        (100, 50, GuardSettings(None, None), False),  # both off
        (5, 1, GuardSettings(), False),  # 20 %, but one person is not a removal at scale
        (5, 2, GuardSettings(), True),
    ],
)
def test_mass_removal_limits(
    people: int, removed: int, settings: GuardSettings, held: bool
) -> None:
    keys = [str(n) for n in range(people - removed + 1, people + 1)]
    reason = mass_removal(context(deactivate(*keys), snapshot(people), settings=settings))
    assert (reason is not None) is held
    if reason is not None:
        assert reason.verdict is Verdict.HOLD and reason.people_count == removed
        assert f"{removed} of {people} active people" in reason.message


def test_mass_removal_counts_a_person_deactivated_and_revoked_once() -> None:
    changes = deactivate(*map(str, range(2, 13))) + revoke("2")
    reason = mass_removal(context(changes, snapshot(100, admins=("1", "2")),
                                  employees_rows=89))
    assert reason is not None and reason.people_count == 11
    assert reason.message.startswith("Employees.csv lists 89 people; the directory has 100 active.")
    assert "deactivate 11 and revoke the dashboard access of 1" in reason.message
    assert reason.people[:3] == ("p10@x.com", "p11@x.com", "p12@x.com")  # sorted emails


def test_only_the_uploaders_own_admin_loss_is_refused() -> None:
    snap = snapshot(10, admins=("1", "2"))
    changes = deactivate("1") + revoke("1")
    by_one = evaluate(context(changes, snap, uploader_key="1"))
    assert [(r.guard, r.verdict) for r in by_one] == [
        ("uploader_loses_admin", Verdict.REFUSE),
        ("admin_loses_access", Verdict.HOLD),
    ]
    assert "another admin must upload them" in by_one[0].message
    by_two = evaluate(context(changes, snap, uploader_key="2"))
    assert [r.guard for r in by_two] == ["admin_loses_access"]
    by_token = evaluate(context(changes, snap, uploader_key=None))
    assert [r.guard for r in by_token] == ["admin_loses_access"]


def test_a_demotion_is_an_admin_loss_and_continuity_needs_one_admin_left() -> None:
    snap = snapshot(10, admins=("1",))
    demote = Change(ChangeKind.ACCESS_CHANGED, "p1@x.com", "1", {"role": "Admin", "teams": ["*"]},
                    {"role": "Manager", "teams": ["T"]})
    grant = Change(ChangeKind.ACCESS_GRANTED, "p2@x.com", "2", None,
                   {"role": "Admin", "teams": ["*"], "name": ""})
    reasons = evaluate(context([demote, grant], snap))
    assert [r.guard for r in reasons] == ["admin_continuity", "admin_loses_access"]
    assert "The new admins would be: p2@x.com." in reasons[0].message
    assert "p1@x.com (demoted to Manager)" in reasons[1].message


def test_an_admin_whose_email_changes_keeps_access() -> None:
    snap = snapshot(3, admins=("1",))
    rename = Change(ChangeKind.EMPLOYEE_UPDATED, "new@x.com", "1", {"email": "p1@x.com"},
                    {"email": "new@x.com"})
    assert evaluate(context([rename], snap)) == []


def test_inactive_admins_do_not_count() -> None:
    people = [PersonRecord("1", "a@x.com", active=False), PersonRecord("2", "b@x.com")]
    access = [AccessRecord("a@x.com", Role.ADMIN, person_key="1"),
              AccessRecord("b@x.com", Role.ADMIN, person_key="2"),
              AccessRecord("c@x.com", Role.MANAGER, ("T",), person_key=None)]
    snap = DirectorySnapshot.build(people, [], access)
    assert [a.email for a in active_admins(snap)] == ["b@x.com"]


def test_removes_last_active_admin_for_single_writes() -> None:
    snap = snapshot(5, admins=("1", "2"))
    assert not removes_last_active_admin(snap, deactivate={"1"})
    assert removes_last_active_admin(snap, deactivate={"1"}, demote={"2"})
    assert removes_last_active_admin(snap, delete={"1", "2"})
    assert not removes_last_active_admin(snap, delete={"3"})
    assert not removes_last_active_admin(snapshot(5, admins=()), delete={"1"})  # none today


def test_reasons_round_trip_through_storage() -> None:
    reason = GuardReason("mass_removal", Verdict.HOLD, "m", ("a@x.com",), 3)
    assert GuardReason.from_dict(reason.to_dict()) == reason


def test_structural_count_leaves_out_attribute_edits_only() -> None:
    title = Change(ChangeKind.EMPLOYEE_UPDATED, "a@x.com", "1", {"title": "A"}, {"title": "B"})
    email = Change(ChangeKind.EMPLOYEE_UPDATED, "b@x.com", "2", {"email": "o@x.com"},
                   {"email": "b@x.com"})
    changes = ChangeSet.of([title, email, *deactivate("3"), *revoke("4")])
    assert changes.count == 4 and changes.structural_count == 3
    assert not title.structural and email.structural
    assert [kind for kind in ChangeKind if not kind.structural] == [ChangeKind.EMPLOYEE_UPDATED]


HEADER = b"email,first_name,last_name,team,title"


@pytest.mark.parametrize(
    ("data", "truncated"),
    [
        (HEADER + b"\r\na@x.com,A,B,T,X\r\nb@x.com,A,B", True),
        (HEADER + b"\na@x.com,A,B,T,X\nb@x.com,A,B", True),
        (HEADER + b"\ra@x.com,A,B,T,X\rb@x.com,A,B", True),
        (HEADER + b'\r\na@x.com,A,B,T,"X', True),
        (HEADER + b"\r\na@x.com,A,B,T,X\r\nb@x.com,A,B\r\n", False),  # ends with a line break
        (HEADER + b"\r\na@x.com,A\r\nb@x.com,A,B,T,X", False),  # short, but not the last one
        (HEADER + b"\r\na@x.com,A,B,T,Analyst", False),  # a whole last record
        ("\ufeff".encode("utf-16-le") + (HEADER + b"\r\nb@x.com,A,B").decode().encode(
            "utf-16-le"), True),
        ("\ufeff".encode("utf-16-be") + (HEADER + b"\r\nb@x.com,A,B\r\n").decode().encode(
            "utf-16-be"), False),
    ],
)
def test_a_cut_last_record_is_reported_as_truncated(data: bytes, truncated: bool) -> None:
    parsed = parse_employees(data)
    messages = [error.message for error in parsed.errors]
    assert any("looks truncated" in m for m in messages) is truncated, messages
