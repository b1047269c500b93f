"""The run state machine end to end through the example platform's real models."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from flask import Flask
from sqlalchemy import func, select

from example_app.models import Team, User, db
from flask_csvdirectory import (
    FileValidationError,
    IntegrationDisabled,
    MissingFile,
    RunInProgress,
    RunStateError,
    WindowClosed,
    run_applied,
    run_failed,
    run_rejected,
    run_waiting_for_approval,
    runs,
)
from flask_csvdirectory.extension import get_state
from flask_csvdirectory.models import RunStatus, StoredFile, SyncRun, utcnow

from .conftest import ADMIN
from .factories import admin_row, employee, employees_csv, stored_role, users_csv

ORG = "default"
APPROVER = runs.Actor(id="1", name="Ada Admin")


def upload(users: bytes, employees: bytes) -> SyncRun:
    return runs.start_run(
        ORG, runs.Upload("Users.csv", users), runs.Upload("Employees.csv", employees), ADMIN
    )


def people() -> dict[str, User]:
    return {u.email: u for u in db.session.scalars(select(User))}


def fresh(run: SyncRun) -> SyncRun:
    db.session.expire_all()
    return db.session.get(SyncRun, run.id)


def directory_state() -> list[tuple]:
    """Everything the import may touch, to compare before/after."""
    db.session.expire_all()
    rows = db.session.scalars(select(User).order_by(User.id)).all()
    teams = sorted(t.name for t in db.session.scalars(select(Team)))
    return [
        (
            u.email, u.employee_id, u.first_name, u.last_name, u.title,
            u.team.name if u.team else None, u.active, u.role, u.sees_all_teams,
            sorted(t.name for t in u.scoped_teams),
        )
        for u in rows
    ] + [tuple(teams)]


def test_small_upload_is_auto_approved_and_applied(app: Flask, stack: str) -> None:
    applied: list[SyncRun] = []
    run_applied.connect(lambda sender, run, changeset: applied.append(run), app, weak=False)
    run = upload(
        users_csv([admin_row(), {"email": "person1@example.com", "name": "P One",
                                 "role": "Manager", "teams": "Sales"}]),
        employees_csv([employee(1), employee(2, team="Support")]),
    )
    run = fresh(run)
    assert run.status_label == "Auto-Approved"
    assert run.users_rows == 2 and run.employees_rows == 2
    assert run.change_counts["employee_created"] == 2
    assert run.change_counts["team_created"] == 2
    assert run.change_counts["access_granted"] == 1
    assert run.finished_at is not None and run.timings["apply_seconds"] >= 0
    assert [r.id for r in applied] == [run.id]
    everyone = people()
    assert everyone["person1@example.com"].team.name == "Sales"
    assert everyone["person1@example.com"].role == "manager"
    assert [t.name for t in everyone["person1@example.com"].scoped_teams] == ["Sales"]
    assert everyone["person2@example.com"].team.name == "Support"
    # the seeded manager is not in Users.csv: access revoked; not in Employees.csv: deactivated
    assert everyone["manager@example.com"].role == "employee"
    assert everyone["manager@example.com"].active is False
    # the admin is only in Users.csv: kept active as a dashboard-only user
    assert everyone["admin@example.com"].active is True
    assert everyone["admin@example.com"].role == "admin"


@pytest.mark.settings(CSVDIRECTORY_DEFAULT_APPROVAL_THRESHOLD=2)
def test_large_upload_waits_then_approval_applies(app: Flask, stack: str) -> None:
    waiting: list[int] = []
    run_waiting_for_approval.connect(
        lambda sender, run, changeset: waiting.append(changeset.count), app, weak=False
    )
    before = directory_state()
    run = upload(users_csv(), employees_csv([employee(n) for n in range(5)]))
    run = fresh(run)
    assert run.status == RunStatus.WAITING.value
    assert run.status_label == "Waiting for Approval"
    assert directory_state() == before  # nothing applied while waiting
    changeset = runs.load_changeset(run)
    assert changeset.count == run.change_count == waiting[0]
    assert {c.subject for c in changeset.changes if c.kind == "employee_created"} == {
        f"person{n}@example.com" for n in range(5)
    }
    runs.approve(ORG, run.id, APPROVER)
    run = fresh(run)
    assert run.status_label == "Approved by Ada Admin"
    assert run.decided_by_name == "Ada Admin" and run.finished_at is not None
    assert len([p for p in people().values() if p.email.startswith("person")]) == 5
    with pytest.raises(RunStateError):
        runs.approve(ORG, run.id, APPROVER)


@pytest.mark.settings(CSVDIRECTORY_DEFAULT_APPROVAL_THRESHOLD=0)
def test_rejection_changes_nothing(app: Flask) -> None:
    rejected: list[str] = []
    run_rejected.connect(lambda sender, run: rejected.append(run.id), app, weak=False)
    before = directory_state()
    run = upload(users_csv(), employees_csv([employee(1)]))
    runs.reject(ORG, run.id, APPROVER)
    run = fresh(run)
    assert run.status_label == "Rejected by Ada Admin"
    assert rejected == [run.id]
    assert directory_state() == before
    with pytest.raises(RunStateError, match="Rejected by Ada Admin"):
        runs.approve(ORG, run.id, APPROVER)


def test_bad_file_ends_in_error_with_place_of_each_error(app: Flask, stack: str) -> None:
    failed: list[str] = []
    run_failed.connect(lambda sender, run, reason: failed.append(reason), app, weak=False)
    before = directory_state()
    bad = employees_csv([employee(1), employee(2, email="not-an-email"), employee(3, team="")])
    run = fresh(upload(users_csv(), bad))
    assert run.status == RunStatus.ERROR.value
    assert run.status_label == "Error while processing"
    assert "Employees.csv" in run.error_reason and "line 3" in run.error_reason
    errors = runs.row_errors(run)
    assert [(e.file, e.line, e.column) for e in errors] == [
        ("Employees.csv", 3, "email"),
        ("Employees.csv", 4, "team"),
    ]
    assert errors[0].value == "not-an-email"
    assert run.error_count == 2
    assert failed == [run.error_reason]
    assert directory_state() == before


def test_cross_file_error_unknown_scope_team(app: Flask) -> None:
    users = users_csv(
        [admin_row(), {"email": "m@example.com", "role": "Manager", "teams": "Nowhere"}]
    )
    run = fresh(upload(users, employees_csv([employee(1)])))
    assert run.status == RunStatus.ERROR.value
    [error] = runs.row_errors(run)
    assert (error.file, error.line, error.column, error.value) == (
        "Users.csv", 3, "teams", "Nowhere"
    )


def test_users_csv_must_keep_an_admin(app: Flask) -> None:
    users = users_csv([{"email": "m@example.com", "role": "Manager", "teams": "Sales"}])
    run = fresh(upload(users, employees_csv([employee(1)])))
    assert run.status == RunStatus.ERROR.value
    assert any("Admin" in e.message for e in runs.row_errors(run))


def test_both_files_are_required_and_nothing_starts(app: Flask) -> None:
    with pytest.raises(MissingFile, match="Employees.csv"):
        runs.start_run(ORG, runs.Upload("Users.csv", users_csv()), None, ADMIN)
    with pytest.raises(MissingFile, match="Users.csv"):
        runs.start_run(ORG, runs.Upload("Users.csv", b""), runs.Upload("E.csv", b"x"), ADMIN)
    assert db.session.scalar(select(func.count()).select_from(SyncRun)) == 0


def test_disabled_integration_refuses(app: Flask) -> None:
    runs.update_settings(ORG, ADMIN, enabled=False)
    with pytest.raises(IntegrationDisabled):
        upload(users_csv(), employees_csv([employee(1)]))


def test_twelve_hour_window_and_its_error_exception(app: Flask, stack: str) -> None:
    first = upload(users_csv(), employees_csv([employee(1)]))
    with pytest.raises(WindowClosed) as refused:
        upload(users_csv(), employees_csv([employee(1)]))
    applied_at = fresh(first).applied_at
    opens_at = applied_at + timedelta(hours=12)
    # rounded up to the whole second, never down
    assert refused.value.opens_at == opens_at.replace(microsecond=0) + timedelta(
        seconds=1 if opens_at.microsecond else 0
    )
    assert refused.value.code == 429
    assert f"{refused.value.opens_at:%Y-%m-%d %H:%M:%S} UTC" in str(refused.value)
    assert runs.window_opens_at(ORG) == refused.value.opens_at

    # thirteen hours later the window is open again
    fresh(first).applied_at = utcnow() - timedelta(hours=13)
    db.session.commit()
    assert runs.window_opens_at(ORG) is None
    failed = fresh(upload(users_csv(), b"email\nbroken"))
    assert failed.status == RunStatus.ERROR.value
    # right after an error a new run may start at once
    assert runs.window_opens_at(ORG) is None
    ok = fresh(upload(users_csv(), employees_csv([employee(1)])))
    assert ok.status == RunStatus.AUTO_APPROVED.value
    with pytest.raises(WindowClosed):
        upload(users_csv(), employees_csv([employee(1)]))


@pytest.mark.settings(CSVDIRECTORY_MIN_SYNC_INTERVAL=timedelta(0))
def test_same_files_twice_change_nothing_the_second_time(app: Flask, stack: str) -> None:
    files = (
        users_csv([admin_row(), {"email": "person1@example.com", "role": "Manager",
                                 "teams": "Sales;Support"}]),
        employees_csv([employee(1), employee(2, team="Support"), employee(3, title="")]),
    )
    first = fresh(upload(*files))
    assert first.change_count > 0
    after_first = directory_state()
    second = fresh(upload(*files))
    assert second.status == RunStatus.AUTO_APPROVED.value
    assert second.change_count == 0
    assert directory_state() == after_first


@pytest.mark.settings(
    CSVDIRECTORY_MIN_SYNC_INTERVAL=timedelta(0), CSVDIRECTORY_DEFAULT_APPROVAL_THRESHOLD=1000
)
def test_updates_moves_deactivations_and_reactivations(app: Flask, stack: str) -> None:
    upload(users_csv(), employees_csv([employee(n) for n in range(4)]))
    run = fresh(
        upload(
            users_csv(),
            employees_csv(
                [
                    employee(0, title="Lead"),  # updated
                    employee(1, team="Support"),  # moved, team created
                    employee(2, email="renamed@example.com"),  # email change by employee_id
                ]  # person3 missing: deactivated
            ),
        )
    )
    counts = run.change_counts
    assert counts["employee_updated"] == 2
    assert counts["employee_moved"] == 1 and counts["team_created"] == 1
    assert counts["employee_deactivated"] == 1  # person3 (the seeded manager was already off)
    everyone = people()
    assert everyone["person0@example.com"].title == "Lead"
    assert everyone["person1@example.com"].team.name == "Support"
    assert everyone["renamed@example.com"].employee_id == "E000002"
    assert everyone["person3@example.com"].active is False
    # person3 comes back
    back = fresh(upload(users_csv(), employees_csv([employee(n) for n in range(4)])))
    assert back.change_counts["employee_reactivated"] == 1
    assert people()["person3@example.com"].active is True


@pytest.mark.settings(CSVDIRECTORY_DEFAULT_APPROVAL_THRESHOLD=2)
def test_drift_between_plan_and_approval_waits_again(app: Flask, stack: str) -> None:
    run = upload(users_csv(), employees_csv([employee(n) for n in range(4)]))
    first_plan = runs.load_changeset(fresh(run))
    # the directory changes behind the plan's back: person2 is hired by someone else
    db.session.add(User(email="person2@example.com", first_name="First2", last_name="Last2",
                        employee_id="E000002", title="Associate"))
    db.session.commit()
    runs.approve(ORG, run.id, APPROVER)
    run = fresh(run)
    assert run.status == RunStatus.WAITING.value
    assert run.replans == 1 and run.decided_by_name is None
    assert "changed" in run.notice
    second_plan = runs.load_changeset(run)
    assert second_plan.fingerprint() != first_plan.fingerprint()
    assert "person2@example.com" not in {
        c.subject for c in second_plan.changes if c.kind == "employee_created"
    }
    runs.approve(ORG, run.id, APPROVER)
    run = fresh(run)
    assert run.status_label == "Approved by Ada Admin"
    assert people()["person2@example.com"].team.name == "Sales"


def test_failure_mid_apply_leaves_directory_unchanged(
    app: Flask, stack: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    adapter = get_state().adapter
    original = adapter._update_people
    calls: list[int] = []

    def explode(*args: object, **kwargs: object) -> None:
        original(*args, **kwargs)  # writes happen ...
        calls.append(1)
        raise RuntimeError("disk on fire")  # ... then the apply dies part-way

    monkeypatch.setattr(adapter, "_update_people", explode)
    before = directory_state()
    run = upload(users_csv(), employees_csv([employee(1), employee(2, team="Support")]))
    run = fresh(run)
    assert calls == [1]
    assert run.status == RunStatus.ERROR.value
    # a plain reason: what failed and what to do; the exception's text goes to the log only
    assert "while applying the changes; nothing was applied" in run.error_reason
    assert "disk on fire" not in run.error_reason and "reference" in run.error_reason
    assert directory_state() == before


def test_two_simultaneous_uploads_cannot_both_pass(app: Flask, stack: str) -> None:
    results: list[str] = []
    barrier = threading.Barrier(2)

    def attempt() -> None:
        with app.app_context():
            barrier.wait()
            try:
                run = runs.start_run(
                    ORG,
                    runs.Upload("Users.csv", users_csv()),
                    runs.Upload("Employees.csv", employees_csv([employee(1)])),
                    ADMIN,
                    enqueue=False,
                )
                results.append(f"run {run.id}")
            except (WindowClosed, RunInProgress):
                results.append("refused")
            finally:
                db.session.remove()

    threads = [threading.Thread(target=attempt) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(r.split()[0] for r in results) == ["refused", "run"]
    assert db.session.scalar(select(func.count()).select_from(SyncRun)) == 1


def test_files_are_encrypted_at_rest_and_keys_rotate(app: Flask) -> None:
    employees = employees_csv([employee(1, first_name="Zebediah")])
    run = fresh(upload(users_csv(), employees))
    stored = {stored_role(f.role): f for f in db.session.scalars(select(StoredFile))}
    # the change set is stored for paging: an index, pages and the search text (issue 14)
    assert set(stored) == {"users", "employees", "changeset", "applied", "cs.00000",
                           "cs.s0000"}
    for role in ("changeset", "cs.00000", "cs.s0000"):  # who is changed is personal too
        assert b"Zebediah" not in stored[role].ciphertext
        assert b"person1@example.com" not in stored[role].ciphertext
    assert b"Zebediah" not in stored["employees"].ciphertext
    assert b"person1@example.com" not in stored["users"].ciphertext
    # the applied record (the changes with their before-values) is encrypted like the plan
    assert b"Zebediah" not in stored["applied"].ciphertext
    assert get_state().store.get(run, "applied") == get_state().store.get(run, "changeset")
    state = get_state()
    assert state.store.get(run, "employees") == employees

    from cryptography.fernet import Fernet

    from flask_csvdirectory.storage import FileStore, derive_key

    new_key = Fernet.generate_key()
    old_key = derive_key(app.config["SECRET_KEY"])
    rotating = FileStore([new_key, old_key])
    # users, employees, changeset (the index), applied, one page, the search text
    assert rotating.rotate(db.session) == 6
    db.session.commit()
    db.session.expire_all()
    only_new = FileStore([new_key])
    assert only_new.get(fresh(run), "employees") == employees


def test_stuck_run_is_noticed(app: Flask) -> None:
    run = upload(users_csv(), employees_csv([employee(1)]))
    run = fresh(run)
    run.status, run.finished_at, run.phase = RunStatus.PROCESSING.value, None, "applying"
    run.applied_at = None
    run.heartbeat_at = utcnow() - timedelta(minutes=11)
    db.session.commit()
    assert runs.reap_stuck_runs(ORG) == 1
    run = fresh(run)
    assert run.status == RunStatus.ERROR.value and "stopped" in run.error_reason
    # an error run does not block a new upload
    assert runs.window_opens_at(ORG) is None


def test_a_fresh_processing_run_is_not_reaped(app: Flask) -> None:
    run = runs.start_run(
        ORG, runs.Upload("Users.csv", users_csv()),
        runs.Upload("Employees.csv", employees_csv([employee(1)])), ADMIN, enqueue=False,
    )
    assert runs.reap_stuck_runs(ORG) == 0
    assert fresh(run).status == RunStatus.PROCESSING.value


def test_dry_run_plans_without_a_run(app: Flask) -> None:
    outcome = runs.dry_run(
        ORG, runs.Upload("Users.csv", users_csv()),
        runs.Upload("Employees.csv", employees_csv([employee(1)])),
    )
    assert outcome.changeset.counts()["employee_created"] == 1
    assert db.session.scalar(select(func.count()).select_from(SyncRun)) == 0
    with pytest.raises(FileValidationError) as bad:
        runs.dry_run(ORG, runs.Upload("U", users_csv()), runs.Upload("E", b"email\nx@y"))
    assert bad.value.errors[0].file == "Employees.csv"


def test_runs_of_another_organization_are_invisible(app: Flask) -> None:
    run = upload(users_csv(), employees_csv([employee(1)]))
    with pytest.raises(runs.RunNotFound):
        runs.get_run("other-org", run.id)
    assert runs.list_runs("other-org") == ([], 0)
    listed, total = runs.list_runs(ORG)
    assert total == 1 and listed[0].id == run.id


@pytest.mark.settings(
    CSVDIRECTORY_DEFAULT_APPROVAL_THRESHOLD=10_000, CSVDIRECTORY_MIN_SYNC_INTERVAL=timedelta(0)
)
def test_bulk_import_of_hundreds_takes_the_bulk_paths(app: Flask, stack: str) -> None:
    """Large enough for PostgreSQL's COPY path (>= 100 rows per insert)."""
    employees = [employee(n, team=f"Team {n % 7}") for n in range(350)]
    managers = [
        {"email": f"person{n}@example.com", "role": "Manager", "teams": f"Team {n % 7}"}
        for n in range(120)
    ]
    run = fresh(upload(users_csv([admin_row(), *managers]), employees_csv(employees)))
    assert run.status == RunStatus.AUTO_APPROVED.value, run.error_reason
    everyone = people()
    assert len([e for e in everyone if e.startswith("person")]) == 350
    person = everyone["person349@example.com"]
    assert (person.first_name, person.team.name, person.active, person.login_count) == (
        "First349", "Team 6", True, 0
    )
    manager = everyone["person15@example.com"]
    assert manager.role == "manager" and [t.name for t in manager.scoped_teams] == ["Team 1"]
    again = fresh(upload(users_csv([admin_row(), *managers]), employees_csv(employees)))
    assert again.change_count == 0


def test_percentage_threshold_makes_a_run_wait(app: Flask) -> None:
    runs.update_settings(ORG, ADMIN, approval_threshold=1000, approval_percent=50.0)
    # the directory holds 2 people; 3 created + 1 team + the manager's exit is far above 50%
    run = fresh(upload(users_csv(), employees_csv([employee(n) for n in range(3)])))
    assert run.status == RunStatus.WAITING.value
    assert (run.threshold, run.threshold_percent, run.directory_size) == (1000, 50.0, 2)
