"""Change sets stored for paging (issue 14): index, encrypted pages, search text, fallback.

Every question a stored change set answers (a review page, an API page, a kind filter, a search,
the counts and the summary, the whole set) is compared with what the in-memory functions give
(:func:`review.select`, :meth:`ChangeSet.of_kind`, :func:`review.summarize`), on a change set
spread over many small pages.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select

from example_app.models import db
from flask_csvdirectory import changestore, review, runs
from flask_csvdirectory.changes import Change, ChangeKind, ChangeSet, Fingerprinter
from flask_csvdirectory.cli import _print_plan
from flask_csvdirectory.errors import PlanReplaced
from flask_csvdirectory.extension import get_state
from flask_csvdirectory.models import RunStatus, StoredFile, SyncRun, utcnow
from flask_csvdirectory.records import AccessRecord, DirectorySnapshot, PersonRecord, Role

from .factories import employee, employees_csv, stored_role, users_csv

ORG = "default"
PAGES = "/settings/integrations/csv-import"
KINDS: list[str | None] = [None, review.ACCESS_REDUCED, *(kind.value for kind in ChangeKind)]
QUERIES = ["", "sales", "SUPPORT", "p1", "ada", "example.com", "zzz-nothing", "team 3", "\n"]


def snapshot() -> DirectorySnapshot:
    people = [
        PersonRecord(str(n), f"p{n}@example.com", f"First{n}", f"Last{n}", "Clerk",
                     "Sales" if n % 2 else "Ops")
        for n in range(40)
    ]
    people.append(PersonRecord("99", "ada@example.com", "Ada", "Lovelace", "Boss", "Ops"))
    access = [
        AccessRecord("ada@example.com", Role.ADMIN),
        *(AccessRecord(f"p{n}@example.com", Role.MANAGER, ("Ops", "Sales")) for n in range(8)),
    ]
    return DirectorySnapshot.build(people, [], access)


def plan() -> ChangeSet:
    """Every kind, access changes reduced and widened interleaved (many small segments)."""
    changes: list[Change] = [
        Change(ChangeKind.TEAM_CREATED, "Support", None, None, {"name": "Support"}),
        Change(ChangeKind.TEAM_CREATED, "Team 3", None, None, {"name": "Team 3"}),
    ]
    for n in range(10):
        changes.append(Change(ChangeKind.EMPLOYEE_CREATED, f"new{n}@example.com", None, None,
                              {"email": f"new{n}@example.com", "first_name": "New",
                               "last_name": str(n), "title": "", "team": "Support",
                               "external_id": None, "extra": {}}))
    for n in range(10, 20):
        changes.append(Change(ChangeKind.EMPLOYEE_MOVED, f"p{n}@example.com", str(n),
                              {"team": "Sales" if n % 2 else "Ops"}, {"team": "Team 3"}))
    for n in range(20, 26):
        changes.append(Change(ChangeKind.EMPLOYEE_UPDATED, f"p{n}@example.com", str(n),
                              {"title": "Clerk"}, {"title": "Lead"}))
    changes.append(Change(ChangeKind.EMPLOYEE_UPDATED, "p26@example.com", "26",
                          {"email": "p26@example.com"}, {"email": "renamed26@example.com"}))
    for n in range(26, 34):
        changes.append(Change(ChangeKind.EMPLOYEE_DEACTIVATED, f"p{n}@example.com", str(n),
                              {"active": True}, {"active": False}))
    for n in range(8):  # reduced (fewer teams) and widened (more) alternate
        after = ["Ops"] if n % 2 else ["Ops", "Sales", "Support"]
        changes.append(Change(ChangeKind.ACCESS_CHANGED, f"p{n}@example.com", str(n),
                              {"role": "Manager", "teams": ["Ops", "Sales"]},
                              {"role": "Manager", "teams": after}))
    changes.append(Change(ChangeKind.ACCESS_CHANGED, "ada@example.com", "99",
                          {"role": "Admin", "teams": ["*"]}, {"role": "Manager", "teams": ["Ops"]}))
    changes.append(Change(ChangeKind.ACCESS_GRANTED, "p30@example.com", "30", None,
                          {"role": "Manager", "teams": ["Support"], "name": "First30 Last30"}))
    changes.append(Change(ChangeKind.ACCESS_REVOKED, "p7@example.com", "7",
                          {"role": "Manager", "teams": ["Ops", "Sales"]}))
    return ChangeSet.of(changes)


def new_run() -> SyncRun:
    run = SyncRun(org=ORG, channel="api", status=RunStatus.WAITING.value, started_at=utcnow())
    db.session.add(run)
    db.session.flush()
    return run


def record(changes: ChangeSet, snap: DirectorySnapshot) -> SyncRun:
    run = new_run()
    runs._record_plan(run, changes, snap)
    db.session.commit()
    return run


def record_legacy(changes: ChangeSet, snap: DirectorySnapshot) -> SyncRun:
    """A run stored the way runs were before paging: one blob and the people index."""
    store = get_state().store
    run = new_run()
    store.put(db.session, run, "changeset", "changes.json.z", changes.to_bytes())
    people = review.describe_people(changes, snap)
    store.put(db.session, run, "people", "people.json.z", people.to_bytes())
    run.change_count = changes.count
    run.change_counts = changes.counts()
    run.structural_change_count = changes.structural_count
    run.fingerprint = changes.fingerprint()
    db.session.commit()
    return run


def opened(run: SyncRun) -> changestore.StoredChanges:
    db.session.expire_all()
    stored = runs.stored_changes(db.session.get(SyncRun, run.id))
    assert stored is not None
    return stored


def same(changes: list[Change]) -> list[Any]:
    return [change.to_row() for change in changes]


@pytest.fixture
def small_pages(monkeypatch: pytest.MonkeyPatch) -> int:
    """Pages of 4 changes: a review page spans several, segments cross page boundaries; the
    search text in chunks of 5 lines."""
    monkeypatch.setattr(changestore, "PAGE_SIZE", 4)
    monkeypatch.setattr(changestore, "SEARCH_CHUNK", 5)
    return 4


@pytest.mark.parametrize("legacy", [False, True], ids=["paged", "old-format"])
def test_every_page_filter_and_search_matches_the_in_memory_review(
    app: Flask, small_pages: int, legacy: bool
) -> None:
    changes, snap = plan(), snapshot()
    people = review.describe_people(changes, snap)
    run = (record_legacy if legacy else record)(changes, snap)
    stored = opened(run)
    assert isinstance(stored, changestore.LegacyChanges if legacy else changestore.PagedChanges)
    for kind in KINDS:
        for query in QUERIES:
            expected = review.select(changes, people, kind=kind, query=query)
            for per_page in (1, 5, 50):
                shown: list[Change] = []
                for offset in range(0, len(expected) + per_page, per_page):
                    page = stored.review_page(kind=kind, query=query, offset=offset,
                                              limit=per_page)
                    assert page.total == len(expected), (kind, query)
                    assert len(page.changes) <= per_page
                    for change in page.changes:  # who each shown change touches
                        assert page.people.of(change) == people.of(change)
                    shown += page.changes
                assert same(shown) == same(expected), (kind, query, per_page)
            # past the last page: nothing, and the same total
            beyond = stored.review_page(kind=kind, query=query, offset=len(expected) + 7)
            assert beyond.changes == [] and beyond.total == len(expected)


@pytest.mark.parametrize("legacy", [False, True], ids=["paged", "old-format"])
def test_api_pages_are_in_apply_order_by_kind(
    app: Flask, small_pages: int, legacy: bool
) -> None:
    changes, snap = plan(), snapshot()
    stored = opened((record_legacy if legacy else record)(changes, snap))
    for kind in [None, *ChangeKind]:
        expected = changes.of_kind(kind) if kind else changes.changes
        for per_page in (1, 3, 100):
            shown: list[Change] = []
            for offset in range(0, len(expected) + per_page, per_page):
                total, page = stored.apply_page(kind=kind, offset=offset, limit=per_page)
                assert total == len(expected)
                shown += page
            assert same(shown) == same(expected)
        assert stored.apply_page(kind=kind, offset=10_000, limit=5) == (len(expected), [])
    assert same(stored.head(7)) == same(changes.changes[:7])
    assert same(stored.head(1000)) == same(changes.changes)


@pytest.mark.parametrize("legacy", [False, True], ids=["paged", "old-format"])
def test_counts_summary_and_the_whole_set(app: Flask, small_pages: int, legacy: bool) -> None:
    changes, snap = plan(), snapshot()
    people = review.describe_people(changes, snap)
    run = (record_legacy if legacy else record)(changes, snap)
    stored = opened(run)
    assert stored.counts() == changes.counts()
    assert stored.count == changes.count
    assert stored.structural_count == changes.structural_count
    assert stored.summary() == review.summarize(changes, people)
    assert [who.email for who in stored.summary().admins_affected] == ["ada@example.com"]
    assert same(stored.changeset().changes) == same(changes.changes)
    assert stored.people().by_email == people.by_email
    db.session.expire_all()
    fresh = db.session.get(SyncRun, run.id)
    assert same(runs.load_changeset(fresh).changes) == same(changes.changes)
    assert runs.load_people(fresh).by_email == people.by_email
    whole, whole_people = runs.load_review(fresh)
    assert same(whole.changes) == same(changes.changes)
    assert whole_people.by_email == people.by_email


def test_the_fingerprint_is_unchanged_by_paging(app: Flask, small_pages: int) -> None:
    changes = plan()
    canonical = changes.to_json()
    expected = hashlib.sha256(canonical).hexdigest()
    assert changes.fingerprint() == changes.fingerprint(canonical) == expected
    for size in (1, 4, 5, 1000):  # the chunked hash equals the hash of the whole
        hasher = Fingerprinter()
        for _, chunk in changes.canonical_chunks(size):
            hasher.add(chunk)
        assert hasher.hexdigest() == expected
        assert b"[" + b",".join(c[1:-1] for _, c in changes.canonical_chunks(size)) + b"]" \
            == canonical
    assert ChangeSet().fingerprint() == hashlib.sha256(b"[]").hexdigest()
    run = record(changes, snapshot())
    assert run.fingerprint == expected


def test_pages_index_and_search_are_encrypted_and_sized(app: Flask, small_pages: int) -> None:
    changes = plan()
    run = record(changes, snapshot())
    files = {f.role: f for f in db.session.scalars(
        select(StoredFile).where(StoredFile.run_id == run.id))}
    pages = -(-changes.count // small_pages)
    chunks = -(-changes.count // 5)
    assert {stored_role(role) for role in files} == {
        "changeset", *(changestore.search_role("cs.", n) for n in range(chunks)),
        *(changestore.page_role("cs.", n) for n in range(pages))}
    store = get_state().store
    for role, stored in files.items():
        assert stored.ciphertext is not None
        for secret in (b"example.com", b"Lovelace", b"Support", b"p26@"):
            assert secret not in stored.ciphertext, role
        plaintext = store.decrypt(stored.ciphertext)
        assert stored.size == len(plaintext)
        assert stored.sha256 == hashlib.sha256(plaintext).hexdigest()
    index = json.loads(__import__("zlib").decompress(
        store.decrypt(files["changeset"].ciphertext)[len(changestore.MAGIC):]))
    assert index["pages"] == pages and index["count"] == changes.count
    assert index["counts"] == changes.counts()
    # the index lists kinds by position ranges, never the changes themselves
    assert b"p1@" not in json.dumps(index["segments"]).encode()


def test_a_new_plan_replaces_every_page(app: Flask, small_pages: int) -> None:
    changes, snap = plan(), snapshot()
    run = record(changes, snap)
    first = set(db.session.scalars(select(StoredFile.role).where(StoredFile.run_id == run.id)))
    smaller = ChangeSet.of(changes.changes[:5])
    runs._record_plan(run, smaller, snap)
    db.session.commit()
    roles = set(db.session.scalars(select(StoredFile.role).where(StoredFile.run_id == run.id)))
    assert {stored_role(role) for role in roles} == {"changeset", "cs.s0000", "cs.00000",
                                                     "cs.00001"}
    assert roles & first == {"changeset"}  # the new plan's pages have new names
    assert same(opened(run).changeset().changes) == same(smaller.changes)
    # an old-format run planned again drops its people index: pages carry who is touched
    legacy = record_legacy(changes, snap)
    runs._record_plan(legacy, changes, snap)
    db.session.commit()
    roles = set(db.session.scalars(select(StoredFile.role)
                                   .where(StoredFile.run_id == legacy.id)))
    assert "people" not in roles
    assert isinstance(opened(legacy), changestore.PagedChanges)


def test_a_reader_of_a_replaced_plan_is_told_to_reload(app: Flask, small_pages: int) -> None:
    """A reader that read the index before a re-plan (an approval found the directory changed)
    never shows the new plan's pages under the old index: it is told the plan was replaced."""
    changes, snap = plan(), snapshot()
    run = record(changes, snap)
    reader = opened(run)
    assert len(reader.review_page(offset=0, limit=3).changes) == 3  # page 0 is now in memory
    replacement = ChangeSet.of(changes.changes[5:])
    runs._record_plan(run, replacement, snap)
    db.session.commit()
    with pytest.raises(PlanReplaced) as replaced:
        reader.apply_page(offset=changes.count - 2, limit=2)  # a page it has not read yet
    assert replaced.value.code == 409
    assert "reload" in replaced.value.description
    fresh_reader = opened(run)  # a new request sees the new plan whole
    assert same(fresh_reader.changeset().changes) == same(replacement.changes)


def test_a_page_reads_only_the_pages_it_shows(
    app: Flask, small_pages: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    changes = plan()
    stored = opened(record(changes, snapshot()))
    read: list[str] = []
    real = get_state().store.get_many

    def counting(session: Any, run_id: str, roles: Any) -> dict[str, bytes]:
        read.extend(roles)
        return real(session, run_id, roles)

    monkeypatch.setattr(get_state().store, "get_many", counting)
    total, shown = stored.apply_page(offset=8, limit=4)  # positions 8-11: page 2 only
    assert len(shown) == 4 and [stored_role(role) for role in read] == ["cs.00002"]
    read.clear()
    page = stored.review_page(offset=40, limit=5)  # three segments: moved, access widened
    assert len(page.changes) == 5 and len(read) == len(set(read)) <= 3
    assert not any(stored_role(role).startswith("cs.s") for role in read)
    read.clear()
    found = stored.review_page(query="support", offset=0, limit=3)
    chunks = [stored_role(role) for role in read if stored_role(role).startswith("cs.s")]
    assert chunks == [changestore.search_role("cs.", n) for n in range(-(-changes.count // 5))]
    assert len(read) - len(chunks) <= 3 and len(found.changes) == 3
    read.clear()
    total, last = stored.apply_page(kind=ChangeKind.ACCESS_REVOKED, offset=0, limit=10)
    assert total == 1 and len(read) == 1
    read.clear()
    assert stored.summary().total == changes.count and stored.counts() and read == []


def test_review_and_api_pages_of_a_paged_run(app: Flask, small_pages: int) -> None:
    """The dashboard run page and the API changes page read the pages (and still work for a
    run stored the old way)."""
    from example_app.models import User
    from flask_csvdirectory import tokens

    changes, snap = plan(), snapshot()
    paged, legacy = record(changes, snap), record_legacy(changes, snap)
    _token, secret = tokens.create_token(ORG, "t", "Ada Admin")
    assert db.session.scalar(select(User).where(User.email == "admin@example.com"))
    client = app.test_client()
    response = client.post("/login", data={"email": "admin@example.com", "password": "admin"})
    assert response.status_code == 302
    people = review.describe_people(changes, snap)
    expected = review.select(changes, people, kind=None, query="")
    for run in (paged, legacy):
        html = client.get(f"{PAGES}/runs/{run.id}").get_data(as_text=True)
        assert f"Showing 1–{changes.count} of {changes.count}" in html
        assert expected[0].subject in html
        html = client.get(f"{PAGES}/runs/{run.id}?page=999").get_data(as_text=True)
        assert f"of {changes.count} changes" in html  # clamped to the last page
        text = client.get(f"{PAGES}/runs/{run.id}?kind=employee_moved&q=p1").get_data(
            as_text=True
        )
        assert re.search(r"Showing 1–10 of 10 changes", text)
        api = client.get(
            f"/api/csv-directory/v1/imports/{run.id}/changes?kind=employee_moved&page=2"
            "&per_page=4", headers={"Authorization": f"Bearer {secret}"},
        )
        assert api.status_code == 200, api.text
        body = api.get_json()
        assert body["total"] == 10
        assert [item["subject"] for item in body["items"]] == [
            c.subject for c in changes.of_kind(ChangeKind.EMPLOYEE_MOVED)[4:8]
        ]
        assert body["counts"] == changes.counts()


def test_the_cli_prints_a_run_from_its_index_and_first_page(
    app: Flask, small_pages: int, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    changes = plan()
    run = record(changes, snapshot())

    def whole(*_: Any) -> Any:
        raise AssertionError("the whole change set was read")

    monkeypatch.setattr(changestore.PagedChanges, "iter_pages", whole)
    _print_plan(runs.stored_changes(run), 3)  # type: ignore[arg-type]
    out = capsys.readouterr().out
    assert f"{changes.count} change(s), {changes.structural_count} structural:" in out
    assert "Teams created: 2" in out
    assert out.count("  - ") == 3
    assert f"... and {changes.count - 3} more" in out


def test_an_auto_applied_cli_sync_prints_without_reading_the_whole_set(
    app: Flask, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    users_path, employees_path = tmp_path / "Users.csv", tmp_path / "Employees.csv"
    users_path.write_bytes(users_csv())
    employees_path.write_bytes(employees_csv([employee(n) for n in range(30)]))
    monkeypatch.setattr(changestore, "PAGE_SIZE", 4)
    wholes: list[int] = []
    real = changestore.PagedChanges.iter_pages

    def counting(self: changestore.PagedChanges) -> Any:
        wholes.append(1)
        return real(self)

    monkeypatch.setattr(changestore.PagedChanges, "iter_pages", counting)
    result = app.test_cli_runner().invoke(
        args=["csvdirectory", "sync", str(users_path), str(employees_path), "--show", "5"]
    )
    assert result.exit_code == 0, result.output
    assert "Auto-Approved" in result.output
    assert "Employees created: 30" in result.output
    assert result.output.count("\n  - ") == 5
    assert wholes == []  # applying used the plan in memory; the summary read one page


def test_an_old_run_without_a_people_index_still_reads(app: Flask, small_pages: int) -> None:
    """Runs planned before the people index (and before pages) show emails without names."""
    changes = plan()
    run = record_legacy(changes, snapshot())
    db.session.execute(
        StoredFile.__table__.delete().where(
            StoredFile.run_id == run.id, StoredFile.role == "people"
        )
    )
    db.session.commit()
    stored = opened(run)
    page = stored.review_page(kind=ChangeKind.EMPLOYEE_MOVED.value, offset=0, limit=3)
    assert page.total == 10 and len(page.changes) == 3
    who = page.people.of(page.changes[0])
    assert who is not None and who.email == page.changes[0].subject and who.name == ""
    assert same(stored.changeset().changes) == same(changes.changes)
