"""Jobs on the real stack: PostgreSQL, Redis and RQ worker processes separate from the test."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from flask import Flask
from rq import Queue
from sqlalchemy import text

from example_app.models import User, db
from flask_csvdirectory import runs
from flask_csvdirectory.extension import get_state
from flask_csvdirectory.models import UNREADABLE_REASON, RunStatus, SyncRun, utcnow
from flask_csvdirectory.storage import FileStore, derive_key

from .conftest import (
    ADMIN,
    POSTGRES_URL,
    REDIS_URL,
    TEST_ENCRYPTION_KEY,
    build_app,
    require_services,
)
from .factories import employee, employees_csv, users_csv

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


@pytest.fixture
def rq_app(tmp_path: Path, redis_conn: object) -> Iterator[Flask]:
    require_services()
    app = build_app(
        "postgres",
        tmp_path,
        CSVDIRECTORY_JOBS_MODE="rq",
        CSVDIRECTORY_DEFAULT_APPROVAL_THRESHOLD=3,
        CSVDIRECTORY_MIN_SYNC_INTERVAL=timedelta(0),
        CSVDIRECTORY_ENCRYPTION_KEYS=[TEST_ENCRYPTION_KEY],
    )
    with app.app_context():
        runs.update_settings("default", ADMIN, enabled=True)
    yield app
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


def worker_env() -> dict[str, str]:
    """What a worker on another machine would be given: where the app, DB and Redis are."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CSVDIRECTORY_")}
    env.update(
        FLASK_APP="example_app",
        DATABASE_URL=POSTGRES_URL,
        REDIS_URL=REDIS_URL,
        SECRET_KEY="test-secret",
        CSVDIRECTORY_ENCRYPTION_KEYS=TEST_ENCRYPTION_KEY,  # the same key as the app's
        PYTHONPATH=str(ROOT),
    )
    return env


def run_worker(command: list[str]) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        command, env=worker_env(), cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def start(people: int) -> SyncRun:
    """Upload a pair (enqueued on RQ: nothing runs until a worker takes it)."""
    return runs.start_run(
        "default",
        runs.Upload("Users.csv", users_csv()),
        runs.Upload("Employees.csv", employees_csv([employee(n) for n in range(people)])),
        ADMIN,
    )


def fresh(run_id: str) -> SyncRun:
    db.session.expire_all()
    return db.session.get(SyncRun, run_id)


@pytest.mark.realstack
def test_jobs_run_on_separate_rq_worker_processes(rq_app: Flask) -> None:
    with rq_app.app_context():
        run_id = start(people=6).id
        queue: Queue = get_state().runner.queue()
        assert queue.job_ids == [f"csvdirectory-process-{run_id}"]
        assert fresh(run_id).status == RunStatus.PROCESSING.value

        # the process job, on the extension's worker command (a separate process)
        run_worker([str(BIN / "flask"), "csvdirectory", "worker", "--burst"])
        run = fresh(run_id)
        assert run.status == RunStatus.WAITING.value, run.error_reason
        assert run.worker and run.worker.endswith(tuple(f":{p}" for p in range(1, 2**22)))
        assert run.worker.rsplit(":", 1)[1] != str(os.getpid())

        runs.approve("default", run_id, runs.Actor(id="1", name="Ada Admin"))
        assert queue.job_ids == [f"csvdirectory-apply-{run_id}-0"]
        # the apply job, on a plain `rq worker` that loads the app from FLASK_APP
        result = run_worker(
            [str(BIN / "rq"), "worker", "--burst", "--url", REDIS_URL, "csvdirectory"]
        )
        run = fresh(run_id)
        assert run.status_label == "Approved by Ada Admin", run.error_reason
        assert run.finished_at is not None and run.phase == "done", result.stderr
        emails = {u.email for u in db.session.query(User).all()}
        assert {f"person{n}@example.com" for n in range(6)} <= emails


@pytest.mark.realstack
def test_failed_rq_job_marks_its_run(rq_app: Flask) -> None:
    with rq_app.app_context():
        run = start(people=1)
        run_id = run.id
        # the worker cannot decrypt: it is given another key, so the job raises
        env = worker_env() | {"CSVDIRECTORY_ENCRYPTION_KEYS": Fernet.generate_key().decode()}
        result = subprocess.run(
            [str(BIN / "flask"), "csvdirectory", "worker", "--burst"],
            env=env, cwd=ROOT, capture_output=True, text=True, timeout=120,
        )
        assert result.returncode == 0, result.stderr
        run = fresh(run_id)
        assert run.status == RunStatus.ERROR.value
        # the reason is encrypted at rest, by the worker's key: unreadable here, readable there
        assert run.error_reason == UNREADABLE_REASON
        stored = db.session.execute(
            text("SELECT error_reason FROM csvdirectory_runs WHERE id = :id"), {"id": run_id}
        ).scalar_one()
        worker_store = FileStore([derive_key("another-secret")])
        reason = worker_store.decrypt(stored.encode()).decode()
        assert "cannot be decrypted" in reason and "nothing was applied" in reason


@pytest.mark.realstack
def test_reaper_keeps_queued_jobs_and_fails_lost_ones(rq_app: Flask) -> None:
    with rq_app.app_context():
        run = start(people=1)
        run_id = run.id
        run.heartbeat_at = utcnow() - timedelta(hours=1)
        db.session.commit()
        assert runs.reap_stuck_runs("default") == 0  # still queued: waiting for a worker
        get_state().runner.queue().empty()  # the job is lost (Redis flushed, worker gone...)
        get_state().runner.redis().delete(f"rq:job:csvdirectory-process-{run_id}")
        assert runs.reap_stuck_runs("default") == 1
        assert fresh(run_id).status == RunStatus.ERROR.value
