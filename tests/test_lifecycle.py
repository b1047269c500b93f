"""The run lifecycle on both stacks: one open run, the sync window on a simulated clock, reject
reasons, reverting applied syncs (compared by directory snapshots) and retention."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import time_machine
from flask import Flask
from sqlalchemy import func, select

from example_app.models import Team, User, db
from flask_csvdirectory import (
    RevertUnavailable,
    RunInProgress,
    WindowClosed,
    runs,
)
from flask_csvdirectory.extension import get_state
from flask_csvdirectory.models import Channel, RunStatus, StoredFile, SyncRun

from .conftest import ADMIN
from .factories import admin_row, employee, employees_csv, stored_role, users_csv
from .test_worker import rq_app  # noqa: F401 (fixture)

pytestmark = pytest.mark.lifecycle

ORG = "default"
#: The simulated clock starts at a moment with a fraction of a second, so rounding shows.
START = datetime(2026, 1, 5, 8, 0, 0, 250_000, tzinfo=UTC)
FAST = {
    "CSVDIRECTORY_MIN_SYNC_INTERVAL": timedelta(0),
    "CSVDIRECTORY_DEFAULT_APPROVAL_THRESHOLD": 10_000,
}


@pytest.fixture
def clock() -> Iterator[Any]:
    """A simulated clock (frozen; tests move it)."""
    with time_machine.travel(START, tick=False) as traveller:
        yield traveller


def upload(users: bytes, employees: bytes, **kwargs: Any) -> SyncRun:
    return runs.start_run(
        ORG,
        runs.Upload("Users.csv", users),
        runs.Upload("Employees.csv", employees),
        ADMIN,
        **kwargs,
    )


def fresh(run: SyncRun | str) -> SyncRun:
    db.session.expire_all()
    return db.session.get(SyncRun, run if isinstance(run, str) else run.id)


def settle(run: SyncRun) -> SyncRun:
    """The run once applied: approved by the admin when it waits."""
    run = fresh(run)
    if run.is_waiting:
        runs.approve(ORG, run.id, ADMIN)
        run = fresh(run)
    assert run.is_applied, (run.status_label, run.error_reason)
    return run


def sync(users: bytes, employees: bytes) -> SyncRun:
    return settle(upload(users, employees))


def revert(run: SyncRun) -> SyncRun:
    return settle(runs.start_revert(ORG, run.id, ADMIN))


def ceil_second(moment: datetime) -> datetime:
    whole = moment.replace(microsecond=0)
    return whole + timedelta(seconds=1) if moment.microsecond else whole


def directory() -> dict[str, Any]:
    """A snapshot of the directory through the adapter: people and access by person key,
    team names; plus the host's own role columns (what the adapter maps)."""
    db.session.expire_all()
    snapshot = get_state().adapter.snapshot(ORG)
    users = {str(u.id): u for u in db.session.scalars(select(User))}
    return {
        "people": {
            p.key: (
                p.email,
                p.first_name,
                p.last_name,
                p.title,
                p.team,
                p.active,
                p.external_id,
                dict(p.extra),
            )
            for p in snapshot.people
        },
        "access": {a.person_key: (a.role.value, tuple(a.teams)) for a in snapshot.access},
        "roles": {
            key: (u.role, u.sees_all_teams, sorted(t.name for t in u.scoped_teams))
            for key, u in users.items()
        },
        "teams": {t.name for t in snapshot.teams},
    }


def assert_restored(
    before: dict[str, Any], now: dict[str, Any], *, changed_since: set[str] = frozenset()
) -> None:
    """Everyone who existed before is exactly as before, but the people changed since."""
    for key, person in before["people"].items():
        if key not in changed_since:
            assert now["people"][key] == person, person[0]
            assert now["roles"][key] == before["roles"][key], person[0]
            assert now["access"].get(key) == before["access"].get(key), person[0]
    assert before["teams"] <= now["teams"]


def key_of(email: str) -> str:
    return str(db.session.scalar(select(User.id).where(User.email == email)))


# -- timelines (simulated clock) -------------------------------------------------------------


@pytest.mark.settings(CSVDIRECTORY_DEFAULT_APPROVAL_THRESHOLD=1)
def test_window_counts_from_when_a_sync_was_applied(app: Flask, stack: str, clock: Any) -> None:
    """Uploaded, waiting 11 hours, approved: the next sync waits 12 hours from the approval."""
    first = upload(users_csv(), employees_csv([employee(n) for n in range(3)]))
    assert fresh(first).status == RunStatus.WAITING.value
    clock.shift(timedelta(hours=11))
    runs.approve(ORG, first.id, ADMIN)
    first = fresh(first)
    assert first.applied_at == START + timedelta(hours=11)

    clock.shift(timedelta(hours=1, minutes=1))  # 12 h 01 min after the first upload
    with pytest.raises(WindowClosed) as refused:
        upload(users_csv(), employees_csv([employee(1)]))
    # 19:00:00.25 + 12 h, rounded up (never down) to the second
    reopen = datetime(2026, 1, 6, 7, 0, 1, tzinfo=UTC)
    assert refused.value.opens_at == reopen
    assert "uploads reopen at 2026-01-06 07:00:01 UTC" in refused.value.description
    assert runs.window_opens_at(ORG) == reopen

    clock.move_to(reopen - timedelta(milliseconds=500))  # past the exact instant, not the second
    with pytest.raises(WindowClosed):
        upload(users_csv(), employees_csv([employee(1)]))
    clock.move_to(reopen)
    assert runs.window_opens_at(ORG) is None
    assert fresh(upload(users_csv(), employees_csv([employee(1)]))).status in (
        RunStatus.WAITING.value,
        RunStatus.AUTO_APPROVED.value,
    )


@pytest.mark.settings(CSVDIRECTORY_DEFAULT_APPROVAL_THRESHOLD=1)
def test_a_waiting_run_blocks_uploads_however_old(app: Flask, stack: str, clock: Any) -> None:
    waiting = upload(users_csv(), employees_csv([employee(n) for n in range(3)]))
    clock.shift(timedelta(hours=12, minutes=1))
    with pytest.raises(RunInProgress) as refused:
        upload(users_csv(), employees_csv([employee(n) for n in range(4)]))
    message = refused.value.description
    assert waiting.id in message and "Waiting for Approval" in message
    assert "approve or reject it" in message
    assert (refused.value.run_id, refused.value.code) == (waiting.id, 409)
    assert runs.open_run(ORG).id == waiting.id
    assert db.session.scalar(select(func.count()).select_from(SyncRun)) == 1

    runs.approve(ORG, waiting.id, ADMIN)
    applied_at = fresh(waiting).applied_at
    assert applied_at == START + timedelta(hours=12, minutes=1)
    assert runs.open_run(ORG) is None
    clock.shift(timedelta(hours=1))
    with pytest.raises(WindowClosed) as closed:
        upload(users_csv(), employees_csv([employee(n) for n in range(4)]))
    assert closed.value.opens_at == ceil_second(applied_at + timedelta(hours=12))


@pytest.mark.settings(CSVDIRECTORY_DEFAULT_APPROVAL_THRESHOLD=1)
def test_rejected_and_failed_runs_synchronize_nothing_and_do_not_count(
    app: Flask, stack: str, clock: Any
) -> None:
    before = directory()
    bad = upload(users_csv(), employees_csv([employee(n) for n in range(3)]))
    clock.shift(timedelta(minutes=5))
    runs.reject(ORG, bad.id, ADMIN, reason="  Wrong export: Support is missing  ")
    bad = fresh(bad)
    assert bad.status_label == "Rejected by Ada Admin"
    assert bad.reject_reason == "Wrong export: Support is missing"
    assert runs.window_opens_at(ORG) is None and runs.open_run(ORG) is None
    assert directory() == before

    clock.shift(timedelta(minutes=1))
    broken = fresh(upload(users_csv(), b"email\nbroken"))
    assert broken.status == RunStatus.ERROR.value
    assert runs.window_opens_at(ORG) is None

    clock.shift(timedelta(minutes=1))
    corrected = upload(
        users_csv(),
        employees_csv([employee(n, team="Support" if n else "Sales") for n in range(3)]),
    )
    corrected = settle(corrected)
    assert corrected.applied_at == START + timedelta(minutes=7)
    clock.shift(timedelta(hours=11, minutes=59, seconds=59))
    with pytest.raises(WindowClosed):
        upload(users_csv(), employees_csv([employee(1)]))
    clock.shift(timedelta(seconds=1))
    assert runs.window_opens_at(ORG) == ceil_second(corrected.applied_at + timedelta(hours=12))
    clock.shift(timedelta(seconds=1))
    assert runs.window_opens_at(ORG) is None


def test_a_revert_is_exempt_from_the_window_and_does_not_restart_it(
    app: Flask, stack: str, clock: Any
) -> None:
    first = sync(users_csv(), employees_csv([employee(1), employee(2)]))
    clock.shift(timedelta(hours=1))
    with pytest.raises(WindowClosed):
        upload(users_csv(), employees_csv([employee(1)]))
    undo = revert(first)
    assert undo.channel == Channel.REVERT.value and undo.applied_at == START + timedelta(hours=1)
    opens_at = runs.window_opens_at(ORG)
    assert opens_at == ceil_second(first.applied_at + timedelta(hours=12))
    clock.move_to(opens_at)
    assert fresh(upload(users_csv(), employees_csv([employee(1)]))).is_applied


@pytest.mark.settings(CSVDIRECTORY_DEFAULT_APPROVAL_THRESHOLD=1)
def test_a_waiting_revert_blocks_uploads_and_an_open_run_blocks_reverts(
    app: Flask, stack: str
) -> None:
    first = sync(users_csv(), employees_csv([employee(1), employee(2)]))
    undo = runs.start_revert(ORG, first.id, ADMIN)
    assert fresh(undo).is_waiting
    with pytest.raises(RunInProgress, match=f"Revert run {undo.id}"):
        upload(users_csv(), employees_csv([employee(1)]))
    with pytest.raises(RunInProgress, match=f"Revert run {undo.id}"):
        runs.start_revert(ORG, first.id, ADMIN)
    assert "in progress" in runs.revert_unavailable_reason(fresh(first))
    runs.reject(ORG, undo.id, ADMIN, reason="not now")
    # a rejected revert leaves the sync revertible
    assert runs.revert_unavailable_reason(fresh(first)) is None


# -- one open run under concurrent starts ----------------------------------------------------


def _race(app: Flask, attempts: list[Any]) -> list[tuple[str, str]]:
    outcomes: list[tuple[str, str]] = []
    barrier = threading.Barrier(len(attempts))

    def attempt(start: Any) -> None:
        with app.app_context():
            barrier.wait()
            try:
                outcomes.append(("run", start().id))
            except RunInProgress as exc:
                outcomes.append(("refused", exc.run_id))
            finally:
                db.session.remove()

    threads = [threading.Thread(target=attempt, args=(start,)) for start in attempts]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return outcomes


@pytest.mark.settings(CSVDIRECTORY_MIN_SYNC_INTERVAL=timedelta(0))
def test_one_open_run_under_concurrent_uploads(app: Flask, stack: str) -> None:
    def start() -> SyncRun:
        return upload(users_csv(), employees_csv([employee(1)]), enqueue=False)

    outcomes = _race(app, [start] * 6)
    started = [run_id for outcome, run_id in outcomes if outcome == "run"]
    assert len(outcomes) == 6 and len(started) == 1
    # every refusal names the run that got in
    assert {run_id for outcome, run_id in outcomes if outcome == "refused"} == set(started)
    assert db.session.scalar(select(func.count()).select_from(SyncRun)) == 1


@pytest.mark.settings(**FAST)
def test_one_open_run_when_a_revert_and_an_upload_race(app: Flask, stack: str) -> None:
    first = sync(users_csv(), employees_csv([employee(1)]))

    def start_upload() -> SyncRun:
        return upload(users_csv(), employees_csv([employee(2)]), enqueue=False)

    def start_revert() -> SyncRun:
        return runs.start_revert(ORG, first.id, ADMIN, enqueue=False)

    outcomes = _race(app, [start_upload, start_revert, start_upload, start_revert])
    started = [run_id for outcome, run_id in outcomes if outcome == "run"]
    assert len(started) == 1, outcomes
    open_runs = db.session.scalar(
        select(func.count()).select_from(SyncRun).where(SyncRun.finished_at.is_(None))
    )
    assert open_runs == 1


# -- reverts ---------------------------------------------------------------------------------


@pytest.mark.settings(**FAST)
def test_revert_of_a_first_import(app: Flask, stack: str) -> None:
    before = directory()
    first = sync(
        users_csv(
            [
                admin_row(),
                {
                    "email": "person1@example.com",
                    "name": "P One",
                    "role": "Manager",
                    "teams": "Sales;Support",
                },
            ]
        ),
        employees_csv([employee(n, team="Support" if n % 2 else "Sales") for n in range(6)]),
    )
    assert first.change_counts["employee_created"] == 6
    # the first import also took the seeded manager's access and deactivated them
    assert first.change_counts["employee_deactivated"] == 1
    assert first.change_counts["access_revoked"] == 1

    # the guards see a revert like any run (test_safeguards): a hold is approved here
    undo = revert(first)
    assert undo.status in (RunStatus.AUTO_APPROVED.value, RunStatus.APPROVED.value)
    assert (undo.channel, undo.reverts_run_id) == ("revert", first.id)
    assert fresh(first).reverted_by_run_id == undo.id
    assert undo.conflict_count == 0 and runs.load_conflicts(undo) == []
    now = directory()
    assert_restored(before, now)
    created = set(now["people"]) - set(before["people"])
    assert len(created) == 6
    for key in created:  # the host owns deletion: created people are deactivated
        assert now["people"][key][5] is False and key not in now["access"]
    assert now["teams"] - before["teams"] == {"Sales", "Support"}  # kept (documented)
    manager = now["people"][key_of("manager@example.com")]
    assert manager[5] is True and now["access"][key_of("manager@example.com")] == (
        "Manager",
        ("Headquarters",),
    )


@pytest.mark.settings(
    CSVDIRECTORY_MIN_SYNC_INTERVAL=timedelta(0), CSVDIRECTORY_DEFAULT_APPROVAL_THRESHOLD=10
)
def test_revert_of_a_transfer_heavy_run_is_approved_like_any_run(app: Flask, stack: str) -> None:
    teams = ["Sales", "Support", "Ops", "Research"]
    sync(users_csv(), employees_csv([employee(n, team=teams[n % 4]) for n in range(40)]))
    before = directory()
    rows = [employee(n, team=teams[(n + 1) % 4] if n < 30 else teams[n % 4]) for n in range(40)]
    rows[0]["team"] = "Legal"  # a new team
    rows[1]["title"] = "Lead"
    rows[2]["email"] = "renamed2@example.com"  # matched by employee_id
    transfers = sync(users_csv(), employees_csv(rows))
    assert transfers.change_counts["employee_moved"] == 30
    assert transfers.status == RunStatus.APPROVED.value  # it needed approval

    undo = runs.start_revert(ORG, transfers.id, ADMIN)
    undo = fresh(undo)
    assert undo.status == RunStatus.WAITING.value  # 32 changes > threshold 10: waits
    assert undo.change_counts["employee_moved"] == 30
    assert undo.change_counts["employee_updated"] == 2
    assert directory()["people"] != before["people"]  # nothing applied while waiting
    runs.approve(ORG, undo.id, ADMIN)
    undo = fresh(undo)
    assert undo.status_label == "Approved by Ada Admin"
    now = directory()
    assert_restored(before, now)
    assert set(now["people"]) == set(before["people"])
    assert now["teams"] - before["teams"] == {"Legal"}


@pytest.mark.settings(**FAST)
def test_revert_of_a_run_with_access_changes(app: Flask, stack: str) -> None:
    employees = employees_csv([employee(n, team="Support" if n % 2 else "Sales") for n in range(6)])
    sync(
        users_csv(
            [
                admin_row(),
                {"email": "person1@example.com", "role": "Manager", "teams": "Sales"},
                {"email": "person2@example.com", "role": "Manager", "teams": "Support"},
                {"email": "person3@example.com", "role": "Manager", "teams": "Sales;Support"},
            ]
        ),
        employees,
    )
    before = directory()
    access = sync(
        users_csv(
            [
                admin_row(),
                {"email": "person1@example.com", "role": "Admin", "teams": "*"},  # promoted
                {"email": "person2@example.com", "role": "Manager", "teams": "Sales;Support"},
                {"email": "person4@example.com", "role": "Manager", "teams": "Sales"},  # granted
                {
                    "email": "auditor@example.com",
                    "name": "Aud Itor",
                    "role": "Manager",
                    "teams": "Sales",
                },  # a dashboard-only account is created
            ]
        ),  # person3 left out: access revoked
        employees,
    )
    counts = access.change_counts
    assert (counts["access_changed"], counts["access_granted"], counts["access_revoked"]) == (
        2,
        2,
        1,
    )
    undo = revert(access)
    assert undo.conflict_count == 0
    now = directory()
    assert_restored(before, now)
    auditor = key_of("auditor@example.com")
    assert auditor not in before["people"]
    assert now["people"][auditor][5] is False and auditor not in now["access"]
    assert now["roles"][key_of("person1@example.com")] == ("manager", False, ["Sales"])


@pytest.mark.settings(**FAST)
def test_revert_after_later_edits_lists_conflicts_and_restores_the_rest(
    app: Flask, stack: str
) -> None:
    sync(users_csv(), employees_csv([employee(n) for n in range(6)]))
    before = directory()
    second = sync(
        users_csv(),
        employees_csv(
            [
                employee(0),
                employee(1, title="Lead"),
                employee(2, title="Lead"),
                employee(3, team="Support"),
                employee(4, last_name="Renamed"),
            ]
        ),  # person5 left out: deactivated
    )
    # later edits, by hand in the host
    people = {u.email: u for u in db.session.scalars(select(User))}
    people["person1@example.com"].title = "Director"
    ops = Team(name="Ops")
    db.session.add(ops)
    people["person3@example.com"].team = ops
    people["person4@example.com"].last_name = "Edited"
    db.session.commit()

    undo = revert(second)
    conflicts = {(c.subject, c.field): c for c in runs.load_conflicts(undo)}
    assert set(conflicts) == {
        ("person1@example.com", "title"),
        ("person3@example.com", "team"),
        ("person4@example.com", "last_name"),
    }
    assert undo.conflict_count == 3
    title = conflicts[("person1@example.com", "title")]
    assert (title.wrote, title.now) == ("Lead", "Director")
    assert "changed since" in title.message
    assert (conflicts[("person3@example.com", "team")].now) == "Ops"
    stored = fresh(undo).file("conflicts")
    assert b"Director" not in stored.ciphertext and b"person1" not in stored.ciphertext

    now = directory()
    edited = {key_of(f"person{n}@example.com") for n in (1, 3, 4)}
    assert_restored(before, now, changed_since=edited)
    assert now["people"][key_of("person1@example.com")][3] == "Director"
    assert now["people"][key_of("person3@example.com")][4] == "Ops"
    assert now["people"][key_of("person4@example.com")][2] == "Edited"
    assert now["people"][key_of("person2@example.com")][3] == "Associate"  # restored
    assert now["people"][key_of("person5@example.com")][5] is True  # reactivated


@pytest.mark.settings(**FAST)
def test_revert_of_a_revert_redoes_the_sync(app: Flask, stack: str) -> None:
    sync(
        users_csv(
            [admin_row(), {"email": "person1@example.com", "role": "Manager", "teams": "Sales"}]
        ),
        employees_csv([employee(n) for n in range(4)]),
    )
    before = directory()
    second = sync(
        users_csv(
            [admin_row(), {"email": "person2@example.com", "role": "Manager", "teams": "Sales"}]
        ),
        employees_csv(
            [employee(0, team="Support"), employee(1, title="Lead"), employee(2), employee(5)]
        ),
    )
    after_second = directory()
    first_undo = revert(second)
    assert_restored(before, directory())
    with pytest.raises(RevertUnavailable, match=f"already reverted by run {first_undo.id}"):
        runs.start_revert(ORG, second.id, ADMIN)

    redo = revert(first_undo)
    assert (redo.reverts_run_id, fresh(first_undo).reverted_by_run_id) == (first_undo.id, redo.id)
    assert redo.conflict_count == 0
    assert directory() == after_second


@pytest.mark.settings(
    CSVDIRECTORY_MIN_SYNC_INTERVAL=timedelta(0),
    CSVDIRECTORY_DEFAULT_APPROVAL_THRESHOLD=10_000,
    CSVDIRECTORY_FILE_RETENTION=timedelta(days=30),
)
def test_revert_refused_after_the_retention_purge(app: Flask, stack: str, clock: Any) -> None:
    old = sync(users_csv(), employees_csv([employee(1), employee(2)]))
    clock.shift(timedelta(days=20))
    recent = sync(users_csv(), employees_csv([employee(1), employee(2), employee(3)]))
    clock.shift(timedelta(days=11))  # old finished 31 days ago, recent 11

    result = app.test_cli_runner().invoke(args=["csvdirectory", "purge"])
    assert result.exit_code == 0, result.output
    # both files, the change set (its index, one page, its search text) and applied record
    assert "Purged 6 stored file(s)" in result.output
    purged = db.session.scalars(select(StoredFile).where(StoredFile.run_id == old.id)).all()
    assert {stored_role(f.role) for f in purged} == {"users", "employees", "changeset", "applied",
                                        "cs.00000", "cs.s0000"}
    assert all(f.ciphertext is None and f.purged_at is not None for f in purged)

    with pytest.raises(RevertUnavailable) as refused:
        runs.start_revert(ORG, old.id, ADMIN)
    message = refused.value.description
    assert "purged on 2026-02-05" in message and "retention period (30 days)" in message
    assert runs.revert_unavailable_reason(fresh(old)) == message
    # the recent sync keeps its record and can be reverted
    assert revert(recent).is_applied


@pytest.mark.settings(
    CSVDIRECTORY_MIN_SYNC_INTERVAL=timedelta(0), CSVDIRECTORY_DEFAULT_APPROVAL_THRESHOLD=1
)
def test_purge_keeps_the_record_a_waiting_revert_needs(app: Flask, stack: str) -> None:
    first = sync(users_csv(), employees_csv([employee(1), employee(2)]))
    undo = runs.start_revert(ORG, first.id, ADMIN)
    assert fresh(undo).is_waiting
    result = app.test_cli_runner().invoke(args=["csvdirectory", "purge", "--older-than-days", "0"])
    assert result.exit_code == 0, result.output
    assert fresh(first).file("applied").ciphertext is not None
    runs.approve(ORG, undo.id, ADMIN)
    assert fresh(undo).is_applied


@pytest.mark.realstack
def test_a_revert_runs_on_rq_workers_like_any_run(rq_app: Flask) -> None:  # noqa: F811
    """The revert run takes the normal jobs: processed, waiting (threshold 3), approved and
    applied by separate RQ worker processes."""
    from flask_csvdirectory.extension import get_state as state_of

    from .test_worker import BIN, run_worker, start

    with rq_app.app_context():
        before = directory()
        sync_id = start(people=5).id
        run_worker([str(BIN / "flask"), "csvdirectory", "worker", "--burst"])
        runs.approve(ORG, sync_id, ADMIN)
        run_worker([str(BIN / "flask"), "csvdirectory", "worker", "--burst"])
        assert fresh(sync_id).is_applied, fresh(sync_id).error_reason

        undo_id = runs.start_revert(ORG, sync_id, ADMIN).id
        assert state_of().runner.queue().job_ids == [f"csvdirectory-process-{undo_id}"]
        run_worker([str(BIN / "flask"), "csvdirectory", "worker", "--burst"])
        assert fresh(undo_id).status == RunStatus.WAITING.value, fresh(undo_id).error_reason
        runs.approve(ORG, undo_id, ADMIN)
        run_worker([str(BIN / "flask"), "csvdirectory", "worker", "--burst"])
        undo = fresh(undo_id)
        assert undo.status_label == "Approved by Ada Admin", undo.error_reason
        assert undo.worker and undo.worker.rsplit(":", 1)[1] != str(os.getpid())
        assert_restored(before, directory())


# -- the inverse plan, pure (no stack) -------------------------------------------------------


def test_a_revert_never_leaves_the_organization_without_an_active_admin() -> None:
    """The sync made a new admin and took the old one's access; since then the old admin was
    deactivated by hand. Undoing the sync would leave nobody: those changes are conflicts."""
    from flask_csvdirectory.planner import plan
    from flask_csvdirectory.records import AccessRecord, PersonRecord, Role
    from flask_csvdirectory.revert import plan_revert
    from flask_csvdirectory.rows import EmployeeRow, UserRow
    from flask_csvdirectory.testing import InMemoryAdapter

    adapter = InMemoryAdapter()
    adapter.seed(
        "o",
        teams=["Sales"],
        people=[PersonRecord("1", "old@example.com", "Old", "Admin", team="Sales")],
        access=[AccessRecord("old@example.com", Role.ADMIN, ("*",), person_key="1")],
    )
    changeset = plan(
        [UserRow(2, "new@example.com", Role.ADMIN, ("*",), "New Admin")],
        [
            EmployeeRow(2, "old@example.com", "Sales", "Old", "Admin"),
            EmployeeRow(3, "new@example.com", "Sales", "New", "Admin"),
        ],
        adapter.snapshot("o"),
    )
    assert {c.kind.value for c in changeset} == {
        "employee_created",
        "access_granted",
        "access_revoked",
    }
    adapter.apply("o", changeset)
    adapter.update_person("o", "1", {"active": False})  # later, by hand

    revert = plan_revert(changeset, adapter.snapshot("o"))
    kinds = {(c.kind.value, c.subject) for c in revert.changeset}
    # the old admin's access comes back, but they are inactive: the new admin stays
    assert kinds == {("access_granted", "old@example.com")}
    assert {(c.kind.value, c.subject) for c in revert.conflicts} == {
        ("employee_created", "new@example.com"),
        ("access_granted", "new@example.com"),
    }
    assert all("without an active admin" in c.message for c in revert.conflicts)


@pytest.mark.settings(**FAST)
def test_a_job_that_stops_after_the_commit_ends_applied_and_revertible(
    app: Flask, stack: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The SQLAlchemy adapter commits the run's outcome, the applied record, ``applied_at`` and
    the history entry with the directory's changes (issue 8: one transaction); if the job dies
    right after, the run is already applied and revertible, and the reaper has nothing to do."""
    run = upload(users_csv(), employees_csv([employee(1)]), enqueue=False)
    adapter = get_state().adapter
    real_apply = adapter.apply

    def apply_and_die(*args: Any, **kwargs: Any) -> None:
        real_apply(*args, **kwargs)  # commits the directory with the run's outcome
        raise KeyboardInterrupt  # the process is gone right after the commit

    monkeypatch.setattr(adapter, "apply", apply_and_die)
    with pytest.raises(KeyboardInterrupt):
        runs.process(run.id)
    db.session.rollback()
    done = fresh(run)
    assert done.finished_at is not None and done.applied_at is not None
    assert done.status == RunStatus.AUTO_APPROVED.value
    assert done.file("applied") is not None
    assert runs.reap_stuck_runs(ORG) == 0
    assert runs.revert_unavailable_reason(done) is None
    from flask_csvdirectory.models import HistoryEntry

    entries = db.session.scalars(select(HistoryEntry).where(HistoryEntry.run_id == run.id)).all()
    assert [e.action for e in entries] == ["applied"]  # the history has the applied run too
