"""Reverting at scale (issue 14): the applied record is read kind by kind from its stored pages,
and the inverse plan is the same as the one planned from the change set held whole."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from flask import Flask

from example_app.models import db
from flask_csvdirectory import changestore, review
from flask_csvdirectory.changes import ChangeKind, ChangeSet
from flask_csvdirectory.extension import get_state
from flask_csvdirectory.models import RunStatus, SyncRun, utcnow
from flask_csvdirectory.planner import plan
from flask_csvdirectory.records import AccessRecord, DirectorySnapshot, PersonRecord, Role
from flask_csvdirectory.revert import RevertPlan, plan_revert
from flask_csvdirectory.rows import EmployeeRow, UserRow
from flask_csvdirectory.testing import InMemoryAdapter

pytestmark = pytest.mark.lifecycle

ORG = "default"


@pytest.fixture
def small_pages(monkeypatch: pytest.MonkeyPatch) -> int:
    """Pages of 3 changes: every kind starts and ends inside a page, most span several."""
    monkeypatch.setattr(changestore, "PAGE_SIZE", 3)
    return 3


def sync() -> tuple[ChangeSet, InMemoryAdapter]:
    """A sync of every person kind and access kind, applied to an in-memory directory."""
    adapter = InMemoryAdapter()
    adapter.seed(
        ORG,
        teams=["Sales", "Ops"],
        people=[
            PersonRecord("1", "boss@example.com", "Bo", "Ss", team="Ops"),
            *(
                PersonRecord(str(n), f"p{n}@example.com", f"F{n}", f"L{n}", "Clerk",
                             "Sales" if n % 2 else "Ops", active=n != 9, external_id=f"E{n}")
                for n in range(2, 12)
            ),
        ],
        access=[
            AccessRecord("boss@example.com", Role.ADMIN, ("*",), person_key="1"),
            AccessRecord("p2@example.com", Role.MANAGER, ("Ops",), person_key="2"),
            AccessRecord("p3@example.com", Role.MANAGER, ("Sales",), person_key="3"),
        ],
    )
    users = [
        UserRow(2, "boss@example.com", Role.ADMIN, ("*",)),
        UserRow(3, "p2@example.com", Role.MANAGER, ("Sales",)),  # changed
        UserRow(4, "new1@example.com", Role.MANAGER, ("Ops",)),  # granted, created below
        UserRow(5, "p4@example.com", Role.MANAGER, ("Ops",)),  # granted
        UserRow(6, "outsider@example.com", Role.MANAGER, ("Ops",)),  # an account made
    ]  # p3's access is revoked
    employees = [
        EmployeeRow(2, "boss@example.com", "Ops", "Bo", "Ss"),
        EmployeeRow(3, "p2@example.com", "Ops", "F2", "L2", "Lead", "E2"),  # updated
        EmployeeRow(4, "p3@example.com", "Ops", "F3", "L3", "Clerk", "E3"),  # moved
        EmployeeRow(5, "p4@example.com", "Ops", "F4", "L4", "Clerk", "E4"),
        EmployeeRow(6, "p5-renamed@example.com", "Sales", "F5", "L5", "Clerk", "E5"),  # email
        EmployeeRow(7, "p6@example.com", "Ops", "F6", "L6", "Clerk", "E6"),
        EmployeeRow(8, "p7@example.com", "Sales", "Seven", "L7", "Clerk", "E7"),  # updated
        EmployeeRow(9, "p9@example.com", "Sales", "F9", "L9", "Clerk", "E9"),  # reactivated
        EmployeeRow(10, "p10@example.com", "Ops", "F10", "L10", "Clerk", "E10"),
        *(EmployeeRow(11 + n, f"new{n}@example.com", "Ops", "N", str(n)) for n in range(6)),
    ]  # p8 and p11 leave: deactivated
    changeset = plan(users, employees, adapter.snapshot(ORG))
    adapter.apply(ORG, changeset)
    return changeset, adapter


def since(snapshot: DirectorySnapshot) -> DirectorySnapshot:
    """The directory edited by hand after the sync, so that the revert meets conflicts."""
    people = []
    for person in snapshot.people:
        if person.email == "p7@example.com":
            person = dataclasses.replace(person, first_name="Edited")
        elif person.email == "new3@example.com":
            person = dataclasses.replace(person, email="new3-renamed@example.com")
        elif person.email == "p8@example.com":
            continue  # deleted by the host
        people.append(person)
    access = [*snapshot.access, AccessRecord("new4@example.com", Role.MANAGER, ("Ops",))]
    return DirectorySnapshot.build(people, snapshot.teams, access)


def stored_record(changeset: ChangeSet) -> changestore.StoredChanges:
    """``changeset`` recorded as runs record it (index and pages), opened again."""
    session = db.session
    run = SyncRun(org=ORG, channel="api", status=RunStatus.AUTO_APPROVED.value,
                  started_at=utcnow())
    session.add(run)
    session.flush()
    changestore.record(get_state().store, session, run, changeset, review.People())
    session.commit()
    session.expire_all()
    stored = changestore.open_changes(get_state().store, session, session.get(SyncRun, run.id))
    assert isinstance(stored, changestore.PagedChanges)
    return stored


def rows(result: RevertPlan) -> tuple[list[Any], list[dict[str, Any]]]:
    return [c.to_row() for c in result.changeset], [c.to_dict() for c in result.conflicts]


def test_the_record_is_read_kind_by_kind_from_only_the_pages_that_hold_it(
    app: Flask, small_pages: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    changeset, _ = sync()
    stored = stored_record(changeset)
    read: list[str] = []
    get_many = get_state().store.get_many

    def counting(session: Any, run_id: str, roles: Any) -> dict[str, bytes]:
        read.extend(roles)
        return get_many(session, run_id, roles)

    monkeypatch.setattr(get_state().store, "get_many", counting)
    for kind in ChangeKind:
        expected = changeset.of_kind(kind)
        read.clear()
        assert [c.to_row() for c in stored.iter_kind(kind)] == [c.to_row() for c in expected]
        positions = [i for i, c in enumerate(changeset.changes) if c.kind is kind]
        pages = sorted({i // small_pages for i in positions})
        assert [int(role.rsplit(".", 1)[1]) for role in read] == pages, kind


def test_a_revert_from_the_stored_pages_equals_the_revert_of_the_whole_set(
    app: Flask, small_pages: int
) -> None:
    changeset, adapter = sync()
    assert {c.kind for c in changeset} == set(ChangeKind) - {ChangeKind.TEAM_CREATED}
    stored = stored_record(changeset)
    for snapshot in (adapter.snapshot(ORG), since(adapter.snapshot(ORG))):
        whole = plan_revert(changeset, snapshot)
        streamed = plan_revert(stored, snapshot)
        assert rows(streamed) == rows(whole)
    # the edited directory: conflicts of a person field, a person gone, a created person
    # with another email and one given access since (decided after the access changes)
    assert [(c.kind.value, c.subject, c.field) for c in whole.conflicts] == [
        ("employee_updated", "p7@example.com", "first_name"),
        ("employee_deactivated", "p8@example.com", "person"),
        ("employee_created", "new3@example.com", "email"),
        ("employee_created", "new4@example.com", "active"),
    ]


def test_deactivations_keep_the_plan_order_when_some_wait_for_the_access_changes(
    app: Flask,
) -> None:
    """A person the run created who has access today is decided after the access changes (is
    that access revoked by this revert?); the deactivations stay in the order of the record,
    and the one whose access was given since is a conflict, listed after the access ones."""
    changeset, adapter = sync()
    result = plan_revert(changeset, since(adapter.snapshot(ORG)))
    deactivated = [c.subject for c in result.changeset.of_kind(ChangeKind.EMPLOYEE_DEACTIVATED)]
    created = [
        c.subject for c in changeset.of_kind(ChangeKind.EMPLOYEE_CREATED)
        if c.subject not in ("new3@example.com", "new4@example.com")
    ]
    reactivated = [c.subject for c in changeset.of_kind(ChangeKind.EMPLOYEE_REACTIVATED)]
    made = [
        c.subject for c in changeset.of_kind(ChangeKind.ACCESS_GRANTED) if c.key is None
        and c.subject not in created
    ]
    assert deactivated == created + reactivated + made
    assert "new1@example.com" in deactivated  # their access is revoked by this revert
    assert result.conflicts[-1].subject == "new4@example.com"
    assert result.conflicts[-1].field == "active"
    assert all(c.before == {"active": True} and c.after == {"active": False}
               for c in result.changeset.of_kind(ChangeKind.EMPLOYEE_DEACTIVATED))
