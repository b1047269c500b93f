"""Jobs: the two steps of a run that happen off the request, and the seam that runs them.

Job functions (:func:`process_run`, :func:`apply_run`) are plain module-level functions taking a
run id, so any RQ worker that can import this package runs them. Inside a Flask app context (the
``flask csvdirectory worker`` command, the in-process mode) they use that app; in a bare
``rq worker`` they load the app named by ``FLASK_APP``.

While a job works on a run it keeps the run's heartbeat fresh (:mod:`.liveness`). A transient
fault before the apply started (the database was unreachable) makes the job return RQ's
:class:`~rq.Retry`, with the waits of ``CSVDIRECTORY_JOB_RETRY_INTERVALS``; any other failure,
and any failure of the apply itself, ends the run in Error while processing with a plain reason.
An apply is never retried blindly: a job that finds its run already applying re-plans first.

:class:`JobRunner` is the seam, in three modes (``CSVDIRECTORY_JOBS_MODE``):

- ``rq``: enqueue on Redis with a deterministic job id and an ``on_failure`` callback;
- ``inprocess``: a single background thread of the web process (the embedded default);
- ``sync``: run inline, now (tests, the CLI).

:class:`~.worker.CSVDirectoryWorker` is the RQ worker of ``flask csvdirectory worker``: its
parent process holds no database connection when it forks (:mod:`.connections`), its
work-horses start on fresh pools, a killed work-horse ends its run at once, and its loop ends
dead runs.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager, nullcontext
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC
from typing import TYPE_CHECKING, Any, cast

from flask import Flask, current_app, has_app_context

from . import connections, failures, liveness
from .failures import TransientFault

if TYPE_CHECKING:  # rq is the optional [rq] extra: imported only where RQ runs the jobs
    from rq import Retry

log = logging.getLogger(__name__)

#: Attempts of a failure callback to record a run's failure before leaving it to liveness.
MARK_ATTEMPTS = 3
#: Outside RQ (in-process and sync modes): how many retries this job already had.
_attempt: ContextVar[int] = ContextVar("csvdirectory_job_attempt", default=0)


@contextmanager
def _app_context() -> Iterator[Flask]:
    """The current app, or the one ``FLASK_APP`` names when a bare worker runs the job (its
    connections are closed on the way out, so a worker's parent never keeps one)."""
    if has_app_context():
        yield current_app._get_current_object()  # type: ignore[attr-defined]
        return
    from flask.cli import ScriptInfo

    # a bare `rq worker`: the same app the web process runs, named by FLASK_APP
    app = ScriptInfo(app_import_path=os.environ.get("FLASK_APP")).load_app()
    try:
        with app.app_context():
            yield app
    finally:
        connections.release_connections(app)


def process_run(run_id: str) -> Retry | None:
    """Job: read, validate and plan a run; then apply it or wait for approval."""
    from . import runs

    return _run_job(run_id, runs.process)


def apply_run(run_id: str) -> Retry | None:
    """Job: apply an approved run (re-planning first to catch drift)."""
    from . import runs

    return _run_job(run_id, runs.apply_approved)


def _run_job(run_id: str, body: Callable[..., None]) -> Retry | None:
    from .extension import get_state

    with _app_context() as app:
        state = get_state(app)
        with state.runner.beating(run_id):
            try:
                body(run_id, worker=_worker_name())
            except TransientFault as fault:
                return _retry_or_fail(app, run_id, fault)
    return None


def _retry_or_fail(app: Flask, run_id: str, fault: TransientFault) -> Retry | None:
    """A transient fault before the apply: ask for a retry while some are left, else fail."""
    from . import runs
    from .extension import get_state

    intervals = [int(value) for value in get_state(app).config["JOB_RETRY_INTERVALS"]]
    job = _current_rq_job()
    attempt = (job.number_of_retries or 0) if job is not None else _attempt.get()
    if attempt < len(intervals):
        wait = intervals[min(attempt, len(intervals) - 1)]
        log.warning(
            "csvdirectory run %s: %s; retry %d of %d in %d s",
            run_id, fault, attempt + 1, len(intervals), wait,
        )
        try:
            runs.note_retry(run_id, wait)
        except Exception:  # the database is still away: the retry will find out
            log.debug("could not note the retry of run %s", run_id, exc_info=True)
        return _retry(intervals)
    reason = failures.reason_for(fault, fault.step, run_id=run_id)
    mark_failed(app, run_id, lambda run: reason)
    raise fault


def mark_failed(
    app: Flask, run_id: str, reason: Callable[[Any], str | None], *, wait: bool = True
) -> bool:
    """End the run in Error while processing if it is unfinished, trying a few times on fresh
    connections; never raises. If every attempt fails, liveness ends the run later."""
    from . import runs

    for attempt in range(1, MARK_ATTEMPTS + 1):
        try:
            with app.app_context():
                return runs.mark_failed_if_unfinished(run_id, reason, wait=wait)
        except Exception:
            log.warning(
                "csvdirectory run %s: recording its failure failed (attempt %d)",
                run_id, attempt, exc_info=True,
            )
            try:
                with app.app_context():
                    app.extensions["sqlalchemy"].session.remove()
            except Exception:
                pass
            time.sleep(0.2 * attempt)
    return False


def on_job_failure(job: Any, connection: Any, exc_type: type, exc: BaseException, tb: Any) -> None:
    """RQ ``on_failure`` callback: a job that raised past its own handler (or was abandoned by a
    dead worker) marks its run failed with a plain reason. Never raises."""
    from rq.exceptions import AbandonedJobError

    run_id = job.args[0] if job.args else None
    if run_id is None:
        return

    def reason(run: Any) -> str:
        if isinstance(exc, AbandonedJobError):
            return failures.worker_lost_reason(run.phase)
        if exc_type.__name__ == "JobTimeoutException":
            return (
                f"The run took longer than the job time limit while "
                f"{failures.STEP_WORDS.get(run.phase, run.phase)}; nothing was applied; you "
                "can upload again now."
            )
        return failures.reason_for(exc, run.phase, run_id=run_id)

    try:
        with _app_context() as app:
            mark_failed(app, run_id, reason)
    except Exception:  # liveness ends the run when its heartbeat is stale
        log.exception("csvdirectory run %s: the failure callback failed", run_id)


def _worker_name() -> str:
    """Who runs this job: host and process id (shown on the run page)."""
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass(frozen=True)
class _InProcessRetry:
    """A job's request to be retried, where the ``[rq]`` extra is not installed (in-process
    and inline modes read only ``intervals``)."""

    max: int
    intervals: list[int]


def _retry(intervals: list[int]) -> Retry:
    """RQ's :class:`~rq.Retry` for these waits, or its in-process stand-in without RQ."""
    try:
        from rq import Retry
    except ImportError:
        return cast("Retry", _InProcessRetry(max=len(intervals), intervals=intervals))
    return Retry(max=len(intervals), interval=intervals)


def _current_rq_job() -> Any:
    try:
        from rq import get_current_job
    except ImportError:  # no [rq] extra: no job runs on RQ
        return None

    try:
        return get_current_job()
    except Exception:
        return None


class JobRunner:
    """Starts jobs in the configured mode. One per app, kept in the extension's state."""

    def __init__(
        self,
        app: Flask,
        mode: str,
        *,
        redis_url: str,
        queue_name: str,
        job_timeout: int,
        heartbeat_interval: float = 15.0,
        retry_intervals: tuple[int, ...] = (),
    ) -> None:
        self.app = app
        self.mode = mode
        self.redis_url = redis_url
        self.queue_name = queue_name
        self.job_timeout = job_timeout
        self.heartbeat_interval = heartbeat_interval
        self.retry_intervals = tuple(retry_intervals)
        self._executor: ThreadPoolExecutor | None = None
        self._redis: Any = None
        self._heartbeat: liveness.Heartbeat | None = None
        #: in-process modes: live progress and the runs whose job this process runs
        self._progress: dict[str, tuple[int, int]] = {}
        self._active: set[str] = set()

    # -- connections ----------------------------------------------------------------------

    def redis(self) -> Any:
        """The Redis connection of RQ mode (made on first use)."""
        if self._redis is None:
            from redis import Redis

            self._redis = Redis.from_url(self.redis_url)
        return self._redis

    def queue(self) -> Any:
        """The RQ queue the jobs go to."""
        from rq import Queue

        return Queue(self.queue_name, connection=self.redis())

    # -- starting jobs --------------------------------------------------------------------

    def enqueue(
        self, func: Callable[[str], Retry | None], run_id: str, job_id: str
    ) -> Future[Any] | str:
        """Start ``func(run_id)``; return the RQ job id, or a Future in the in-process modes."""
        if self.mode == "rq":
            from rq import Callback

            self.queue().enqueue_call(
                func,
                args=(run_id,),
                job_id=job_id,
                timeout=self.job_timeout,
                result_ttl=24 * 3600,
                failure_ttl=7 * 24 * 3600,
                on_failure=Callback(on_job_failure),
            )
            return job_id
        if self.mode == "sync":
            future: Future[None] = Future()
            try:
                self._call_with_retries(func, run_id)
                future.set_result(None)
            except Exception as exc:  # the job already recorded its failure on the run
                log.exception("csvdirectory job %s failed", job_id)
                future.set_exception(exc)
            return future
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="csvdirectory")
        self._active.add(run_id)
        self._shared_heartbeat().add(run_id)  # queued runs of this process are alive too
        return self._executor.submit(self._run_in_app, func, run_id, job_id)

    def _call_with_retries(self, func: Callable[[str], Retry | None], run_id: str) -> None:
        """Run a job outside RQ, honouring the :class:`~rq.Retry` it may return."""
        for attempt in range(len(self.retry_intervals) + 1):
            token = _attempt.set(attempt)
            try:
                retry = func(run_id)
            finally:
                _attempt.reset(token)
            if retry is None:
                return
            time.sleep(retry.intervals[min(attempt, len(retry.intervals) - 1)])
        raise RuntimeError(f"job for run {run_id} asked for more retries than configured")

    def _run_in_app(self, func: Callable[[str], Retry | None], run_id: str, job_id: str) -> None:
        try:
            with self.app.app_context():
                self._call_with_retries(func, run_id)
        except Exception:
            log.exception("csvdirectory job %s failed", job_id)
            raise
        finally:
            self._active.discard(run_id)
            self._shared_heartbeat().discard(run_id)
            with self.app.app_context():
                self.app.extensions["sqlalchemy"].session.remove()

    # -- liveness -------------------------------------------------------------------------

    def _shared_heartbeat(self) -> liveness.Heartbeat:
        if self._heartbeat is None:
            with self.app.app_context():
                engine = self.app.extensions["sqlalchemy"].engine
            self._heartbeat = liveness.Heartbeat(engine, self.heartbeat_interval)
        return self._heartbeat

    def beating(self, run_id: str) -> Any:
        """A context keeping ``run_id``'s heartbeat fresh while a job works on it."""
        if self.mode == "inprocess" and run_id in self._active:
            return nullcontext()  # this process's shared heartbeat beats it already
        with self.app.app_context():
            engine = self.app.extensions["sqlalchemy"].engine
        return liveness.Heartbeat(engine, self.heartbeat_interval).beating(run_id)

    def job_state(self, run_id: str, job_id: str | None) -> tuple[bool, Any]:
        """(waiting, seen_at) of the run's job: waiting when it is queued (or waiting for a
        retry) or runs in this process, so a silent heartbeat does not mean it died; seen_at,
        the latest of an RQ job's start and RQ's own heartbeat of it (or None)."""
        if run_id in self._active:
            return True, None
        if self.mode != "rq":
            return False, None
        from rq.job import JobStatus

        job = self._fetch(job_id)
        if job is None:
            return False, None
        status = job.get_status()
        if status in (JobStatus.QUEUED, JobStatus.DEFERRED, JobStatus.SCHEDULED):
            return True, None
        seen = [when for when in (job.started_at, job.last_heartbeat) if when is not None]
        return False, (
            max(when.replace(tzinfo=UTC) if when.tzinfo is None else when for when in seen)
            if status == JobStatus.STARTED and seen
            else None
        )

    # -- progress -------------------------------------------------------------------------

    def report(self, run_id: str, done: int | None, total: int | None) -> None:
        """Record live progress of a job (``None`` clears it): in the RQ job's meta when running
        on a worker, else in this process's memory. Never touches the database, whose
        transaction the apply holds open."""
        job = self._current_rq_job()
        if job is not None:
            job.meta["progress"] = None if done is None else [done, total]
            job.save_meta()
        elif done is None:
            self._progress.pop(run_id, None)
        else:
            self._progress[run_id] = (done, total or 0)

    def progress(self, run: Any) -> tuple[int, int] | None:
        """Live (done, total) of the run's job, when it reports any."""
        if self.mode != "rq":
            return self._progress.get(run.id)
        job = self._fetch(run.job_id)
        value = job.meta.get("progress") if job is not None else None
        return (int(value[0]), int(value[1])) if value else None

    def _fetch(self, job_id: str | None) -> Any:
        if not job_id:
            return None
        from rq.exceptions import NoSuchJobError
        from rq.job import Job

        try:
            return Job.fetch(job_id, connection=self.redis())
        except NoSuchJobError:
            return None

    def _current_rq_job(self) -> Any:
        if self.mode != "rq":
            return None
        return _current_rq_job()

    def wait_idle(self, timeout: float = 60) -> None:
        """In-process mode: wait until the background thread has run every job (tests, exit)."""
        if self._executor is not None:
            self._executor.submit(lambda: None).result(timeout=timeout)

    def make_worker(self, *, name: str | None = None, grace_seconds: float = 60) -> Any:
        """A :class:`~.worker.CSVDirectoryWorker` on this runner's queue."""
        app = self.app

        def horse_killed(job: Any, pid: int, status: int, rusage: Any) -> None:
            run_id = job.args[0] if job.args else None
            if run_id is None:
                return
            try:
                mark_failed(app, run_id, lambda run: failures.worker_lost_reason(run.phase))
            finally:
                connections.release_connections(app)

        wake = max(int(grace_seconds), 1)
        from .worker import CSVDirectoryWorker

        worker = CSVDirectoryWorker(
            [self.queue()],
            connection=self.redis(),
            name=name,
            work_horse_killed_handler=horse_killed,
            maintenance_interval=wake,
            # the loop waits for a job at most worker_ttl - 15 s, then runs maintenance
            worker_ttl=wake + 15,
        )
        worker.app = app
        return worker
