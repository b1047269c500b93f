"""Fault injection on the real stack: PostgreSQL, Redis and real ``flask csvdirectory worker``
processes, killed and cut off the way production does it.

Each test uploads a pair whose apply touches every statement of the reference adapter (120 new
teams and 200 new people by ``COPY``, updates, moves, deactivations, a new manager), strikes at a
named pause point (:mod:`flask_csvdirectory.checkpoints`) or while a statement waits for a lock,
and then asserts the promise:

- the host's tables are byte for byte what they were (a checksum over users, teams and scopes);
- the run ends in Error while processing, with a plain reason, within the heartbeat grace (read
  through the API, as any reader of runs would);
- no lock is held (an UPDATE of every row with a short ``lock_timeout`` succeeds);
- a new upload is accepted at once (the 12-hour window does not count the failed run);
- the same worker (when it survived) runs that next job correctly, without any trace of the
  killed one.

The heartbeat grace is 2 seconds here (production: 60).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import text

from example_app.models import Team, User, db
from flask_csvdirectory import runs, tokens
from flask_csvdirectory.models import RunStatus, SyncRun

from .conftest import (
    ADMIN,
    POSTGRES_URL,
    REDIS_URL,
    TEST_ENCRYPTION_KEY,
    build_app,
    require_services,
)
from .factories import employee, employees_csv, users_csv

pytestmark = [pytest.mark.faults, pytest.mark.realstack]

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
GRACE = 2.0
API = "/api/csv-directory/v1"
LIBPQ_URL = POSTGRES_URL.replace("postgresql+psycopg://", "postgresql://")
DATABASE = LIBPQ_URL.rsplit("/", 1)[1]
#: Words that must never reach a reason shown to users (SQL, parameters, cell values).
LEAKS = ("SELECT", "INSERT", "UPDATE ", "COPY", "[SQL", "parameters", "sqlalche.me",
         "@example.com", "psycopg", "Traceback", "Fault team")


def existing(n: int, team: str = "Sales", **fields: str) -> dict[str, str]:
    """A person already in the directory before the faulty upload."""
    return employee(n, team=team, **fields)


def faulty_pair() -> tuple[bytes, bytes]:
    """A pair whose apply runs every statement: 120 new teams, 200 new people (both by COPY),
    updates, moves, deactivations (people 40-49 are left out) and a new manager."""
    rows = [existing(n, title="Senior") for n in range(20)]
    rows += [existing(n, team="Support") for n in range(20, 30)]
    rows += [existing(n) for n in range(30, 40)]
    rows += [employee(1000 + n, team=f"Fault team {n % 120}") for n in range(200)]
    users = users_csv(
        [
            {"email": "admin@example.com", "name": "Ada Admin", "role": "Admin", "teams": "*"},
            {"email": "person35@example.com", "name": "First35 Last35", "role": "Manager",
             "teams": "Sales"},
        ]
    )
    return users, employees_csv(rows)


def next_pair() -> tuple[bytes, bytes]:
    """The next, unrelated upload: everyone stays, one person joins a new team."""
    rows = [existing(n) for n in range(50)] + [employee(5000, team="Next team")]
    return users_csv(), employees_csv(rows)


@dataclass
class Workers:
    """The ``flask csvdirectory worker`` processes of this module (one alive at a time, kept
    across tests: each test checks that the worker survives its fault)."""

    pauses: Path
    workers: list[subprocess.Popen[str]] = field(default_factory=list)
    logs: list[Path] = field(default_factory=list)

    def current(self) -> subprocess.Popen[str]:
        """The live worker, started when there is none."""
        if self.workers and self.workers[-1].poll() is None:
            return self.workers[-1]
        return self.start_worker()

    def start_worker(self) -> subprocess.Popen[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CSVDIRECTORY_")}
        env.update(
            FLASK_APP="example_app",
            DATABASE_URL=POSTGRES_URL,
            REDIS_URL=REDIS_URL,
            SECRET_KEY="test-secret",
            CSVDIRECTORY_ENCRYPTION_KEYS=TEST_ENCRYPTION_KEY,
            PYTHONPATH=str(ROOT),
            CSVDIRECTORY_HEARTBEAT_GRACE=str(GRACE),
            CSVDIRECTORY_JOB_RETRY_INTERVALS="1",
            CSVDIRECTORY_PAUSE_DIR=str(self.pauses),
        )
        log = self.pauses.parent / f"worker-{len(self.workers)}.log"
        with log.open("w") as out:  # a file, not a pipe: a killed parent's children keep it
            worker = subprocess.Popen(
                [str(BIN / "flask"), "csvdirectory", "worker"],
                env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, text=True,
            )
        self.workers.append(worker)
        self.logs.append(log)
        return worker

    def children(self, worker: subprocess.Popen[str]) -> list[int]:
        found = subprocess.run(
            ["pgrep", "-P", str(worker.pid)], capture_output=True, text=True
        ).stdout.split()
        return [int(pid) for pid in found]

    def stop_workers(self) -> str:
        """Stop every worker this test started (and their children); return their logs."""
        for worker in self.workers:
            leftovers = self.children(worker)
            if worker.poll() is None:
                worker.send_signal(signal.SIGTERM)
                try:
                    worker.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    worker.kill()
                    worker.wait()
            for pid in leftovers:  # the scheduler or a horse of a worker we started
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        return "\n".join(log.read_text() for log in self.logs)


@dataclass
class Lab:
    """The test's app, its API client, the pause directory and the module's workers."""

    app: Flask
    client: FlaskClient
    pauses: Path
    pool: Workers

    def worker(self) -> subprocess.Popen[str]:
        """The live worker (started when the last one died)."""
        return self.pool.current()

    def children(self, worker: subprocess.Popen[str]) -> list[int]:
        return self.pool.children(worker)

    # -- pause points -------------------------------------------------------------------------

    def arm(self, point: str) -> None:
        (self.pauses / f"{point.replace(':', '-')}.pause").touch()

    def reached(self, point: str, timeout: float = 60) -> dict[str, Any]:
        path = self.pauses / f"{point.replace(':', '-')}.reached"
        deadline = time.monotonic() + timeout
        while not path.exists():
            assert time.monotonic() < deadline, f"no job reached {point}"
            time.sleep(0.02)
        info: dict[str, Any] = json.loads(path.read_text())
        return info

    def release(self, point: str) -> None:
        (self.pauses / f"{point.replace(':', '-')}.release").touch()

    # -- runs ---------------------------------------------------------------------------------

    def upload(self, pair: tuple[bytes, bytes]) -> str:
        """Upload through the API (as an integrator); return the run id. Fails when refused."""
        users, employees = pair
        response = self.client.post(
            f"{API}/imports",
            data={"users": (_file(users), "Users.csv"), "employees": (_file(employees),
                                                                      "Employees.csv")},
            content_type="multipart/form-data",
        )
        assert response.status_code == 202, response.text
        return str(response.json["id"])

    def read(self, run_id: str) -> dict[str, Any]:
        """The run as the API shows it (reading a run ends it when its job is dead)."""
        response = self.client.get(f"{API}/imports/{run_id}")
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json
        return body

    def wait_for(self, run_id: str, done: Callable[[dict[str, Any]], bool], timeout: float,
                 ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            body = self.read(run_id)
            if done(body) or time.monotonic() > deadline:
                return body
            time.sleep(0.1)


def _file(data: bytes) -> Any:
    import io

    return io.BytesIO(data)


@pytest.fixture(scope="module")
def workers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Workers]:
    require_services()
    from redis import Redis

    Redis.from_url(REDIS_URL).flushdb()
    pauses = tmp_path_factory.mktemp("faults") / "pauses"
    pauses.mkdir()
    pool = Workers(pauses)
    yield pool
    print(pool.stop_workers())


@pytest.fixture
def lab(tmp_path: Path, workers: Workers) -> Iterator[Lab]:
    app = build_app(
        "postgres",
        tmp_path,
        CSVDIRECTORY_JOBS_MODE="rq",
        CSVDIRECTORY_HEARTBEAT_GRACE=timedelta(seconds=GRACE),
        CSVDIRECTORY_DEFAULT_APPROVAL_THRESHOLD=100_000,
        CSVDIRECTORY_ENCRYPTION_KEYS=[TEST_ENCRYPTION_KEY],  # the workers' key too
    )
    pauses = workers.pauses
    with app.app_context():
        # the faulty pair deactivates 10 of 50 people: the mass-removal guard would hold it
        runs.update_settings(
            "default", ADMIN, enabled=True, guard_removal_percent=None, guard_removal_people=None
        )
        sales, support = Team(name="Sales"), Team(name="Support")
        db.session.add_all([sales, support])
        for n in range(50):
            row = existing(n)
            db.session.add(
                User(email=row["email"], employee_id=row["employee_id"],
                     first_name=row["first_name"], last_name=row["last_name"],
                     title=row["title"], team=sales)
            )
        db.session.commit()
        _, secret = tokens.create_token("default", "faults", "test")
    client = app.test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {secret}"
    lab = Lab(app=app, client=client, pauses=pauses, pool=workers)
    try:
        yield lab  # no app context held: each request gets its own, as in production
    finally:
        for path in pauses.glob("*.pause"):
            path.unlink()
        for path in pauses.glob("*.taken"):  # let a paused job go on, then forget the point
            (pauses / path.name.replace(".taken", ".release")).touch()
        time.sleep(0.1)
        for path in pauses.iterdir():
            path.unlink()
        print("\n".join(log.read_text() for log in workers.logs[-1:]))  # shown on failure
        with app.app_context():
            db.session.remove()
            db.engine.dispose()


# -- what every fault must leave behind --------------------------------------------------------


def checksum() -> str:
    """A digest of every row of the host's users, teams and manager scopes."""
    with psycopg.connect(LIBPQ_URL, autocommit=True) as conn:
        parts = [
            conn.execute(
                f"SELECT md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), '')) "
                f"FROM {table} t"
            ).fetchone()[0]  # type: ignore[index]
            for table in ("users", "teams", "manager_teams")
        ]
    return "/".join(parts)


def assert_no_lock_held() -> None:
    """Another session can write every row of the host's tables and of the runs at once."""
    with psycopg.connect(LIBPQ_URL) as conn:
        conn.execute("SET lock_timeout = '500ms'")
        conn.execute("UPDATE users SET login_count = login_count")
        conn.execute("UPDATE teams SET name = name")
        conn.execute("UPDATE csvdirectory_runs SET org = org")
        conn.rollback()


def assert_plain(reason: str) -> None:
    assert "nothing was applied" in reason and "you can upload again now" in reason, reason
    for leak in LEAKS:
        assert leak not in reason, f"{leak!r} leaked into the reason: {reason}"


def backends_in_transaction() -> list[tuple[int, str]]:
    """(pid, state) of the test database's sessions holding a transaction open, but this one."""
    with psycopg.connect(LIBPQ_URL, autocommit=True) as conn:
        return [
            (int(row[0]), str(row[1]))
            for row in conn.execute(
                "SELECT pid, state FROM pg_stat_activity WHERE datname = %s "
                "AND pid <> pg_backend_pid() AND xact_start IS NOT NULL",
                (DATABASE,),
            )
        ]


def wait_backend_gone(pid: int, timeout: float = 10) -> float:
    started = time.monotonic()
    with psycopg.connect(LIBPQ_URL, autocommit=True) as conn:
        while conn.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone():
            assert time.monotonic() - started < timeout, f"backend {pid} outlived its job"
            time.sleep(0.05)
    return time.monotonic() - started


def assert_recovered(
    lab: Lab, run_id: str, before: str, struck_at: float, worker: subprocess.Popen[str] | None,
) -> dict[str, Any]:
    """The promise after a fault (see the module docstring). ``worker``: the worker that must
    run the next job (None: start a new one, the old one is dead)."""
    body = lab.wait_for(run_id, lambda b: b["status_label"] == RunStatus.ERROR.value,
                        timeout=GRACE + 10)
    elapsed = time.monotonic() - struck_at
    assert body["status_label"] == RunStatus.ERROR.value, body
    assert elapsed <= GRACE + 2.5, f"ended {elapsed:.1f} s after the fault"
    assert_plain(body["error_reason"])
    assert checksum() == before
    assert_no_lock_held()
    with lab.app.app_context():
        teams_before = {t.name for t in db.session.query(Team)}
        people_before = db.session.query(User).count()
    # a new upload is accepted at once, and a live worker runs it correctly
    if worker is None or worker.poll() is not None:
        worker = lab.worker()
    next_id = lab.upload(next_pair())
    done = lab.wait_for(next_id, lambda b: b["timings"]["finished_at"] is not None, timeout=60)
    assert done["status_label"] == RunStatus.AUTO_APPROVED.value, done
    assert worker.poll() is None, "the worker died"
    with lab.app.app_context():
        db.session.expire_all()
        assert {t.name for t in db.session.query(Team)} == teams_before | {"Next team"}
        assert db.session.query(User).count() == people_before + 1
        assert not db.session.query(Team).filter(Team.name.like("Fault team%")).count()
    print(
        f"OBSERVED: {body['status_label']} {elapsed:.1f} s after the fault: "
        f"{body['error_reason']!r}; checksum unchanged; no lock held; next upload accepted, "
        f"{done['status_label']} on worker pid {worker.pid}"
    )
    return body


def start_and_strike(lab: Lab, point: str) -> tuple[str, str, dict[str, Any],
                                                    subprocess.Popen[str]]:
    """Start a worker, arm ``point``, upload the faulty pair and wait for the job to pause
    there. Returns (run id, checksum before, the paused job's info, the worker)."""
    before = checksum()
    worker = lab.worker()
    lab.arm(point)
    run_id = lab.upload(faulty_pair())
    info = lab.reached(point)
    assert info["pid"] in lab.children(worker), "the job does not run in a work-horse"
    return run_id, before, info, worker


# -- the faults --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "point",
    [
        "reading",
        "planning",
        # between statements, idle in transaction: after the teams, before the people are
        # copied (the reported bug: the next job on the worker committed these teams), and
        # after the last statement, before the commit
        "apply:teams-inserted",
        "apply:access-updated",
        # during the bulk COPY of the new teams
        "apply:copy",
    ],
)
def test_killed_work_horse(lab: Lab, point: str) -> None:
    run_id, before, info, worker = start_and_strike(lab, point)
    if point in ("apply:teams-inserted", "apply:access-updated"):
        # the apply's transaction is the only one left open: the worker's parent holds none
        # (a heartbeat may be active for a moment, waiting for the run row the apply locked)
        idle = [b for b in backends_in_transaction() if b[1] == "idle in transaction"]
        assert idle == [(info["backend_pid"], "idle in transaction")]
    os.kill(info["pid"], signal.SIGKILL)
    struck = time.monotonic()
    if info.get("backend_pid"):
        wait_backend_gone(info["backend_pid"])
    body = assert_recovered(lab, run_id, before, struck, worker)
    assert "The worker stopped while" in body["error_reason"]


def test_lost_connection_before_the_apply_is_retried(lab: Lab) -> None:
    """A transient fault before the apply (the job's backend dies while planning) is retried
    with RQ's Retry; the retry plans afresh and applies the whole pair."""
    before = checksum()
    worker = lab.worker()
    lab.arm("planning")
    run_id = lab.upload(faulty_pair())
    info = lab.reached("planning")
    with psycopg.connect(LIBPQ_URL, autocommit=True) as conn:
        conn.execute("SELECT pg_terminate_backend(%s)", (info["backend_pid"],))
    lab.release("planning")
    body = lab.wait_for(run_id, lambda b: b["timings"]["finished_at"] is not None, timeout=30)
    assert body["status_label"] == RunStatus.AUTO_APPROVED.value, body
    assert checksum() != before
    with lab.app.app_context():
        db.session.expire_all()
        assert db.session.query(Team).filter(Team.name.like("Fault team%")).count() == 120
        assert db.session.query(User).filter(User.email.like("person1%")).count() >= 200
    from rq.job import Job

    job = Job.fetch(f"csvdirectory-process-{run_id}", connection=_redis())
    assert job.number_of_retries == 1
    assert worker.poll() is None
    print(f"OBSERVED: {body['status_label']} after {job.number_of_retries} RQ retry; "
          "120 teams and 200 people applied")


def test_lost_connections_before_the_apply_exhaust_the_retries(lab: Lab) -> None:
    """Each attempt loses its connection while planning: after the configured retries (one
    here) the run ends in Error while processing with a plain reason; nothing was applied."""
    before = checksum()
    worker = lab.worker()
    lab.arm("planning")
    run_id = lab.upload(faulty_pair())
    for _attempt in range(2):
        info = lab.reached("planning")
        with psycopg.connect(LIBPQ_URL, autocommit=True) as conn:
            conn.execute("SELECT pg_terminate_backend(%s)", (info["backend_pid"],))
        if _attempt == 0:
            (lab.pauses / "planning.reached").unlink()
            lab.arm("planning")
        lab.release("planning")
    struck = time.monotonic()
    body = assert_recovered(lab, run_id, before, struck, worker)
    assert body["error_reason"].startswith(
        "The connection to the database was lost while comparing the files with the directory"
    )


def _blockers(lab: Lab) -> dict[str, Callable[[psycopg.Connection[Any]], None]]:
    """For each kind of apply statement: how another session makes it wait for a lock."""
    return {
        # the COPY of new teams waits on the unique index for a team another session inserts
        "copy teams": lambda c: c.execute(
            "INSERT INTO teams (name, scim_id, created_at, updated_at) "
            "VALUES ('Fault team 7', gen_random_uuid()::text, now(), now())"
        ),
        # the COPY of new people waits on the unique email
        "copy people": lambda c: c.execute(
            "INSERT INTO users (email, first_name, last_name, title, active, role, "
            "sees_all_teams, login_count, created_at, updated_at) VALUES "
            "('person1007@example.com', '', '', '', true, 'employee', false, 0, now(), now())"
        ),
        # the UPDATE of changed people waits on a row another session locked
        "update people": lambda c: c.execute(
            "SELECT 1 FROM users WHERE email = 'person25@example.com' FOR UPDATE"
        ),
        # the UPDATE granting access to the new manager waits on that person's row
        "update access": lambda c: c.execute(
            "SELECT 1 FROM users WHERE email = 'person35@example.com' FOR UPDATE"
        ),
    }


@pytest.mark.parametrize("statement", ["copy teams", "copy people", "update people",
                                       "update access"])
def test_killed_work_horse_during_each_apply_statement(lab: Lab, statement: str) -> None:
    """Killed while a statement of the apply runs (it waits for a lock another session holds):
    the server cancels the dead job's statement within a second, even before that lock goes."""
    before = checksum()
    worker = lab.worker()
    blocker = psycopg.connect(LIBPQ_URL)
    try:
        _blockers(lab)[statement](blocker)
        lab.arm("apply:start")
        run_id = lab.upload(faulty_pair())
        info = lab.reached("apply:start")
        lab.release("apply:start")
        waiting = _wait_lock_wait(info["backend_pid"])
        assert waiting, f"the {statement} statement never waited"
        os.kill(info["pid"], signal.SIGKILL)
        struck = time.monotonic()
        gone_after = wait_backend_gone(info["backend_pid"], timeout=5)
        assert gone_after < 3, "the dead job's statement kept running"
        print(f"OBSERVED: the killed job's backend, waiting for a lock in its {statement} "
              f"statement, was gone {gone_after:.2f} s after the kill")
    finally:
        blocker.rollback()
        blocker.close()
    assert_recovered(lab, run_id, before, struck, worker)


def _wait_lock_wait(backend_pid: int, timeout: float = 20) -> bool:
    deadline = time.monotonic() + timeout
    with psycopg.connect(LIBPQ_URL, autocommit=True) as conn:
        while time.monotonic() < deadline:
            row = conn.execute(
                "SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", (backend_pid,)
            ).fetchone()
            if row and row[0] == "Lock":
                return True
            time.sleep(0.05)
    return False


def test_killed_worker_and_work_horse(lab: Lab) -> None:
    """The whole worker dies (parent, work-horse, scheduler): no process is left to report it.
    A reader of runs ends the run when its heartbeat is older than the grace."""
    run_id, before, info, worker = start_and_strike(lab, "apply:people-inserted")
    victims = [worker.pid, *lab.children(worker)]
    for pid in victims:
        os.kill(pid, signal.SIGKILL)
    struck = time.monotonic()
    worker.wait()
    wait_backend_gone(info["backend_pid"])
    # nothing ends the run but the readers (this test's API reads)
    body = assert_recovered(lab, run_id, before, struck, worker=None)
    assert body["error_reason"] == (
        "The worker stopped while applying; nothing was applied; you can upload again now."
    )


def test_job_database_backend_terminated_mid_apply(lab: Lab) -> None:
    run_id, before, info, worker = start_and_strike(lab, "apply:people-inserted")
    with psycopg.connect(LIBPQ_URL, autocommit=True) as conn:
        conn.execute("SELECT pg_terminate_backend(%s)", (info["backend_pid"],))
    struck = time.monotonic()
    lab.release("apply:people-inserted")
    body = assert_recovered(lab, run_id, before, struck, worker)
    assert "The connection to the database was lost while applying" in body["error_reason"]


def test_every_connection_of_the_database_terminated_mid_apply(lab: Lab) -> None:
    """The job's, its heartbeat's, the worker's and this web app's connections all drop: the
    job ends the run, and the web app answers its next request normally (pre-ping)."""
    run_id, before, info, worker = start_and_strike(lab, "apply:people-updated")
    with lab.app.app_context():
        db.session.execute(text("SELECT 1"))  # the web app has a pooled connection to lose
        db.session.commit()
    with psycopg.connect(LIBPQ_URL, autocommit=True) as conn:
        killed = conn.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid()",
            (DATABASE,),
        ).fetchone()[0]  # type: ignore[index]
    assert killed >= 2
    struck = time.monotonic()
    lab.release("apply:people-updated")
    body = assert_recovered(lab, run_id, before, struck, worker)
    assert "The connection to the database was lost while applying" in body["error_reason"]


def _redis() -> Any:
    from redis import Redis

    return Redis.from_url(REDIS_URL)


def test_runs_row_is_locked_while_applying(lab: Lab) -> None:
    """While an apply runs, its run row is locked by its transaction: liveness reads a locked
    row as alive and never ends a live apply, however stale its heartbeat."""
    worker = lab.worker()
    lab.arm("apply:people-inserted")
    run_id = lab.upload(faulty_pair())
    lab.reached("apply:people-inserted")
    time.sleep(GRACE + 1)  # the heartbeat cannot update the locked row: it goes stale
    with lab.app.app_context():
        assert runs.reap_stuck_runs("default") == 0
        db.session.expire_all()
        assert db.session.get(SyncRun, run_id).finished_at is None  # type: ignore[union-attr]
    lab.release("apply:people-inserted")
    body = lab.wait_for(run_id, lambda b: b["timings"]["finished_at"] is not None, timeout=30)
    assert body["status_label"] == RunStatus.AUTO_APPROVED.value, body
    assert worker.poll() is None
