"""The planner: cross-file checks and the change set, rule by rule, plus a property test."""

from __future__ import annotations

import gc
from collections.abc import Sequence
from dataclasses import replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flask_csvdirectory.changes import Change, ChangeKind, ChangeSet
from flask_csvdirectory.planner import check_pair, plan
from flask_csvdirectory.records import (
    ALL_TEAMS,
    AccessRecord,
    DirectorySnapshot,
    PersonRecord,
    Role,
    TeamRecord,
    normalize_email,
    normalize_team,
)
from flask_csvdirectory.rows import EMPLOYEES_FILE, USERS_FILE, EmployeeRow, RowError, UserRow
from flask_csvdirectory.testing import InMemoryAdapter

K = ChangeKind
ADMIN = UserRow(2, "admin@x.test", Role.ADMIN, (ALL_TEAMS,), "Ada Admin")


def snap(
    people: Sequence[PersonRecord] = (),
    teams: Sequence[str] = (),
    access: Sequence[AccessRecord] = (),
) -> DirectorySnapshot:
    return DirectorySnapshot.build(
        people, [TeamRecord(f"t{i}", name) for i, name in enumerate(teams)], access
    )


def emp(line: int, email: str, team: str = "Sales", **kw) -> EmployeeRow:
    return EmployeeRow(line, email, team, **kw)


def person(key: str, email: str, team: str | None = "Sales", **kw) -> PersonRecord:
    return PersonRecord(key, email, team=team, **kw)


def changes(users, employees, snapshot) -> list[Change]:
    assert check_pair(users, employees, snapshot) == []
    return plan(users, employees, snapshot).changes


def admin_access(key: str | None = None) -> AccessRecord:
    return AccessRecord("admin@x.test", Role.ADMIN, (ALL_TEAMS,), "Ada Admin", key)


# -- check_pair ---------------------------------------------------------------------------------


def test_users_without_an_admin_is_an_error_on_line_1_role():
    users = [UserRow(2, "m@x.test", Role.MANAGER, ("Sales",))]
    errors = check_pair(users, [emp(2, "a@x.test")], snap())
    assert [(e.file, e.line, e.column, e.value) for e in errors] == [(USERS_FILE, 1, "role", None)]
    assert "Admin" in errors[0].message


def test_empty_users_is_an_error_too():
    assert [(e.line, e.column) for e in check_pair([], [], snap())] == [(1, "role")]


def test_consistent_files_have_no_error():
    users = [ADMIN, UserRow(3, "m@x.test", Role.MANAGER, ("sales", "Support"))]
    employees = [emp(2, "a@x.test", "SUPPORT"), emp(3, "b@x.test", "  Marketing ")]
    assert check_pair(users, employees, snap(teams=["Sales"])) == []


def test_manager_scope_team_unknown_to_directory_and_employees():
    users = [
        ADMIN,
        UserRow(3, "m@x.test", Role.MANAGER, ("Legal", "sales", "Support")),
        UserRow(4, "n@x.test", Role.MANAGER, (ALL_TEAMS,)),
    ]
    employees = [emp(2, "a@x.test", "support  ")]
    errors = check_pair(users, employees, snap(teams=["Sales"]))
    assert [(e.file, e.line, e.column, e.value) for e in errors] == [
        (USERS_FILE, 3, "teams", "Legal")
    ]


def test_two_rows_resolving_to_the_same_person():
    snapshot = snap([person("1", "a@x.test", external_id="E1")], ["Sales"])
    employees = [emp(2, "new@x.test", employee_id="E1"), emp(3, "a@x.test")]
    errors = check_pair([ADMIN], employees, snapshot)
    assert [(e.file, e.line, e.column, e.value) for e in errors] == [
        (EMPLOYEES_FILE, 3, "email", "a@x.test")
    ]
    assert "line 2" in errors[0].message


def test_two_rows_resolving_to_the_same_person_by_employee_id_second():
    snapshot = snap([person("1", "a@x.test", external_id="E1")], ["Sales"])
    employees = [emp(2, "a@x.test"), emp(3, "other@x.test", employee_id="E1")]
    errors = check_pair([ADMIN], employees, snapshot)
    assert [(e.line, e.column, e.value) for e in errors] == [(3, "employee_id", "E1")]


def test_duplicate_email_or_employee_id_among_new_rows():
    employees = [
        emp(2, "a@x.test", employee_id="N1"),
        emp(3, "a@x.test"),
        emp(4, "b@x.test", employee_id="N1"),
    ]
    errors = check_pair([ADMIN], employees, snap())
    assert [(e.line, e.column, e.value) for e in errors] == [
        (3, "email", "a@x.test"),
        (4, "employee_id", "N1"),
    ]


def test_email_of_another_person_who_keeps_it():
    snapshot = snap([person("1", "a@x.test", external_id="E1"), person("2", "B@x.test")], ["Sales"])
    employees = [emp(2, "b@x.test", employee_id="E1")]
    errors = check_pair([ADMIN], employees, snapshot)
    assert [(e.file, e.line, e.column, e.value) for e in errors] == [
        (EMPLOYEES_FILE, 2, "email", "b@x.test")
    ]
    assert "keeps it" in errors[0].message


def test_email_swap_is_reported_on_both_rows():
    snapshot = snap(
        [person("1", "a@x.test", external_id="E1"), person("2", "b@x.test", external_id="E2")],
        ["Sales"],
    )
    employees = [emp(2, "b@x.test", employee_id="E1"), emp(3, "a@x.test", employee_id="E2")]
    errors = check_pair([ADMIN], employees, snapshot)
    assert [(e.line, e.column, e.value) for e in errors] == [
        (2, "email", "b@x.test"),
        (3, "email", "a@x.test"),
    ]
    assert "line 3" in errors[0].message and "line 2" in errors[1].message


def test_email_chain_is_reported():
    snapshot = snap(
        [person("1", "a@x.test", external_id="E1"), person("2", "b@x.test", external_id="E2")],
        ["Sales"],
    )
    employees = [emp(2, "b@x.test", employee_id="E1"), emp(3, "c@x.test", employee_id="E2")]
    errors = check_pair([ADMIN], employees, snapshot)
    assert [(e.line, e.column, e.value) for e in errors] == [(2, "email", "b@x.test")]


def test_matched_by_email_with_an_unknown_employee_id_is_fine():
    snapshot = snap([person("1", "a@x.test", external_id="OLD")], ["Sales"])
    assert check_pair([ADMIN], [emp(2, "a@x.test", employee_id="NEW")], snapshot) == []


def test_errors_are_sorted_by_file_then_line():
    users = [UserRow(5, "m@x.test", Role.MANAGER, ("Nowhere",))]
    employees = [emp(2, "a@x.test"), emp(3, "a@x.test")]
    errors = check_pair(users, employees, snap())
    assert [(e.file, e.line) for e in errors] == [
        (EMPLOYEES_FILE, 3),
        (USERS_FILE, 1),
        (USERS_FILE, 5),
    ]
    assert all(isinstance(e, RowError) for e in errors)


# -- plan: teams and new people -----------------------------------------------------------------


def test_new_people_and_new_teams():
    employees = [
        emp(
            2,
            "a@x.test",
            "Field  Ops",
            first_name="A",
            last_name="One",
            title="Rep",
            employee_id="E1",
            extra={"cost_center": "42"},
        ),
        emp(3, "b@x.test", "field ops"),
        emp(4, "c@x.test", "sales"),
    ]
    assert changes([ADMIN], employees, snap(teams=["Sales"])) == [
        Change(K.TEAM_CREATED, "Field  Ops", after={"name": "Field  Ops"}),
        Change(K.EMPLOYEE_CREATED, "a@x.test", after={
            "email": "a@x.test", "first_name": "A", "last_name": "One", "title": "Rep",
            "team": "Field  Ops", "external_id": "E1", "extra": {"cost_center": "42"}}),
        Change(K.EMPLOYEE_CREATED, "b@x.test", after={
            "email": "b@x.test", "first_name": "", "last_name": "", "title": "",
            "team": "Field  Ops", "external_id": None, "extra": {}}),
        Change(K.EMPLOYEE_CREATED, "c@x.test", after={
            "email": "c@x.test", "first_name": "", "last_name": "", "title": "",
            "team": "Sales", "external_id": None, "extra": {}}),
        Change(K.ACCESS_GRANTED, "admin@x.test", after={
            "role": "Admin", "teams": ["*"], "name": "Ada Admin"}),
    ]  # fmt: skip


def test_unchanged_person_gives_no_change():
    snapshot = snap(
        [person("1", "A@X.test", first_name="A", title="Rep", external_id="E1",
                extra={"cost_center": "1", "other": "kept"})],
        ["Sales"],
        [admin_access()],
    )  # fmt: skip
    row = emp(2, "a@x.test", "  SALES", first_name="A", title="Rep", employee_id="E1",
              extra={"cost_center": "1"})  # fmt: skip
    assert changes([ADMIN], [row], snapshot) == []


# -- plan: matched people -----------------------------------------------------------------------


def test_match_by_employee_id_updates_email_and_names():
    snapshot = snap([person("7", "old@x.test", first_name="A", last_name="B",
                            external_id="E1")], ["Sales"], [admin_access()])  # fmt: skip
    row = emp(2, "new@x.test", first_name="Al", last_name="B", employee_id="E1")
    assert changes([ADMIN], [row], snapshot) == [
        Change(K.EMPLOYEE_UPDATED, "new@x.test", "7",
               {"email": "old@x.test", "first_name": "A"},
               {"email": "new@x.test", "first_name": "Al"}),
    ]  # fmt: skip


def test_match_by_email_sets_a_differing_external_id():
    snapshot = snap([person("7", "a@x.test", external_id="OLD")], ["Sales"], [admin_access()])
    assert changes([ADMIN], [emp(2, "a@x.test", employee_id="NEW")], snapshot) == [
        Change(K.EMPLOYEE_UPDATED, "a@x.test", "7", {"external_id": "OLD"}, {"external_id": "NEW"})
    ]


def test_blank_employee_id_keeps_external_id():
    snapshot = snap([person("7", "a@x.test", external_id="OLD")], ["Sales"], [admin_access()])
    assert changes([ADMIN], [emp(2, "a@x.test", employee_id=None)], snapshot) == []
    assert changes([ADMIN], [emp(2, "a@x.test", title="T")], snapshot) == [
        Change(K.EMPLOYEE_UPDATED, "a@x.test", "7", {"title": ""}, {"title": "T"})
    ]


def test_title_none_keeps_title_and_blank_clears_it():
    snapshot = snap([person("7", "a@x.test", title="Boss")], ["Sales"], [admin_access()])
    assert changes([ADMIN], [emp(2, "a@x.test", title=None)], snapshot) == []
    assert changes([ADMIN], [emp(2, "a@x.test", title="")], snapshot) == [
        Change(K.EMPLOYEE_UPDATED, "a@x.test", "7", {"title": "Boss"}, {"title": ""})
    ]


def test_extra_compares_only_the_keys_in_the_row():
    snapshot = snap(
        [person("7", "a@x.test", extra={"cost_center": "1", "site": "Paris", "other": "x"})],
        ["Sales"],
        [admin_access()],
    )
    row = emp(2, "a@x.test", extra={"cost_center": "1", "site": "Lyon", "badge": "9"})
    assert changes([ADMIN], [row], snapshot) == [
        Change(K.EMPLOYEE_UPDATED, "a@x.test", "7",
               {"extra": {"site": "Paris", "badge": None}},
               {"extra": {"site": "Lyon", "badge": "9"}}),
    ]  # fmt: skip


def test_moved_uses_canonical_names():
    snapshot = snap([person("7", "a@x.test", team="Sales")], ["Sales", "Support"],
                    [admin_access()])  # fmt: skip
    assert changes([ADMIN], [emp(2, "a@x.test", "support")], snapshot) == [
        Change(K.EMPLOYEE_MOVED, "a@x.test", "7", {"team": "Sales"}, {"team": "Support"})
    ]


def test_moved_from_no_team_into_a_new_team():
    snapshot = snap([person("7", "a@x.test", team=None)], [], [admin_access()])
    assert changes([ADMIN], [emp(2, "a@x.test", "Legal")], snapshot) == [
        Change(K.TEAM_CREATED, "Legal", after={"name": "Legal"}),
        Change(K.EMPLOYEE_MOVED, "a@x.test", "7", {"team": None}, {"team": "Legal"}),
    ]


def test_reactivated_updated_and_moved_are_separate_changes():
    snapshot = snap([person("7", "a@x.test", team="Sales", active=False, last_name="Old")],
                    ["Sales", "Support"], [admin_access()])  # fmt: skip
    row = emp(2, "a@x.test", "Support", last_name="New")
    assert changes([ADMIN], [row], snapshot) == [
        Change(K.EMPLOYEE_REACTIVATED, "a@x.test", "7", {"active": False}, {"active": True}),
        Change(K.EMPLOYEE_UPDATED, "a@x.test", "7", {"last_name": "Old"}, {"last_name": "New"}),
        Change(K.EMPLOYEE_MOVED, "a@x.test", "7", {"team": "Sales"}, {"team": "Support"}),
    ]


def test_case_only_email_difference_is_not_a_change():
    snapshot = snap([person("7", "Mixed@X.Test")], ["Sales"], [admin_access()])
    assert changes([ADMIN], [emp(2, "mixed@x.test")], snapshot) == []


# -- plan: deactivation -------------------------------------------------------------------------


def test_unlisted_active_people_are_deactivated_unless_in_users():
    snapshot = snap(
        [
            person("1", "gone@x.test"),
            person("2", "Admin@x.test", team=None),
            person("3", "already@x.test", active=False),
            person("4", "kept@x.test"),
        ],
        ["Sales"],
        [admin_access("2")],
    )
    assert changes([ADMIN], [emp(2, "kept@x.test")], snapshot) == [
        Change(K.EMPLOYEE_DEACTIVATED, "gone@x.test", "1", {"active": True}, {"active": False})
    ]


# -- plan: access -------------------------------------------------------------------------------


def test_access_granted_changed_revoked():
    snapshot = snap(
        [person("1", "m@x.test"), person("2", "gone@x.test"), person("3", "admin@x.test")],
        ["Sales", "Support"],
        [
            AccessRecord("m@x.test", Role.MANAGER, ("Sales",), "", "1"),
            AccessRecord("GONE@x.test", Role.MANAGER, ("Support",), "", "2"),
            admin_access("3"),
        ],
    )
    users = [
        ADMIN,
        UserRow(3, "m@x.test", Role.MANAGER, ("SALES", "support")),
        UserRow(4, "new@x.test", Role.MANAGER, ("Legal", "sales"), "Nina"),
        UserRow(5, "e@x.test", Role.ADMIN, (ALL_TEAMS,), "Eve"),
    ]
    employees = [
        emp(2, "m@x.test"),
        emp(3, "gone@x.test"),
        emp(4, "admin@x.test"),
        emp(5, "e@x.test", "Legal"),
    ]
    result = changes(users, employees, snapshot)
    assert result[:2] == [
        Change(K.TEAM_CREATED, "Legal", after={"name": "Legal"}),
        Change(K.EMPLOYEE_CREATED, "e@x.test", after={
            "email": "e@x.test", "first_name": "", "last_name": "", "title": "",
            "team": "Legal", "external_id": None, "extra": {}}),
    ]  # fmt: skip
    assert result[2:] == [
        Change(K.ACCESS_GRANTED, "e@x.test", None,
               after={"role": "Admin", "teams": ["*"], "name": "Eve"}),
        Change(K.ACCESS_GRANTED, "new@x.test", None,
               after={"role": "Manager", "teams": ["Legal", "Sales"], "name": "Nina"}),
        Change(K.ACCESS_CHANGED, "m@x.test", "1",
               {"role": "Manager", "teams": ["Sales"]},
               {"role": "Manager", "teams": ["Sales", "Support"]}),
        Change(K.ACCESS_REVOKED, "gone@x.test", "2",
               before={"role": "Manager", "teams": ["Support"]}),
    ]  # fmt: skip


def test_access_role_change_and_grant_to_an_existing_person():
    snapshot = snap(
        [person("1", "m@x.test"), person("2", "p@x.test")],
        ["Sales"],
        [AccessRecord("m@x.test", Role.MANAGER, ("Sales",), "", "1"), admin_access()],
    )
    users = [
        ADMIN,
        UserRow(3, "m@x.test", Role.ADMIN, (ALL_TEAMS,)),
        UserRow(4, "p@x.test", Role.MANAGER, (ALL_TEAMS,), "Pat"),
    ]
    result = changes(users, [emp(2, "m@x.test"), emp(3, "p@x.test")], snapshot)
    assert result == [
        Change(K.ACCESS_GRANTED, "p@x.test", "2",
               after={"role": "Manager", "teams": ["*"], "name": "Pat"}),
        Change(K.ACCESS_CHANGED, "m@x.test", "1",
               {"role": "Manager", "teams": ["Sales"]}, {"role": "Admin", "teams": ["*"]}),
    ]  # fmt: skip


def test_access_follows_a_persons_new_email():
    snapshot = snap(
        [person("1", "old@x.test", external_id="E1"), person("2", "admin@x.test")],
        ["Sales"],
        [AccessRecord("old@x.test", Role.MANAGER, ("Sales",), "", "1"), admin_access("2")],
    )
    employees = [emp(2, "new@x.test", employee_id="E1"), emp(3, "admin@x.test")]
    users = [ADMIN, UserRow(3, "new@x.test", Role.MANAGER, ("Sales",))]
    assert changes(users, employees, snapshot) == [
        Change(K.EMPLOYEE_UPDATED, "new@x.test", "1", {"email": "old@x.test"},
               {"email": "new@x.test"}),
    ]  # fmt: skip


def test_grant_key_uses_the_email_after_the_sync():
    snapshot = snap([person("1", "old@x.test", external_id="E1")], ["Sales"])
    employees = [emp(2, "new@x.test", employee_id="E1")]
    users = [replace(ADMIN, email="new@x.test")]
    result = changes(users, employees, snapshot)
    assert result[-1] == Change(
        K.ACCESS_GRANTED,
        "new@x.test",
        "1",
        after={"role": "Admin", "teams": ["*"], "name": "Ada Admin"},
    )


# -- plan: determinism and idempotence ----------------------------------------------------------


def test_plan_is_sorted_by_kind_then_subject_and_deterministic():
    snapshot = snap([person(str(i), f"p{i}@x.test", active=False) for i in range(5)], ["Sales"])
    employees = [emp(i + 2, f"p{i}@x.test", "Support") for i in (3, 0, 4, 1, 2)]
    employees += [emp(9, "z@x.test"), emp(10, "b@x.test")]
    first = plan([ADMIN], employees, snapshot)
    kinds = [c.kind.order for c in first]
    assert kinds == sorted(kinds)
    assert [c.subject for c in first.of_kind(K.EMPLOYEE_REACTIVATED)] == [
        f"p{i}@x.test" for i in range(5)
    ]
    assert [c.subject for c in first.of_kind(K.EMPLOYEE_CREATED)] == ["b@x.test", "z@x.test"]
    again = plan([ADMIN], employees, snapshot)
    assert again.changes == first.changes
    assert again.fingerprint() == first.fingerprint()
    assert isinstance(first, ChangeSet)


def test_apply_then_replan_is_empty():
    snapshot = snap(
        [
            person("1", "old@x.test", external_id="E1", first_name="Old"),
            person("2", "gone@x.test"),
            person("3", "back@x.test", active=False, team="Support"),
        ],
        ["Sales", "Support"],
        [AccessRecord("gone@x.test", Role.MANAGER, ("Sales",), "", "2")],
    )
    adapter = InMemoryAdapter.from_snapshot(snapshot, "org")
    users = [ADMIN, UserRow(3, "new@x.test", Role.MANAGER, ("support", "Legal"))]
    employees = [
        emp(2, "new@x.test", "legal", first_name="New", employee_id="E1", title="T"),
        emp(3, "back@x.test", "SALES", extra={"cost_center": "9"}),
        emp(4, "fresh@x.test", "Legal"),
    ]
    changeset = plan(users, employees, snapshot)
    assert changeset.counts() == {
        "team_created": 1, "employee_created": 1, "employee_reactivated": 1,
        "employee_updated": 2, "employee_moved": 2, "employee_deactivated": 1,
        "access_granted": 2, "access_changed": 0, "access_revoked": 1,
    }  # fmt: skip
    adapter.apply("org", changeset)
    after = adapter.snapshot("org")
    assert check_pair(users, employees, after) == []
    assert plan(users, employees, after).changes == []
    assert after.by_email["admin@x.test"].team is None  # dashboard-only account, kept active
    assert after.by_email["admin@x.test"].active


def test_plan_restores_the_garbage_collector_state():
    assert gc.isenabled()
    plan([ADMIN], [emp(2, "a@x.test")], snap())
    assert gc.isenabled()
    gc.disable()
    try:
        plan([ADMIN], [emp(2, "a@x.test")], snap())
        assert not gc.isenabled()
    finally:
        gc.enable()


# -- property: apply(plan) then re-plan is empty, and the directory says what the files say ----

EMAILS = tuple(f"p{i}@x.test" for i in range(10))
IDS = tuple(f"E{i}" for i in range(6))
TEAMS = ("Sales", "Support", "Field Ops", "R&D")
NAMES = ("", "Ann", "Bob")


def spelled(name: str) -> st.SearchStrategy[str]:
    return st.sampled_from([name, name.lower(), name.upper(), name.replace(" ", "  ")])


team_spelling = st.sampled_from(TEAMS).flatmap(spelled)
extras = st.dictionaries(st.sampled_from(["cost_center", "site"]), st.sampled_from(["1", "2"]))


@st.composite
def directories(draw) -> DirectorySnapshot:
    team_names = draw(st.lists(st.sampled_from(TEAMS), unique=True))
    emails = draw(st.lists(st.sampled_from(EMAILS), unique=True, max_size=8))
    ids = draw(st.lists(st.sampled_from(IDS), unique=True, max_size=len(emails)))
    ids += [None] * (len(emails) - len(ids))
    people = [
        PersonRecord(
            key=str(100 + i),
            email=draw(st.sampled_from([email, email.upper()])),
            first_name=draw(st.sampled_from(NAMES)),
            last_name=draw(st.sampled_from(NAMES)),
            title=draw(st.sampled_from(NAMES)),
            team=draw(st.sampled_from([None, *team_names])),
            active=draw(st.booleans()),
            external_id=ids[i],
            extra=draw(extras),
        )
        for i, email in enumerate(emails)
    ]
    access = []
    for p in draw(st.lists(st.sampled_from(people), unique_by=lambda p: p.key)) if people else []:
        role = draw(st.sampled_from(Role))
        scope = (
            draw(st.lists(st.sampled_from(team_names), unique=True, min_size=1))
            if (role is Role.MANAGER and team_names)
            else [ALL_TEAMS]
        )
        access.append(AccessRecord(p.email, role, tuple(sorted(scope)), "", p.key))
    teams = [TeamRecord(f"t{i}", name) for i, name in enumerate(team_names)]
    return DirectorySnapshot.build(people, teams, access)


@st.composite
def employee_rows(draw) -> list[EmployeeRow]:
    emails = draw(st.lists(st.sampled_from(EMAILS + ("n1@x.test", "n2@x.test")), unique=True))
    ids = draw(st.lists(st.sampled_from(IDS), unique=True, max_size=len(emails)))
    ids += [None] * (len(emails) - len(ids))
    ids = draw(st.permutations(ids)) if ids else ids
    return [
        EmployeeRow(
            line=i + 2,
            email=email,
            team=draw(team_spelling),
            first_name=draw(st.sampled_from(NAMES)),
            last_name=draw(st.sampled_from(NAMES)),
            title=draw(st.sampled_from((None, *NAMES))),
            employee_id=ids[i],
            extra=draw(extras),
        )
        for i, email in enumerate(emails)
    ]


@st.composite
def user_rows(draw) -> list[UserRow]:
    emails = draw(st.lists(st.sampled_from(EMAILS + ("u1@x.test",)), unique=True))
    rows = [UserRow(2, "boss@x.test", Role.ADMIN, (ALL_TEAMS,), "Boss")]
    for i, email in enumerate(emails):
        role = draw(st.sampled_from(Role))
        scope = (ALL_TEAMS,)
        if role is Role.MANAGER and draw(st.booleans()):
            scope = tuple(sorted(draw(st.lists(team_spelling, min_size=1, max_size=3))))
        rows.append(UserRow(i + 3, email, role, scope, draw(st.sampled_from(NAMES))))
    return rows


def consistent(users, employees, snapshot):
    """Drop the rows check_pair objects to until it has nothing to say."""
    for _ in range(10):
        errors = check_pair(users, employees, snapshot)
        if not errors:
            return users, employees
        bad_users = {e.line for e in errors if e.file == USERS_FILE}
        bad_employees = {e.line for e in errors if e.file == EMPLOYEES_FILE}
        users = [u for u in users if u.line not in bad_users]
        employees = [r for r in employees if r.line not in bad_employees]
    raise AssertionError("check_pair did not settle")  # pragma: no cover


def expected_match(row: EmployeeRow, people: list[PersonRecord]) -> PersonRecord | None:
    """The matching rule, written as plainly as possible (an oracle for the planner)."""
    if row.employee_id:
        for p in people:
            if p.external_id == row.employee_id:
                return p
    for p in people:
        if normalize_email(p.email) == row.email:
            return p
    return None


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(before=directories(), employees=employee_rows(), users=user_rows())
def test_property_apply_then_replan_is_empty(before, employees, users):
    users, employees = consistent(users, employees, before)
    adapter = InMemoryAdapter.from_snapshot(before, "org")
    changeset = plan(users, employees, before)
    adapter.apply("org", changeset)
    after = adapter.snapshot("org")

    assert check_pair(users, employees, after) == []
    assert plan(users, employees, after).changes == []

    # Every row's person is active, in its team, with the row's fields.
    for row in employees:
        p = after.by_email[row.email]
        assert p.active
        assert p.team is not None and normalize_team(p.team) == normalize_team(row.team)
        assert (p.first_name, p.last_name) == (row.first_name, row.last_name)
        if row.title is not None:
            assert p.title == row.title
        if row.employee_id:
            assert p.external_id == row.employee_id
        assert {k: p.extra.get(k) for k in row.extra} == row.extra
        match = expected_match(row, before.people)
        if match is not None:
            assert p.key == match.key

    # Every unlisted person is inactive, unless Users.csv lists them (then unchanged).
    listed = {m.key for row in employees if (m := expected_match(row, before.people))}
    user_emails = {u.email for u in users}
    by_key = {p.key: p for p in after.people}
    for old in before.people:
        if old.key in listed:
            continue
        now = by_key[old.key]
        if normalize_email(old.email) in user_emails:
            assert now.active == old.active
        else:
            assert not now.active

    # Dashboard access is exactly Users.csv, with canonical team names.
    assert set(after.access_by_email) == user_emails
    for u in users:
        access = after.access_by_email[u.email]
        assert access.role is u.role
        if u.role is Role.ADMIN or ALL_TEAMS in u.teams:
            assert access.teams == (ALL_TEAMS,)
        else:
            assert {normalize_team(t) for t in access.teams} == {normalize_team(t) for t in u.teams}
            assert all(t in {team.name for team in after.teams} for t in access.teams)

    # A change's key is the key of the person it ends up on (None: a person the sync creates).
    old_keys = {p.key for p in before.people}
    for change in changeset.of_kind(K.ACCESS_GRANTED, K.ACCESS_CHANGED):
        landed = after.access_by_email[change.subject].person_key
        assert landed == change.key if change.key is not None else landed not in old_keys
    for change in changeset.of_kind(K.EMPLOYEE_CREATED):
        assert after.by_email[change.subject].key not in old_keys

    # Nobody is lost; new people are the new rows plus dashboard-only accounts.
    assert {p.key for p in before.people} <= set(by_key)
    assert len({normalize_email(p.email) for p in after.people}) == len(after.people)


@pytest.mark.parametrize("n", [0, 1, 50])
def test_plan_of_nothing_against_people_deactivates_them_all(n):
    snapshot = snap([person(str(i), f"p{i}@x.test") for i in range(n)], ["Sales"])
    result = plan([ADMIN], [], snapshot)
    assert [c.kind for c in result] == [K.EMPLOYEE_DEACTIVATED] * n + [K.ACCESS_GRANTED]


def test_an_admin_who_stays_deactivated_does_not_count_as_the_admin() -> None:
    gone = PersonRecord(key="9", email="gone@example.com", active=False)
    snapshot = DirectorySnapshot.build([gone], [], [])
    admin = UserRow(line=2, email="gone@example.com", role=Role.ADMIN, teams=("*",))
    [error] = check_pair([admin], [], snapshot)
    assert (error.file, error.line, error.column, error.value) == (
        "Users.csv", 2, "email", "gone@example.com"
    )
    assert "active Admin" in error.message
    # listed in Employees.csv too, they are reactivated: fine
    row = EmployeeRow(line=2, email="gone@example.com", team="Ops", first_name="G",
                      last_name="One")
    assert check_pair([admin], [row], snapshot) == []


def test_check_pair_reports_users_listing_an_email_that_employees_renames():
    snapshot = snap(
        [person("1", "old@x.test", external_id="E1"), person("2", "admin@x.test")],
        ["Sales"],
        [AccessRecord("old@x.test", Role.MANAGER, ("Sales",), "", "1"), admin_access("2")],
    )
    employees = [emp(2, "new@x.test", employee_id="E1"), emp(3, "admin@x.test")]
    users = [ADMIN, UserRow(3, "old@x.test", Role.MANAGER, ("Sales",), "Old")]
    [error] = check_pair(users, employees, snapshot)
    assert (error.file, error.line, error.column, error.value) == (
        USERS_FILE, 3, "email", "old@x.test"
    )
    assert "new@x.test" in error.message and "line 2" in error.message
    # with the new email, the pair is consistent
    users = [ADMIN, UserRow(3, "new@x.test", Role.MANAGER, ("Sales",), "Old")]
    assert check_pair(users, employees, snapshot) == []
