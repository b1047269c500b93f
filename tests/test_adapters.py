"""The adapter contract, run against every adapter we ship: in-memory and SQLAlchemy."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from flask import Flask

from flask_csvdirectory import planner
from flask_csvdirectory.adapter import DirectoryAdapter
from flask_csvdirectory.changes import Change, ChangeKind, ChangeSet
from flask_csvdirectory.extension import get_state
from flask_csvdirectory.records import ALL_TEAMS, Role
from flask_csvdirectory.rows import EmployeeRow, UserRow
from flask_csvdirectory.testing import InMemoryAdapter

ORG = "default"


@pytest.fixture(params=["inmemory", "sqlalchemy"])
def adapter(request: pytest.FixtureRequest) -> Iterator[DirectoryAdapter]:
    if request.param == "inmemory":
        yield InMemoryAdapter()
        return
    app: Flask = request.getfixturevalue("app")
    with app.app_context():
        yield get_state(app).adapter


def rows(*specs: tuple[str, str]) -> list[EmployeeRow]:
    return [
        EmployeeRow(line=n + 2, email=email, team=team, first_name=f"F{n}", last_name=f"L{n}",
                    title="T", employee_id=f"E{n}")
        for n, (email, team) in enumerate(specs)
    ]


ADMIN = UserRow(line=2, email="boss@example.com", role=Role.ADMIN, teams=(ALL_TEAMS,),
                name="Big Boss")


def sync(adapter: DirectoryAdapter, employees: list[EmployeeRow], users: list[UserRow]) -> None:
    snapshot = adapter.snapshot(ORG)
    assert planner.check_pair(users, employees, snapshot) == []
    adapter.apply(ORG, planner.plan(users, employees, snapshot))


def people(adapter: DirectoryAdapter) -> dict[str, tuple]:
    return {
        p.email: (p.team, p.active, p.first_name, p.external_id)
        for p in adapter.snapshot(ORG).people
    }


def test_apply_then_replan_is_empty(adapter: DirectoryAdapter) -> None:
    employees = rows(("a@x.com", "Red"), ("b@x.com", "Blue"))
    manager = UserRow(line=3, email="a@x.com", role=Role.MANAGER, teams=("Blue", "Red"))
    sync(adapter, employees, [ADMIN, manager])
    snapshot = adapter.snapshot(ORG)
    assert planner.plan([ADMIN, manager], employees, snapshot).count == 0
    found = people(adapter)
    assert found["a@x.com"] == ("Red", True, "F0", "E0")
    assert found["b@x.com"] == ("Blue", True, "F1", "E1")
    # the admin had no person: a dashboard-only account was made for them
    assert found["boss@example.com"][1] is True
    access = {a.email: (a.role, a.teams) for a in snapshot.access}
    assert access["a@x.com"] == (Role.MANAGER, ("Blue", "Red"))
    assert access["boss@example.com"] == (Role.ADMIN, (ALL_TEAMS,))
    assert {t.name for t in snapshot.teams} >= {"Red", "Blue"}


def test_moves_deactivation_and_revocation(adapter: DirectoryAdapter) -> None:
    manager = UserRow(line=3, email="a@x.com", role=Role.MANAGER, teams=("Red",))
    sync(adapter, rows(("a@x.com", "Red"), ("b@x.com", "Blue")), [ADMIN, manager])
    sync(adapter, rows(("a@x.com", "Blue")), [ADMIN])
    found = people(adapter)
    assert found["a@x.com"][:2] == ("Blue", True)
    assert found["b@x.com"][1] is False
    assert "a@x.com" not in {a.email for a in adapter.snapshot(ORG).access}


def test_team_can_be_cleared(adapter: DirectoryAdapter) -> None:
    sync(adapter, rows(("a@x.com", "Red")), [ADMIN])
    person = adapter.snapshot(ORG).by_email["a@x.com"]
    adapter.apply(ORG, ChangeSet.of([Change(ChangeKind.EMPLOYEE_MOVED, "a@x.com", person.key,
                                            {"team": "Red"}, {"team": None})]))
    assert adapter.snapshot(ORG).by_email["a@x.com"].team is None


def _break_sqlalchemy(adapter: DirectoryAdapter, monkeypatch: pytest.MonkeyPatch) -> None:
    original: Callable = adapter._apply_access  # type: ignore[attr-defined]

    def explode(*args: object) -> None:
        original(*args)
        raise RuntimeError("injected")

    monkeypatch.setattr(adapter, "_apply_access", explode)


def test_apply_is_all_or_nothing(
    adapter: DirectoryAdapter, monkeypatch: pytest.MonkeyPatch
) -> None:
    sync(adapter, rows(("a@x.com", "Red")), [ADMIN])
    before = adapter.snapshot(ORG)
    snapshot = adapter.snapshot(ORG)
    employees = rows(("a@x.com", "Green"), ("c@x.com", "Green"))
    manager = UserRow(line=3, email="c@x.com", role=Role.MANAGER, teams=("Green",))
    changeset = planner.plan([ADMIN, manager], employees, snapshot)
    assert changeset.count >= 4
    if isinstance(adapter, InMemoryAdapter):
        adapter.fail_after = adapter.writes + 3
    else:
        _break_sqlalchemy(adapter, monkeypatch)
    with pytest.raises(RuntimeError):
        adapter.apply(ORG, changeset)
    after = adapter.snapshot(ORG)
    assert sorted(after.people, key=lambda p: p.key) == sorted(before.people, key=lambda p: p.key)
    assert sorted(t.name for t in after.teams) == sorted(t.name for t in before.teams)
    assert sorted(after.access, key=lambda a: a.email) == sorted(
        before.access, key=lambda a: a.email
    )
