"""Liveness: is a run's job still alive? A heartbeat, not a job timeout, answers.

A job that works on a run refreshes the run's ``heartbeat_at`` from a background thread every
quarter of ``CSVDIRECTORY_HEARTBEAT_GRACE`` (default one minute), on a connection of its own, so
the beat goes on while the job's own transaction is busy. A run is *dead* when:

- it is unfinished (File Processing, or Approved and applying),
- its heartbeat is older than the grace (and so is the start, or RQ's own heartbeat, of its RQ
  job: that covers the moment between a worker taking the job and its first beat),
- its job is not waiting to start (still queued on RQ, or in this process's in-process queue),
- and its row is not locked by a transaction (on PostgreSQL the apply holds the run's row from
  start to commit, so a locked row means a live apply whose beats are skipped; a dead process's
  transaction is rolled back by the server when its socket closes).

Any reader of runs (the dashboard pages, the API, the worker's loop, a new upload) calls
:func:`end_dead_runs`, which ends dead runs as *Error while processing* with a plain reason, so an
organization is unblocked within about ``grace + one beat`` of its worker's death even when no
worker is left.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import select, update
from sqlalchemy.engine import Engine

from .failures import worker_lost_reason
from .models import RunStatus, SyncRun, utcnow

if TYPE_CHECKING:
    from .jobs import JobRunner

log = logging.getLogger(__name__)

#: Statuses whose run has a job working on it (or about to).
UNFINISHED = (RunStatus.PROCESSING.value, RunStatus.APPROVED.value)
#: The reason of a run whose job vanished from the queue before it started.
JOB_LOST_REASON = (
    "The job of this run was lost before it started (the queue was cleared); nothing was "
    "applied; you can upload again now."
)


def beat_interval(grace: timedelta) -> float:
    """Seconds between two heartbeats: a quarter of the grace (at least 0.1 s)."""
    return max(grace.total_seconds() / 4, 0.1)


class Heartbeat:
    """A daemon thread refreshing ``heartbeat_at`` of a set of runs on its own connection.

    ::

        with Heartbeat(engine, interval).beating(run_id):
            ...  # the job's work

    A beat skips a run whose row another transaction holds (the run's own apply) instead of
    waiting for it, and never raises: a failed beat is logged and tried again next time.
    """

    def __init__(self, engine: Engine, interval: float) -> None:
        self.engine = engine
        self.interval = interval
        self._runs: set[str] = set()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def add(self, run_id: str) -> None:
        """Start beating for ``run_id`` (starts the thread on first use)."""
        with self._lock:
            self._runs.add(run_id)
            if self._thread is None or not self._thread.is_alive():
                self._wake.clear()
                self._thread = threading.Thread(
                    target=self._loop, name="csvdirectory-heartbeat", daemon=True
                )
                self._thread.start()

    def discard(self, run_id: str) -> None:
        """Stop beating for ``run_id``; the thread ends when no run is left."""
        with self._lock:
            self._runs.discard(run_id)
            if not self._runs:
                self._wake.set()

    @contextmanager
    def beating(self, run_id: str) -> Iterator[None]:
        """Beat for ``run_id`` now, then while the block runs."""
        self.beat([run_id])
        self.add(run_id)
        try:
            yield
        finally:
            self.discard(run_id)

    def _loop(self) -> None:
        while not self._wake.wait(self.interval):
            with self._lock:
                runs = sorted(self._runs)
            if not runs:
                return
            self.beat(runs)

    def beat(self, run_ids: list[str]) -> None:
        """Refresh the heartbeat of the unfinished runs among ``run_ids`` now."""
        table = SyncRun.__table__
        free = (
            select(table.c.id)
            .where(table.c.id.in_(run_ids), table.c.finished_at.is_(None))
            .with_for_update(skip_locked=True)
        )
        try:
            with self.engine.connect() as connection:
                if connection.dialect.name == "sqlite":  # never wait for the apply's write lock
                    connection.exec_driver_sql("PRAGMA busy_timeout = 0")
                try:
                    connection.execute(
                        update(table)  # type: ignore[arg-type]
                        .where(table.c.id.in_(free))
                        .values(heartbeat_at=utcnow())
                    )
                    connection.commit()
                finally:
                    if connection.dialect.name == "sqlite":
                        connection.rollback()
                        connection.exec_driver_sql("PRAGMA busy_timeout = 5000")
        except Exception:  # the database is away or busy: try again at the next beat
            log.debug("heartbeat of runs %s skipped", run_ids, exc_info=True)


def is_stale(run: SyncRun, grace: timedelta, job_seen_at: Any = None) -> bool:
    """Whether the run's last sign of life (its heartbeat, or its RQ job starting or beating)
    is older than ``grace``."""
    last = run.heartbeat_at or run.started_at or run.created_at
    if job_seen_at is not None and job_seen_at > last:
        last = job_seen_at
    return utcnow() - last > grace


def end_dead_runs(org: str | None = None) -> int:
    """End every dead run (of ``org``, or of all organizations) as Error while processing with
    a plain reason. Returns how many were ended. Never waits for a lock held by a live job."""
    from . import runs
    from .extension import get_state

    state = get_state()
    session = state.session
    grace: timedelta = state.config["HEARTBEAT_GRACE"]
    runner: JobRunner = state.runner
    now = utcnow()
    query = select(SyncRun.id, SyncRun.phase, SyncRun.job_id).where(
        SyncRun.finished_at.is_(None),
        SyncRun.status.in_(UNFINISHED),
        SyncRun.heartbeat_at < now - grace,
    )
    if org is not None:
        query = query.where(SyncRun.org == org)
    candidates = session.execute(query).all()
    session.rollback()  # end the read: nothing here may hold a transaction open
    ended = 0
    for run_id, phase, job_id in candidates:
        waiting, job_seen_at = runner.job_state(run_id, job_id)
        if waiting:
            continue

        def reason(run: SyncRun, job_seen_at: Any = job_seen_at) -> str | None:
            if not is_stale(run, grace, job_seen_at):
                return None  # it beat meanwhile, or its job just started: alive
            if run.phase == "queued":
                return JOB_LOST_REASON
            return worker_lost_reason(run.phase)

        if runs.mark_failed_if_unfinished(run_id, reason, wait=False):
            log.warning("csvdirectory run %s ended: its job stopped while %s", run_id, phase)
            ended += 1
    return ended
