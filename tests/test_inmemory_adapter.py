"""InMemoryAdapter: the adapter contract (all or nothing, round trip) and its primitives."""

from __future__ import annotations

import pytest

from flask_csvdirectory.changes import Change, ChangeKind, ChangeSet
from flask_csvdirectory.planner import check_pair, plan
from flask_csvdirectory.records import (
    ALL_TEAMS,
    AccessRecord,
    DirectorySnapshot,
    PersonRecord,
    Role,
)
from flask_csvdirectory.rows import EmployeeRow, UserRow
from flask_csvdirectory.testing import InjectedFailure, InMemoryAdapter

ORG = "acme"


def seeded(**kwargs) -> InMemoryAdapter:
    adapter = InMemoryAdapter(**kwargs)
    adapter.seed(
        ORG,
        teams=["Sales", "Support"],
        people=[
            PersonRecord("1", "ann@x.test", "Ann", "A", "Rep", "Sales", True, "E1", {"cc": "1"}),
            PersonRecord("2", "bob@x.test", "Bob", "B", "", "Support", True, None),
            PersonRecord("3", "cy@x.test", "Cy", "C", "", None, False, "E3"),
        ],
        access=[AccessRecord("ann@x.test", Role.MANAGER, ("Sales",), "Ann A", "1")],
    )
    return adapter


USERS = [
    UserRow(2, "boss@x.test", Role.ADMIN, (ALL_TEAMS,), "The Boss"),
    UserRow(3, "ann.new@x.test", Role.MANAGER, ("legal", "sales")),
]
EMPLOYEES = [
    EmployeeRow(2, "ann.new@x.test", "Legal", "Ann", "A", "Lead", "E1", {"cc": "2"}),
    EmployeeRow(3, "cy@x.test", "support", "Cy", "C"),
    EmployeeRow(4, "dee@x.test", "Sales", "Dee", "D", None, "E4"),
]


def full_plan(adapter: InMemoryAdapter) -> ChangeSet:
    snapshot = adapter.snapshot(ORG)
    assert check_pair(USERS, EMPLOYEES, snapshot) == []
    return plan(USERS, EMPLOYEES, snapshot)


# -- the contract -------------------------------------------------------------------------------


def test_seed_then_snapshot_round_trips():
    adapter = seeded()
    snapshot = adapter.snapshot(ORG)
    assert [p.key for p in snapshot.people] == ["1", "2", "3"]
    assert snapshot.by_email["ann@x.test"] == PersonRecord(
        "1", "ann@x.test", "Ann", "A", "Rep", "Sales", True, "E1", {"cc": "1"}
    )
    assert [t.name for t in snapshot.teams] == ["Sales", "Support"]
    assert snapshot.access == [AccessRecord("ann@x.test", Role.MANAGER, ("Sales",), "Ann A", "1")]
    again = InMemoryAdapter.from_snapshot(snapshot, ORG)
    assert again.snapshot(ORG) == snapshot


def test_snapshot_records_are_copies():
    adapter = seeded()
    adapter.snapshot(ORG).by_email["ann@x.test"].extra["cc"] = "changed"  # type: ignore[index]
    assert adapter.snapshot(ORG).by_email["ann@x.test"].extra == {"cc": "1"}


def test_apply_round_trip_then_replan_is_empty():
    adapter = seeded()
    changeset = full_plan(adapter)
    assert changeset.counts() == {
        "team_created": 1, "employee_created": 1, "employee_reactivated": 1,
        "employee_updated": 1, "employee_moved": 2, "employee_deactivated": 1,
        "access_granted": 1, "access_changed": 1, "access_revoked": 0,
    }  # fmt: skip
    progress: list[tuple[int, int]] = []
    adapter.apply(ORG, changeset, progress=lambda done, total: progress.append((done, total)))
    assert progress == [(len(changeset), len(changeset))]

    after = adapter.snapshot(ORG)
    assert plan(USERS, EMPLOYEES, after).changes == []
    ann = after.by_email["ann.new@x.test"]
    assert (ann.key, ann.team, ann.title, ann.extra, ann.active) == (
        "1", "Legal", "Lead", {"cc": "2"}, True
    )  # fmt: skip
    assert after.by_email["bob@x.test"].active is False
    assert after.by_email["cy@x.test"].active and after.by_email["cy@x.test"].team == "Support"
    dee = after.by_email["dee@x.test"]
    assert (dee.team, dee.external_id, dee.title, dee.active) == ("Sales", "E4", "", True)
    boss = after.by_email["boss@x.test"]
    assert (boss.first_name, boss.last_name, boss.team, boss.active) == ("The", "Boss", None, True)
    assert sorted((a.email, a.role, a.teams, a.person_key) for a in after.access) == [
        ("ann.new@x.test", Role.MANAGER, ("Legal", "Sales"), "1"),
        ("boss@x.test", Role.ADMIN, (ALL_TEAMS,), boss.key),
    ]


@pytest.mark.parametrize("fail_after", range(10))
def test_apply_is_all_or_nothing(fail_after):
    adapter = seeded()
    changeset = full_plan(adapter)
    assert len(changeset) == 9
    before = adapter.snapshot(ORG)
    adapter.fail_after = fail_after
    if fail_after >= len(changeset):
        adapter.apply(ORG, changeset)
        assert adapter.snapshot(ORG) != before
        return
    with pytest.raises(InjectedFailure):
        adapter.apply(ORG, changeset)
    assert adapter.writes == fail_after
    assert adapter.snapshot(ORG) == before
    # Nothing half-made lingers: the same plan applies cleanly once the failure is lifted.
    adapter.fail_after = None
    adapter.apply(ORG, changeset)
    assert plan(USERS, EMPLOYEES, adapter.snapshot(ORG)).changes == []
    assert [p.key for p in adapter.snapshot(ORG).people] == ["1", "2", "3", "5", "6"]


def test_a_failing_change_rolls_back_the_changes_before_it():
    adapter = seeded()
    before = adapter.snapshot(ORG)
    bad = ChangeSet.of(
        [
            Change(ChangeKind.TEAM_CREATED, "Legal", after={"name": "Legal"}),
            Change(ChangeKind.EMPLOYEE_UPDATED, "x", "2", {}, {"email": "ann@x.test"}),
        ]
    )
    with pytest.raises(ValueError, match="already"):
        adapter.apply(ORG, bad)
    assert adapter.snapshot(ORG) == before


def test_transaction_restores_on_any_exception():
    adapter = seeded()
    before = adapter.snapshot(ORG)
    with pytest.raises(KeyError), adapter.transaction(ORG):
        adapter.create_team(ORG, "Legal")
        adapter.revoke_access(ORG, "ann@x.test")
        raise KeyError("host bug")
    assert adapter.snapshot(ORG) == before
    with adapter.transaction(ORG):
        adapter.create_team(ORG, "Legal")
    assert "legal" in adapter.snapshot(ORG).team_by_name


def test_rename_team_is_rolled_back_with_the_transaction():
    adapter = seeded()
    before = adapter.snapshot(ORG)
    with pytest.raises(InjectedFailure), adapter.transaction(ORG):
        adapter.rename_team(ORG, "sales", "Field Sales")
        snapshot = adapter.snapshot(ORG)
        assert snapshot.by_email["ann@x.test"].team == "Field Sales"
        assert snapshot.access_by_email["ann@x.test"].teams == ("Field Sales",)
        adapter.fail_after = adapter.writes
        adapter.create_team(ORG, "Legal")
    assert adapter.snapshot(ORG) == before


# -- primitives ---------------------------------------------------------------------------------


def test_create_team_refuses_a_duplicate_name():
    adapter = seeded()
    created = adapter.create_team(ORG, "Legal")
    assert (created.key, created.name) == ("4", "Legal")
    assert created.scim_id and created.created_at is not None
    with pytest.raises(ValueError):
        adapter.create_team(ORG, " SALES ")


def test_create_person_checks_email_and_team():
    adapter = seeded()
    values = {"email": "new@x.test", "first_name": "N", "team": "sales", "extra": {"a": "1"}}
    created = adapter.create_person(ORG, values)
    assert (created.key, created.email, created.first_name, created.team, created.extra) == (
        "4", "new@x.test", "N", "Sales", {"a": "1"}
    )
    assert created.scim_id and created.created_at == created.updated_at is not None
    found = adapter.get_person(ORG, "4")
    assert found is not None and found.scim_id == created.scim_id and found.team == "Sales"
    adapter.get_person(ORG, "4").extra["a"] = "changed"  # type: ignore[union-attr,index]
    assert adapter.get_person(ORG, "4").extra == {"a": "1"}  # type: ignore[union-attr]
    with pytest.raises(ValueError):
        adapter.create_person(ORG, {"email": "ANN@x.test", "team": "Sales"})
    with pytest.raises(LookupError):
        adapter.create_person(ORG, {"email": "z@x.test", "team": "Nowhere"})


def test_update_person_merges_extra_and_keeps_emails_unique():
    adapter = seeded()
    adapter.update_person(ORG, "1", {"extra": {"site": "Lyon"}, "team": "support", "active": False})
    ann = adapter.get_person(ORG, "1")
    assert ann is not None
    assert (ann.extra, ann.team, ann.active) == ({"cc": "1", "site": "Lyon"}, "Support", False)
    with pytest.raises(ValueError):
        adapter.update_person(ORG, "1", {"email": "bob@x.test"})
    assert adapter.snapshot(ORG).by_email["ann@x.test"].key == "1"
    adapter.update_person(ORG, "1", {"email": "ann2@x.test"})
    adapter.create_person(ORG, {"email": "ann@x.test"})  # the old email is free again
    with pytest.raises(ValueError):
        adapter.update_person(ORG, "1", {"colour": "red"})
    with pytest.raises(LookupError):
        adapter.update_person(ORG, "99", {"title": "x"})


def test_set_access_creates_a_dashboard_only_person_and_revoke_keeps_them():
    adapter = seeded()
    adapter.set_access(ORG, "Mia@x.test", Role.MANAGER, ("support", "Sales"), name="Mia")
    snapshot = adapter.snapshot(ORG)
    mia = snapshot.by_email["mia@x.test"]
    assert (mia.first_name, mia.team, mia.active) == ("Mia", None, True)
    assert snapshot.access_by_email["mia@x.test"] == AccessRecord(
        "Mia@x.test", Role.MANAGER, ("Sales", "Support"), "Mia", mia.key
    )
    adapter.set_access(ORG, "bob@x.test", Role.ADMIN, ("Sales",))
    assert adapter.snapshot(ORG).access_by_email["bob@x.test"].teams == (ALL_TEAMS,)
    with pytest.raises(LookupError):
        adapter.set_access(ORG, "bob@x.test", Role.MANAGER, ("Nowhere",))
    adapter.revoke_access(ORG, "MIA@x.test")
    snapshot = adapter.snapshot(ORG)
    assert "mia@x.test" not in snapshot.access_by_email and "mia@x.test" in snapshot.by_email
    with pytest.raises(LookupError):
        adapter.revoke_access(ORG, "mia@x.test")


def test_delete_person_and_team():
    adapter = seeded()
    with pytest.raises(ValueError):
        adapter.delete_team(ORG, "Support")  # Bob is in it
    adapter.delete_person(ORG, "2")
    assert adapter.get_person(ORG, "2") is None
    adapter.delete_team(ORG, "support")
    assert [t.name for t in adapter.snapshot(ORG).teams] == ["Sales"]
    with pytest.raises(ValueError):
        adapter.delete_team(ORG, "Sales")
    adapter.delete_person(ORG, "1")  # Ann: her access goes with her
    assert adapter.snapshot(ORG).access == []
    with pytest.raises(LookupError):
        adapter.delete_person(ORG, "1")


def test_organizations_are_separate():
    adapter = seeded()
    assert adapter.snapshot("other") == DirectorySnapshot.build([], [], [])
    adapter.create_team("other", "Sales")
    assert len(adapter.snapshot(ORG).teams) == 2
    assert [t.name for t in adapter.snapshot("other").teams] == ["Sales"]


def test_fail_after_counts_writes_across_primitives():
    adapter = seeded(fail_after=2)
    adapter.create_team(ORG, "A")
    adapter.update_person(ORG, "2", {"title": "x"})
    with pytest.raises(InjectedFailure):
        adapter.revoke_access(ORG, "ann@x.test")
    assert adapter.writes == 2
    assert "ann@x.test" in adapter.snapshot(ORG).access_by_email
