"""The adapter contract's queries, the same tests over the in-memory and the reference adapter
(SQLite and PostgreSQL): conditions, case rules, order, paging with totals, indexed look-ups,
team members, stable SCIM ids and timestamps."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from flask_csvdirectory.adapter import DirectoryAdapter
from flask_csvdirectory.changes import Change, ChangeKind, ChangeSet
from flask_csvdirectory.extension import get_state
from flask_csvdirectory.query import AllOf, AnyOf, Compare, Negate, Op, Query
from flask_csvdirectory.testing import InMemoryAdapter

from .conftest import build_app

ORG = "default"


def _people() -> list[Change]:
    changes = [Change(ChangeKind.TEAM_CREATED, n, after={"name": n}) for n in ("Red", "Blue")]
    for n in range(10):
        email = f"p{n}@example.com"
        changes.append(Change(ChangeKind.EMPLOYEE_CREATED, email, after={
            "email": email, "first_name": f"First{n}", "last_name": "Zed" if n % 2 else "Ab",
            "title": "Lead" if n < 3 else "", "team": "Red" if n < 4 else "Blue",
            "external_id": f"E{n}", "extra": {}, "user_name": f"User{n}" if n == 5 else "",
            "department": "Ops" if n == 7 else "", "phones": {"mobile": "+1 555"} if n == 8 else {},
        }))
    return changes


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def adapter(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[DirectoryAdapter]:
    if request.param == "memory":
        memory = InMemoryAdapter()
        memory.apply(ORG, ChangeSet.of(_people()))
        yield memory
        return
    app = build_app(request.param, tmp_path)
    with app.app_context():
        sql = get_state().adapter
        sql.apply(ORG, ChangeSet.of(_people()))
        yield sql
        get_state().db.session.remove()
        get_state().db.engine.dispose()


def emails(adapter: DirectoryAdapter, query: Query) -> list[str]:
    return [p.email for p in adapter.find_people(ORG, query).items
            if p.email.startswith("p")]


def test_conditions_and_case_rules(adapter: DirectoryAdapter) -> None:
    def where(condition: Any) -> list[str]:
        return emails(adapter, Query(condition))

    assert where(Compare("email", Op.EQ, "P3@EXAMPLE.COM")) == ["p3@example.com"]
    assert where(Compare("user_name", Op.EQ, "user5")) == ["p5@example.com"]
    assert where(Compare("user_name", Op.EQ, "p4@example.com")) == ["p4@example.com"]
    assert where(Compare("external_id", Op.EQ, "E2")) == ["p2@example.com"]
    assert where(Compare("external_id", Op.EQ, "e2")) == []  # case-exact
    assert where(Compare("email", Op.CO, "1@")) == ["p1@example.com"]
    assert where(Compare("email", Op.SW, "P9")) == ["p9@example.com"]
    # a prefix is an index range on SQLite: its bounds are exact (case, the last character)
    assert where(Compare("user_name", Op.SW, "USER")) == ["p5@example.com"]
    assert where(Compare("user_name", Op.SW, "User5")) == ["p5@example.com"]
    assert where(Compare("user_name", Op.SW, "p1@example.co")) == ["p1@example.com"]
    assert where(Compare("email", Op.SW, "p1@example.com")) == ["p1@example.com"]
    assert where(Compare("email", Op.SW, "p1@example.comx")) == []
    assert where(Compare("email", Op.SW, "p_")) == []  # LIKE wildcards are literal
    assert where(Compare("user_name", Op.CO, "SER")) == ["p5@example.com"]
    assert where(Compare("user_name", Op.EW, "5")) == ["p5@example.com"]
    assert where(Compare("title", Op.PR)) == ["p0@example.com", "p1@example.com",
                                              "p2@example.com"]
    assert where(Compare("department", Op.EQ, "ops")) == ["p7@example.com"]
    assert where(Compare("phone", Op.PR)) == ["p8@example.com"]
    assert where(AllOf((Compare("last_name", Op.EQ, "zed"), Compare("title", Op.PR)))) == [
        "p1@example.com"
    ]
    assert where(AnyOf((Compare("email", Op.EQ, "p0@example.com"),
                        Compare("email", Op.EQ, "p9@example.com")))) == [
        "p0@example.com", "p9@example.com"
    ]
    assert where(AllOf((Negate(Compare("title", Op.PR)), Compare("email", Op.SW, "p")))) == [
        f"p{n}@example.com" for n in range(3, 10)
    ]
    red = adapter.find_team(ORG, "name", "RED")
    assert red is not None
    assert where(Compare("team", Op.EQ, red.key)) == [f"p{n}@example.com" for n in range(4)]
    with pytest.raises(ValueError):
        adapter.find_people(ORG, Query(Compare("nope", Op.EQ, "x")))


def test_order_paging_and_totals(adapter: DirectoryAdapter) -> None:
    everyone = Compare("email", Op.SW, "p")
    page = adapter.find_people(ORG, Query(everyone, offset=3, limit=4))
    assert page.total == 10
    assert [p.email for p in page.items] == [f"p{n}@example.com" for n in range(3, 7)]
    assert adapter.find_people(ORG, Query(everyone, limit=0)) .total == 10
    assert adapter.find_people(ORG, Query(everyone, offset=20, limit=5)).items == []
    by_name = adapter.find_people(
        ORG, Query(everyone, order_by="last_name", descending=True, limit=3)
    )
    assert [p.last_name for p in by_name.items] == ["Zed", "Zed", "Zed"]
    assert by_name.total == 10
    teams = adapter.find_teams(ORG, Query(Compare("name", Op.NE, "Headquarters"),
                                          order_by="name", descending=True))
    assert [t.name for t in teams.items] == ["Red", "Blue"] and teams.total == 2


def test_lookups_ids_timestamps_and_members(adapter: DirectoryAdapter) -> None:
    person = adapter.find_person(ORG, "email", "p2@example.com")
    assert person is not None and person.scim_id and person.key != person.scim_id
    assert adapter.find_person(ORG, "id", person.scim_id) == person
    assert adapter.get_person(ORG, person.key) == person
    assert person.created_at is not None and person.updated_at is not None
    assert abs(datetime.now(UTC) - person.created_at) < timedelta(minutes=5)
    red = adapter.find_team(ORG, "name", "Red")
    assert red is not None and red.scim_id and adapter.find_team(ORG, "id", red.scim_id) == red
    assert adapter.find_teams(ORG, Query(Compare("member", Op.EQ, person.key))).items == [red]
    members = adapter.team_members(ORG, red.key, offset=1, limit=2)
    assert members.total == 4 and [p.email for p in members.items] == [
        "p1@example.com", "p2@example.com"
    ]
    ids = adapter.team_member_ids(ORG, red.key, limit=3)
    assert ids.total == 4 and ids.items[2] == person.scim_id
    # several keys or ids at once (a page's teams and managers, a group's members)
    other = adapter.find_person(ORG, "email", "p7@example.com")
    assert other is not None and other.scim_id
    by_ids = AnyOf((Compare("id", Op.EQ, other.scim_id), Compare("id", Op.EQ, "nope"),
                    Compare("id", Op.EQ, person.scim_id)))
    assert emails(adapter, Query(by_ids)) == ["p2@example.com", "p7@example.com"]
    by_keys = AnyOf((Compare("key", Op.EQ, other.key), Compare("key", Op.EQ, "x"),
                     Compare("key", Op.EQ, person.key)))
    assert emails(adapter, Query(by_keys)) == ["p2@example.com", "p7@example.com"]
    assert emails(adapter, Query(AnyOf((Compare("key", Op.EQ, "x"),)))) == []
    teams = adapter.find_teams(ORG, Query(AnyOf((Compare("key", Op.EQ, red.key),
                                                 Compare("key", Op.EQ, "0")))))
    assert teams.items == [red]

    before = person.updated_at
    mark = max(p.updated_at for p in adapter.find_people(ORG, Query()).items if p.updated_at)
    adapter.apply(ORG, ChangeSet.of([Change(ChangeKind.EMPLOYEE_UPDATED, person.email,
                                            person.key, {"title": "Lead"}, {"title": "CTO"})]))
    changed = adapter.get_person(ORG, person.key)
    assert changed is not None and changed.title == "CTO" and changed.scim_id == person.scim_id
    assert changed.updated_at is not None and changed.updated_at >= before
    assert changed.updated_at > mark
    later = adapter.find_people(ORG, Query(Compare("updated_at", Op.GT, mark)))
    assert [p.key for p in later.items] == [person.key]


def test_deep_pages_stay_exact_after_changes(
    adapter: DirectoryAdapter, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A deep page is found by its keys first, then read by key: in both directions, after a
    delete and after one person leaves the match while another joins, every page is exact."""
    from flask_csvdirectory.adapters import sqlalchemy as reference

    monkeypatch.setattr(reference, "DEEP_OFFSET", 1)  # every page past the second is "deep"
    everyone = Compare("email", Op.SW, "p")

    def page(offset: int, descending: bool = False) -> tuple[list[str], int]:
        found = adapter.find_people(ORG, Query(everyone, offset=offset, limit=3,
                                               descending=descending))
        return [p.email.split("@")[0] for p in found.items], found.total

    assert page(2) == (["p2", "p3", "p4"], 10)
    assert page(5) == (["p5", "p6", "p7"], 10)
    assert page(5) == (["p5", "p6", "p7"], 10)
    assert page(6) == (["p6", "p7", "p8"], 10)
    backwards = not isinstance(adapter, InMemoryAdapter)  # descending key order: SQL only
    if backwards:
        assert page(2, descending=True) == (["p7", "p6", "p5"], 10)
        assert page(5, descending=True) == (["p4", "p3", "p2"], 10)
    gone = adapter.find_person(ORG, "email", "p1@example.com")
    assert gone is not None
    adapter.delete_person(ORG, gone.key)  # every later person moves up one place
    assert page(5) == (["p6", "p7", "p8"], 9)
    if backwards:
        assert page(5, descending=True) == (["p4", "p3", "p2"], 9)
        assert page(6, descending=True) == (["p3", "p2", "p0"], 9)
    # one person out of the match and another in: the same count, other places
    moved = adapter.find_person(ORG, "email", "p3@example.com")
    assert moved is not None
    adapter.apply(ORG, ChangeSet.of([
        Change(ChangeKind.EMPLOYEE_UPDATED, moved.email, moved.key,
               {"email": moved.email}, {"email": "q3@example.com"}),
        Change(ChangeKind.EMPLOYEE_CREATED, "p10@example.com", after={
            "email": "p10@example.com", "first_name": "Ten", "last_name": "T", "title": "",
            "team": None, "external_id": "E10", "extra": {}}),
    ]))
    assert page(5) == (["p7", "p8", "p9"], 9)
    assert page(6) == (["p8", "p9", "p10"], 9)
