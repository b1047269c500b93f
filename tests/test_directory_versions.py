"""Directory versions and what the reference adapter keeps by them (marker ``scim``).

Totals, deep-page marks and the text index of logins and emails are kept while the directory's
version stays the same. These tests check, on SQLite and PostgreSQL, that every kind of write
moves the version in its own transaction (the adapter's, the host's own ORM writes, bulk
statements, a second session standing for another process), that a write the host makes
without SQLAlchemy is seen once it calls ``directory_changed``, that an uncommitted or
rolled-back write is never cached, and that the kept answers equal what SQL gives.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import String, create_engine, event, insert, select, text, update
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from flask_csvdirectory import versions
from flask_csvdirectory.adapters import sqlalchemy as reference
from flask_csvdirectory.changes import Change, ChangeKind, ChangeSet
from flask_csvdirectory.extension import get_state
from flask_csvdirectory.models import DirectoryVersion
from flask_csvdirectory.query import AllOf, Compare, Negate, Op, Query

from .conftest import build_app

pytestmark = pytest.mark.scim

ORG = "default"
PEOPLE = 40
EVERYONE = Compare("email", Op.SW, "p")


def _created(n: int, **values: Any) -> Change:
    email = f"p{n}@example.com"
    return Change(ChangeKind.EMPLOYEE_CREATED, email, after={
        "email": email, "first_name": f"First{n}", "last_name": f"Last{n}", "title": "",
        "team": "Red" if n % 2 else "Blue", "external_id": f"E{n}", "extra": {}, **values,
    })


@pytest.fixture
def host(stack: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Flask]:
    """The example platform with 40 people (p0...p39); a deep page starts past position 3."""
    monkeypatch.setattr(reference, "DEEP_OFFSET", 3)
    app = build_app(stack, tmp_path)
    with app.app_context():
        changes = [Change(ChangeKind.TEAM_CREATED, n, after={"name": n}) for n in ("Red", "Blue")]
        changes += [_created(n, user_name=f"Login-{n}" if n % 5 == 0 else "")
                    for n in range(PEOPLE)]
        get_state().adapter.apply(ORG, ChangeSet.of(changes))
        yield app
        get_state().db.session.remove()
        get_state().db.engine.dispose()


def adapter() -> reference.SQLAlchemyDirectoryAdapter:
    found = get_state().adapter
    assert isinstance(found, reference.SQLAlchemyDirectoryAdapter)
    return found


def session() -> Any:
    return get_state().db.session


def version() -> tuple[int, int] | None:
    stamp = versions.current(session(), ORG)
    session().rollback()
    return stamp


def numbers(query: Query) -> tuple[list[int | str], int]:
    """The people a query finds, as their numbers (p7 -> 7; anyone else by email), and the
    total."""
    page = adapter().find_people(ORG, query)
    local = [p.email.split("@")[0] for p in page.items]
    return [int(n[1:]) if n[1:].isdigit() else n for n in local], page.total


def settled(query: Query) -> tuple[list[int | str], int]:
    """The query once the text indexes it asked for are built (the first asking builds them in
    the background and goes to SQL)."""
    numbers(query)
    adapter()._text_indexes.wait()
    return numbers(query)


def indexed(field: str) -> bool:
    """Whether the text index of ``field`` is built at the current version."""
    stamp = version()
    assert stamp is not None
    built = adapter()._text_indexes._built.get((ORG, field), stamp)
    return built is not versions.MISSING


def uncached(query: Query) -> tuple[list[int | str], int]:
    """The same query straight from SQL: in a transaction marked as writing, nothing cached is
    used or kept."""
    versions.directory_changed(session(), ORG)
    try:
        return numbers(query)
    finally:
        session().rollback()


def user_model() -> Any:
    from example_app.models import User

    return User


def test_every_page_from_the_marks_equals_sql_offsets(host: Flask) -> None:
    """Every offset, both directions, with and without a filter: the page read from the
    nearest cached mark is the page SQL's OFFSET gives, and the total is the COUNT."""
    with host.app_context():
        red = adapter().find_team(ORG, "name", "Red")
        assert red is not None
        for where in (EVERYONE, AllOf((EVERYONE, Compare("team", Op.EQ, red.key)))):
            for descending in (False, True):
                for offset in range(0, PEOPLE + 2):
                    query = Query(where, offset=offset, limit=4, descending=descending)
                    assert numbers(query) == uncached(query), (where, descending, offset)
        # at a new version, a page notes where it starts and where the next one does
        versions.directory_changed(session(), ORG)
        session().commit()
        assert numbers(Query(EVERYONE, offset=20, limit=4)) == ([20, 21, 22, 23], PEOPLE)
        stamp = version()
        assert stamp is not None
        marks = adapter()._cache.get((ORG, "people", EVERYONE, "marks", False), stamp)
        assert marks.before(19) is None
        assert [marks.before(n)[0] for n in (20, 23, 24, 26)] == [20, 20, 24, 24]


def test_the_adapters_writes_move_the_version_and_the_answers(host: Flask) -> None:
    with host.app_context():
        deep = Query(EVERYONE, offset=10, limit=3)
        assert numbers(deep) == ([10, 11, 12], PEOPLE)
        before = version()
        gone = adapter().find_person(ORG, "email", "p2@example.com")
        assert gone is not None
        adapter().delete_person(ORG, gone.key)
        moved = version()
        assert moved is not None and before is not None and moved[0] == before[0] + 1
        assert moved[1] == before[1]  # the adapter names its organization: not every one
        assert numbers(deep) == ([11, 12, 13], PEOPLE - 1)
        assert settled(Query(Compare("email", Op.CO, "40@"))) == ([], 0)
        assert indexed("email")
        adapter().apply(ORG, ChangeSet.of([_created(40)]))
        assert not indexed("email")
        assert numbers(Query(EVERYONE, offset=PEOPLE - 2, limit=3)) == ([39, 40], PEOPLE)
        assert settled(Query(Compare("email", Op.CO, "40@"))) == ([40], 1)
        assert indexed("email")


def test_the_hosts_own_orm_writes_move_the_version(host: Flask) -> None:
    """Inserts, deletes and changes to a mapped attribute made with the host's models; a
    change to an attribute the adapter does not read (a login counter) moves nothing."""
    User = user_model()
    with host.app_context():
        co = Query(Compare("user_name", Op.CO, "new-login"))
        assert settled(co) == ([], 0)
        assert indexed("user_name")
        assert numbers(Query(EVERYONE, limit=1)) == ([0], PEOPLE)
        session().add(User(email="p41@example.com", username="New-Login-41"))
        session().commit()
        assert numbers(co) == ([41], 1)
        assert numbers(Query(EVERYONE, limit=1)) == ([0], PEOPLE + 1)

        person = session().scalar(select(User).where(User.email == "p3@example.com"))
        before = version()
        person.login_count += 1  # not a directory field
        session().commit()
        assert version() == before
        assert settled(co) == ([41], 1)
        person.username = "new-login-3"
        session().commit()
        assert version() != before
        assert settled(co) == ([3, 41], 2)

        session().delete(person)
        session().commit()
        assert settled(co) == ([41], 1)
        assert numbers(Query(EVERYONE, offset=3, limit=2)) == ([4, 5], PEOPLE)


def test_a_bulk_statement_moves_every_organization(host: Flask) -> None:
    User = user_model()
    with host.app_context():
        ew = Query(Compare("email", Op.EW, ".renamed.example"))
        assert settled(ew) == ([], 0)
        before = version()
        session().execute(
            update(User).where(User.email.in_(["p7@example.com", "p8@example.com"]))
            .values(email=User.email + ".renamed.example")
        )
        session().commit()
        after = version()
        assert before is not None and after is not None and after[1] == before[1] + 1
        assert settled(Query(Compare("email", Op.CO, "@example.com.renamed"))) == ([7, 8], 2)
        assert settled(ew) == ([7, 8], 2)
        assert indexed("email")


def test_another_session_is_seen_like_another_process(host: Flask) -> None:
    """A write committed by another session (another worker or web process) moves the version
    this process's cache is keyed by."""
    User = user_model()
    with host.app_context():
        assert numbers(Query(EVERYONE, offset=5, limit=2)) == ([5, 6], PEOPLE)
        with Session(get_state().db.engine) as other:
            other.delete(other.scalar(select(User).where(User.email == "p0@example.com")))
            other.commit()
        assert numbers(Query(EVERYONE, offset=5, limit=2)) == ([6, 7], PEOPLE - 1)


def test_sql_outside_sqlalchemy_sessions_needs_directory_changed(host: Flask) -> None:
    """The documented limit: SQL on a bare connection is not seen (the kept answer stays)
    until the writer calls ``directory_changed`` in its transaction."""
    with host.app_context():
        query = Query(EVERYONE, offset=4, limit=1)
        assert numbers(query) == ([4], PEOPLE)
        with get_state().db.engine.begin() as connection:
            connection.execute(text("DELETE FROM users WHERE email = 'p1@example.com'"))
        assert numbers(query) == ([4], PEOPLE)  # kept: nothing said the directory changed
        versions.directory_changed(session(), ORG)
        session().commit()
        assert numbers(query) == ([5], PEOPLE - 1)


def test_uncommitted_and_rolled_back_writes_are_never_kept(host: Flask) -> None:
    User = user_model()
    with host.app_context():
        query = Query(EVERYONE, offset=4, limit=1)
        assert numbers(query) == ([4], PEOPLE)
        assert settled(Query(Compare("email", Op.CO, "0@example"))) == ([0, 10, 20, 30], 4)
        before = version()
        person = session().scalar(select(User).where(User.email == "p0@example.com"))
        session().delete(person)
        session().flush()
        # the open transaction reads its own write, from SQL, and keeps nothing
        assert numbers(query) == ([5], PEOPLE - 1)
        assert numbers(Query(Compare("email", Op.CO, "0@example"))) == (
            [10, 20, 30], 3
        )
        session().rollback()
        assert version() == before
        assert numbers(query) == ([4], PEOPLE)
        assert numbers(Query(Compare("email", Op.CO, "0@example"))) == ([0, 10, 20, 30], 4)


@pytest.mark.parametrize(
    "needle",
    ["4@", "P1", "LOGIN-1", "login", "@EXAMPLE.COM", "%", "_", "\\", "1_", "zz", "ß"],
)
def test_text_index_answers_equal_sql(host: Flask, needle: str) -> None:
    """``co`` and ``ew`` on the login and the email, answered by the text index, equal SQL's
    ``LIKE`` (wildcards in the value are plain characters), also inside ``not``."""
    with host.app_context():
        for field in ("user_name", "email"):
            for op in (Op.CO, Op.EW):
                compare = Compare(field, op, needle)
                for where in (compare, Negate(compare), AllOf((compare, EVERYONE))):
                    query = Query(where, limit=100)
                    assert settled(query) == uncached(query), (field, op, needle, where)
        assert indexed("user_name") and indexed("email")


def test_many_matches_are_left_to_sql(host: Flask, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(reference, "TEXT_MATCHES", 5)
    with host.app_context():
        query = Query(Compare("email", Op.CO, "1"), limit=100)
        assert settled(query) == uncached(query)
        assert indexed("email")
        assert numbers(query)[1] == 13  # 1, 10-19, 21, 31


def test_a_failed_build_leaves_the_queries_to_sql(
    host: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(_rows: Any) -> Any:
        raise RuntimeError("the connection was lost")

    monkeypatch.setattr(reference._TextIndex, "build", broken)
    with host.app_context():
        query = Query(Compare("email", Op.CO, "3@"), limit=100)
        assert settled(query) == ([3, 13, 23, 33], 4)
        assert not indexed("email")


def test_without_the_versions_table_nothing_is_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A database without the extension's tables (the adapter used on its own): the adapter's
    writes and reads work, and nothing is cached."""
    monkeypatch.setattr(reference, "DEEP_OFFSET", 3)
    app = build_app("sqlite", tmp_path)
    with app.app_context():
        with get_state().db.engine.begin() as connection:
            connection.execute(text("DROP TABLE csvdirectory_directory_versions"))
        versions._ready.clear()
        changes = [Change(ChangeKind.TEAM_CREATED, n, after={"name": n}) for n in ("Red", "Blue")]
        adapter().apply(ORG, ChangeSet.of(changes + [_created(n) for n in range(10)]))
        assert versions.current(session(), ORG) is None
        assert numbers(Query(EVERYONE, offset=5, limit=2)) == ([5, 6], 10)
        first = adapter().find_person(ORG, "email", "p0@example.com")
        assert first is not None
        adapter().delete_person(ORG, first.key)
        assert numbers(Query(EVERYONE, offset=5, limit=2)) == ([6, 7], 9)
        get_state().db.session.remove()
        get_state().db.engine.dispose()


def test_host_before_commit_hooks_see_and_write_as_before(host: Flask) -> None:
    """A host's own ``before_commit`` hooks see the session's new objects (nothing flushes
    before them), may fill in required columns, and a directory field they change moves the
    version like any other write."""
    User = user_model()
    seen: list[tuple[int, int]] = []

    def audit(hooked: Session) -> None:
        seen.append((len(hooked.new), len(hooked.dirty)))
        for obj in hooked.new:
            if isinstance(obj, User) and obj.email is None:
                obj.email = "filled@example.com"
        if hooked.info.pop("rename", False):
            person = hooked.scalar(select(User).where(User.email == "p3@example.com"))
            person.username = "renamed-by-hook"

    event.listen(Session, "before_commit", audit)
    try:
        with host.app_context():
            renamed = Query(Compare("user_name", Op.SW, "renamed"), limit=0)
            assert numbers(renamed) == ([], 0)
            session().add(User(username="no-email-yet"))
            session().commit()
            assert seen == [(1, 0)]
            assert numbers(Query(Compare("email", Op.EQ, "filled@example.com"))) == (
                ["filled"], 1
            )
            before = version()
            person = session().scalar(select(User).where(User.email == "p3@example.com"))
            person.login_count += 1  # not a directory field: only the hook's change counts
            session().info["rename"] = True
            session().commit()
            assert version() != before
            assert numbers(renamed) == uncached(renamed) == ([], 1)
    finally:
        event.remove(Session, "before_commit", audit)


def test_savepoints_move_nothing_until_the_commit(host: Flask) -> None:
    """A savepoint's release does not move (nor lock) the version; the commit does, whatever
    was rolled back to a savepoint in between."""
    User = user_model()
    with host.app_context():
        query = Query(EVERYONE, limit=1)
        assert numbers(query) == ([0], PEOPLE)
        before = version()
        session().add(User(email="p99@example.com"))
        outer = session().begin_nested()  # flushes the insert into the transaction
        session().add(User(email="p98@example.com"))
        session().flush()
        session().begin_nested().commit()
        outer.rollback()  # p98 is gone, p99 stays
        session().commit()
        assert version() != before
        assert numbers(query) == uncached(query) == ([0], PEOPLE + 1)


def test_a_savepoint_does_not_hold_the_version_row(host: Flask, stack: str) -> None:
    """PostgreSQL: a transaction that released a savepoint does not hold the version's row,
    so another writer commits at once and the first then writes what the second had locked
    (before, they deadlocked)."""
    if stack != "postgres":
        pytest.skip("row locks: PostgreSQL")
    User = user_model()
    with host.app_context():
        engine = get_state().db.engine
        first, second = Session(engine), Session(engine)
        one = first.scalar(select(User).where(User.email == "p1@example.com"))
        with first.begin_nested():
            one.username = "first-edit"
        outcome: dict[str, str] = {}

        def write_second() -> None:
            try:
                two = second.scalar(select(User).where(User.email == "p2@example.com"))
                two.username = "second-edit"
                second.commit()
                outcome["second"] = "committed"
            except Exception as exc:  # noqa: BLE001 - the outcome is what the test checks
                outcome["second"] = type(exc).__name__
                second.rollback()

        worker = threading.Thread(target=write_second)
        worker.start()
        worker.join(10)
        two = first.scalar(select(User).where(User.email == "p2@example.com"))
        two.title = "first-edit"
        first.commit()
        assert outcome == {"second": "committed"}
        first.close()
        second.close()
        assert numbers(Query(Compare("user_name", Op.SW, "second"))) == ([2], 1)


def test_the_legacy_bulk_methods_move_every_organization(host: Flask) -> None:
    User = user_model()
    with host.app_context():
        query = Query(Compare("email", Op.SW, "p1"), limit=0)
        assert numbers(query) == ([], 11)
        before = version()
        key = session().scalar(select(User.id).where(User.email == "p1@example.com"))
        session().bulk_update_mappings(User, [{"id": key, "email": "x1@example.com"}])
        session().commit()
        after = version()
        assert before is not None and after is not None and after[1] > before[1]
        assert numbers(query) == uncached(query) == ([], 10)


def test_one_version_for_every_answer_of_a_query(
    host: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write committed while a query runs (between its text index and its count) leaves
    nothing wrong behind: what the query keeps is keyed by the version it read first."""
    User = user_model()
    with host.app_context():
        count = Query(Compare("email", Op.CO, "3@"), limit=0)
        assert settled(Query(Compare("email", Op.CO, "3@"), limit=100)) == ([3, 13, 23, 33], 4)
        original = reference.SQLAlchemyDirectoryAdapter._text_matches

        def racing(self: Any, *args: Any) -> Any:
            found = original(self, *args)
            with Session(get_state().db.engine) as other:  # another worker's write
                other.add(User(email="p333@example.com"))
                other.commit()
            return found

        monkeypatch.setattr(reference.SQLAlchemyDirectoryAdapter, "_text_matches", racing)
        numbers(count)
        monkeypatch.undo()
        assert numbers(count) == uncached(count) == ([], 5)
        assert settled(count) == ([], 5)


def test_moving_between_organizations_moves_both(tmp_path: Path) -> None:
    """A host with an organization column: a person moved from A to B moves A's version
    and B's."""

    class Base(DeclarativeBase):
        pass

    class Member(Base):
        __tablename__ = "members"
        id: Mapped[int] = mapped_column(primary_key=True)
        org: Mapped[str] = mapped_column(String(20))
        email: Mapped[str] = mapped_column(String(100))

    engine = create_engine(f"sqlite:///{tmp_path / 'orgs.sqlite3'}")
    Base.metadata.create_all(engine)
    DirectoryVersion.__table__.create(engine)
    versions.watch(Member, org_attribute="org", attributes=frozenset({"org", "email"}))

    def stamps(session: Session) -> tuple[Any, Any]:
        found = (versions.current(session, "A"), versions.current(session, "B"))
        session.rollback()
        return found

    with Session(engine) as session:
        member = Member(org="A", email="m@example.com")
        session.add(member)
        session.commit()
        assert stamps(session) == ((1, 0), (0, 0))
        member.org = "B"
        session.commit()
        assert stamps(session) == ((1, 1), (1, 1))  # A was not loaded: every organization
        session.scalar(select(Member))  # loaded now: B to A moves those two alone
        member.org = "A"
        session.commit()
        assert stamps(session) == ((2, 1), (2, 1))
    engine.dispose()


def test_a_database_in_memory_builds_no_text_index(tmp_path: Path) -> None:
    """One connection for everything (SQLite in memory, ``StaticPool``): no thread may use
    it, so ``co``/``ew`` stay with SQL and nothing the request does is lost."""
    app = build_app("sqlite", tmp_path, SQLALCHEMY_DATABASE_URI="sqlite://")
    with app.app_context():
        changes = [Change(ChangeKind.TEAM_CREATED, n, after={"name": n}) for n in ("Red", "Blue")]
        adapter().apply(ORG, ChangeSet.of(changes + [_created(n) for n in range(10)]))
        assert not adapter()._builds_in_background()
        assert settled(Query(Compare("email", Op.CO, "3@"))) == ([3], 1)
        assert adapter()._text_indexes._building == {}
        get_state().db.session.remove()


@pytest.mark.parametrize("stored", ["ann\nlee", "ÉLODIE.Martin", "ΟΣΑ"])
def test_line_breaks_and_letters_beyond_ascii_compare_as_sql_does(
    host: Flask, stored: str
) -> None:
    User = user_model()
    with host.app_context():
        session().add(User(email="q1@example.com", username=stored))
        session().commit()
        for needle in ("ann\nlee", "ann lee", "nn\nl", "élodie", "ÉLODIE", "martin", "ΟΣ",
                       "İ", "n"):
            for op in (Op.CO, Op.EW):
                query = Query(Compare("user_name", op, needle), limit=100)
                assert settled(query) == uncached(query), (stored, needle, op)
        assert indexed("user_name")


def test_text_index_leaves_null_and_other_values_to_sql() -> None:
    """A NULL value (unknown to ``LIKE``, so excluded by ``not``), one beyond ASCII or with a
    line break is given back for SQL to compare; a needle beyond ASCII is SQL's alone."""
    index = reference._TextIndex.build(
        [(1, None), (2, "Abc"), (3, "xÉbc"), (4, "a\nbc"), (5, "zzbc")]
    )
    assert index.find("BC", at_end=True) == (["2", "5"], ["1", "3", "4"])
    assert index.find("a", at_end=False) == (["2"], ["1", "3", "4"])
    assert index.find("é", at_end=False) is None


def test_autocommit_writes_move_the_version(host: Flask) -> None:
    """A connection (or a session's engine) in autocommit mode: the driver commits each
    statement, so the version moves right after each write."""
    User = user_model()
    with host.app_context():
        query = Query(Compare("email", Op.SW, "p1"), limit=0)
        assert numbers(query) == ([], 11)
        engine = get_state().db.engine
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.execute(
                update(User).where(User.email == "p1@example.com").values(email="x1@example.com")
            )
        assert numbers(query) == uncached(query) == ([], 10)
        autocommitting = Session(engine.execution_options(isolation_level="AUTOCOMMIT"))
        person = autocommitting.scalar(select(User).where(User.email == "p10@example.com"))
        person.email = "x10@example.com"
        autocommitting.flush()
        autocommitting.close()
        assert numbers(query) == uncached(query) == ([], 9)


def test_a_hooks_statement_during_a_flush_moves_every_organization(host: Flask) -> None:
    """Statements a host's flush hook sends itself are not the mapper's: they are marked."""
    User = user_model()

    def deactivate(hooked: Session, _context: Any) -> None:
        if hooked.info.pop("deactivate", False):
            hooked.execute(
                update(User).where(User.email == "p5@example.com").values(active=False)
            )

    event.listen(Session, "after_flush", deactivate)
    try:
        with host.app_context():
            inactive = Query(Compare("active", Op.EQ, False), limit=0)
            assert numbers(inactive) == ([], 0)
            person = session().scalar(select(User).where(User.email == "p3@example.com"))
            person.login_count += 1
            session().info["deactivate"] = True
            session().commit()
            assert numbers(inactive) == uncached(inactive) == ([], 1)
    finally:
        event.remove(Session, "after_flush", deactivate)


def test_a_failed_statement_then_commit_behaves_as_before(host: Flask, stack: str) -> None:
    """A write that failed leaves its transaction as it was: committing it raises nothing
    new (PostgreSQL's COMMIT of a failed transaction rolls back: no version moves; SQLite's
    transaction goes on, and its commit may move one, which only costs a cache hit)."""
    User = user_model()
    with host.app_context():
        before = version()
        with get_state().db.engine.connect() as connection:
            with pytest.raises(IntegrityError):
                connection.execute(insert(User).values(email="p1@example.com"))
            connection.commit()
        if stack == "postgres":
            assert version() == before


def test_a_lost_connection_rolls_back_as_before(host: Flask, stack: str) -> None:
    """PostgreSQL: the server ends the session's connection; the next statement fails, and
    the rollback and the session's end raise nothing (the app's teardown after such a
    request)."""
    if stack != "postgres":
        pytest.skip("pg_terminate_backend: PostgreSQL")
    User = user_model()
    with host.app_context():
        person = session().scalar(select(User).where(User.email == "p1@example.com"))
        person.username = "lost"
        session().flush()
        backend = session().scalar(text("SELECT pg_backend_pid()"))
        with Session(get_state().db.engine) as other:
            other.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": backend})
        with pytest.raises(OperationalError):
            session().execute(text("SELECT 1"))
        session().rollback()
        session().remove()
        assert numbers(Query(Compare("user_name", Op.EQ, "lost"))) == ([], 0)
