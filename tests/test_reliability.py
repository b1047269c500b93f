"""Failure reasons, encryption of what holds file values, retries of transient faults and
liveness, on both stacks (the real-process faults are in test_faults.py)."""

from __future__ import annotations

import logging
import time
from datetime import timedelta

import pytest
from flask import Flask
from sqlalchemy import exc as sa_exc
from sqlalchemy import insert, select, text

from example_app.models import User, db
from flask_csvdirectory import failures, liveness, runs
from flask_csvdirectory.extension import get_state
from flask_csvdirectory.models import RunStatus, SyncRun, utcnow

from .conftest import ADMIN
from .factories import employee, employees_csv, users_csv

ORG = "default"
LEAKS = ("INSERT", "SELECT", "[SQL", "parameters", "sqlalche.me", "admin@example.com")


def upload(employees: bytes) -> SyncRun:
    run = runs.start_run(
        ORG, runs.Upload("Users.csv", users_csv()), runs.Upload("Employees.csv", employees), ADMIN
    )
    db.session.expire_all()
    return db.session.get(SyncRun, run.id)  # type: ignore[return-value]


def raw_run_columns(run_id: str) -> str:
    row = db.session.execute(
        text("SELECT error_reason, row_errors FROM csvdirectory_runs WHERE id = :id"),
        {"id": run_id},
    ).one()
    return f"{row[0]} {row[1]}"


def test_row_errors_and_reasons_are_encrypted_at_rest(app: Flask, stack: str) -> None:
    bad = employees_csv([employee(1), employee(2, email="zebediah-at-nowhere")])
    run = upload(bad)
    assert run.status == RunStatus.ERROR.value
    errors = runs.row_errors(run)
    assert any(error.value == "zebediah-at-nowhere" for error in errors)
    assert "line 3" in run.error_reason and "Employees.csv" in run.error_reason
    stored = raw_run_columns(run.id)
    assert "zebediah" not in stored and "Employees.csv" not in stored
    assert stored.startswith("gAAAA")  # Fernet tokens


def test_a_database_error_becomes_a_plain_reason_and_the_detail_goes_to_the_log(
    app: Flask, stack: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    adapter = get_state().adapter
    original = adapter._create_people

    def duplicate(*args: object, **kwargs: object) -> None:
        original(*args, **kwargs)
        # a real constraint violation, carrying SQL and another person's email
        db.session.execute(insert(User).values(email="admin@example.com", first_name="X"))

    monkeypatch.setattr(adapter, "_create_people", duplicate)
    before = db.session.scalar(select(User.id).order_by(User.id.desc()))
    with caplog.at_level(logging.ERROR, logger="flask_csvdirectory.failures"):
        run = upload(employees_csv([employee(1), employee(2)]))
    assert run.status == RunStatus.ERROR.value
    reason = run.error_reason
    assert reason.startswith("The directory refused the changes: a person or team with the same")
    assert "already exists" in reason and "nothing was applied" in reason
    for leak in LEAKS:
        assert leak not in reason, reason
    reference = reason.rsplit("Reference ", 1)[1].rstrip(".)")
    logged = [r for r in caplog.records if reference in r.getMessage()]
    assert logged and "admin@example.com" in str(logged[0].exc_info[1])  # type: ignore[index]
    assert db.session.scalar(select(User.id).order_by(User.id.desc())) == before


def test_plain_reasons_for_each_kind_of_fault() -> None:
    lost = sa_exc.OperationalError("SELECT 1", {"x": "secret@example.com"}, Exception("gone"))
    assert failures.is_transient(lost)
    assert failures.reason_for(lost, "applying").startswith(
        "The connection to the database was lost while applying the changes; nothing was "
        "applied; you can upload again now."
    )
    bug = ValueError("cell value secret@example.com")
    assert not failures.is_transient(bug)
    text_ = failures.reason_for(bug, "planning")
    assert text_.startswith("An unexpected error stopped the run while comparing the files")
    assert "secret" not in text_ and "server log under reference" in text_
    assert failures.worker_lost_reason("applying") == (
        "The worker stopped while applying; nothing was applied; you can upload again now."
    )


@pytest.mark.settings(CSVDIRECTORY_JOB_RETRY_INTERVALS=(0, 0))
def test_transient_fault_before_the_apply_is_retried(
    app: Flask, stack: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    adapter = get_state().adapter
    original = adapter.snapshot
    calls: list[int] = []

    def flaky(org: str) -> object:
        calls.append(1)
        if len(calls) == 1:
            raise sa_exc.OperationalError("SELECT ...", {}, Exception("server closed"))
        return original(org)

    monkeypatch.setattr(adapter, "snapshot", flaky)
    run = upload(employees_csv([employee(1)]))
    assert len(calls) == 2
    assert run.status_label == "Auto-Approved", run.error_reason
    assert db.session.scalar(select(User).where(User.email == "person1@example.com"))


@pytest.mark.settings(CSVDIRECTORY_JOB_RETRY_INTERVALS=(0,))
def test_transient_faults_past_the_retries_end_the_run(
    app: Flask, stack: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def down(org: str) -> object:
        raise sa_exc.OperationalError("SELECT ...", {}, Exception("server closed"))

    monkeypatch.setattr(get_state().adapter, "snapshot", down)
    run = upload(employees_csv([employee(1)]))
    assert run.status == RunStatus.ERROR.value
    assert run.error_reason.startswith(
        "The connection to the database was lost while comparing the files with the directory;"
        " nothing was applied; you can upload again now."
    )
    assert runs.window_opens_at(ORG) is None  # a new upload is accepted at once


@pytest.mark.settings(CSVDIRECTORY_HEARTBEAT_GRACE=timedelta(seconds=1))
def test_heartbeat_keeps_a_live_run_alive_and_a_silent_one_is_ended(
    app: Flask, stack: str
) -> None:
    run = runs.start_run(
        ORG, runs.Upload("Users.csv", users_csv()),
        runs.Upload("Employees.csv", employees_csv([employee(1)])), ADMIN, enqueue=False,
    )
    run.phase = "planning"
    run.heartbeat_at = utcnow() - timedelta(seconds=5)
    db.session.commit()
    run_id = run.id
    heartbeat = liveness.Heartbeat(db.engine, 0.1)
    with heartbeat.beating(run_id):
        time.sleep(0.3)
        assert runs.reap_stuck_runs(ORG) == 0  # beating: alive
        db.session.expire_all()
        assert utcnow() - db.session.get(SyncRun, run_id).heartbeat_at < timedelta(seconds=1)
    time.sleep(1.2)  # silent for longer than the grace: dead
    assert runs.reap_stuck_runs(ORG) == 1
    db.session.expire_all()
    run = db.session.get(SyncRun, run_id)
    assert run.status == RunStatus.ERROR.value
    assert run.error_reason == (
        "The worker stopped while comparing the files with the directory; nothing was applied; "
        "you can upload again now."
    )


def test_a_finished_run_is_never_overwritten_by_a_late_failure(app: Flask, stack: str) -> None:
    run = upload(employees_csv([employee(1)]))
    assert run.status_label == "Auto-Approved"
    assert runs.mark_failed_if_unfinished(run.id, "late") is False
    db.session.expire_all()
    assert db.session.get(SyncRun, run.id).status_label == "Auto-Approved"  # type: ignore[union-attr]


def test_a_fault_while_recording_the_plan_ends_the_run(
    app: Flask, stack: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Recording a plan writes many rows (its pages): a failure there ends the run in Error with
    a plain reason at once (it does not stay File Processing until liveness reaps it)."""
    from flask_csvdirectory.storage import FileStore

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("disk full while storing admin@example.com")

    monkeypatch.setattr(FileStore, "put_many", broken)
    try:
        run_id = runs.start_run(
            ORG,
            runs.Upload("Users.csv", users_csv()),
            runs.Upload("Employees.csv", employees_csv([employee(1)])),
            ADMIN,
        ).id
    except RuntimeError:  # the inline job re-raises after recording the failure
        db.session.rollback()
        run_id = db.session.scalars(select(SyncRun.id)).one()
    db.session.expire_all()
    run = db.session.get(SyncRun, run_id)
    assert run is not None
    assert run.status == RunStatus.ERROR.value
    assert run.finished_at is not None
    assert "nothing was applied; you can upload again now" in run.error_reason
    assert not any(leak in run.error_reason for leak in (*LEAKS, "disk full"))
    assert runs.window_opens_at(ORG) is None
    assert db.session.scalar(select(User).where(User.email == "person1@example.com")) is None
