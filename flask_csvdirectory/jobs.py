"""Jobs: the two steps of a run that happen off the request, and the seam that runs them.

Job functions (:func:`process_run`, :func:`apply_run`) are plain module-level functions taking a
run id, so any RQ worker that can import this package runs them. Inside a Flask app context (the
``flask csvdirectory worker`` command, the in-process mode) they use that app; in a bare
``rq worker`` they load the app named by ``FLASK_APP``.

:class:`JobRunner` is the seam, in three modes (``CSVDIRECTORY_JOBS_MODE``):

- ``rq``: enqueue on Redis with a deterministic job id and an ``on_failure`` callback;
- ``inprocess``: a single background thread of the web process (the embedded default);
- ``sync``: run inline, now (tests, the CLI).
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

from flask import Flask, current_app, has_app_context

log = logging.getLogger(__name__)


@contextmanager
def _app_context() -> Iterator[Flask]:
    """The current app, or the one ``FLASK_APP`` names when a bare worker runs the job."""
    if has_app_context():
        yield current_app._get_current_object()  # type: ignore[attr-defined]
        return
    from flask.cli import ScriptInfo

    # a bare `rq worker`: the same app the web process runs, named by FLASK_APP
    app = ScriptInfo(app_import_path=os.environ.get("FLASK_APP")).load_app()
    with app.app_context():
        yield app


def process_run(run_id: str) -> None:
    """Job: read, validate and plan a run; then apply it or wait for approval."""
    from . import runs

    with _app_context():
        runs.process(run_id, worker=_worker_name())


def apply_run(run_id: str) -> None:
    """Job: apply an approved run (re-planning first to catch drift)."""
    from . import runs

    with _app_context():
        runs.apply_approved(run_id, worker=_worker_name())


def on_job_failure(job: Any, connection: Any, exc_type: type, exc: BaseException, tb: Any) -> None:
    """RQ ``on_failure`` callback: a job that raised past its own handler marks its run failed."""
    from . import runs

    run_id = job.args[0] if job.args else None
    if run_id is None:
        return
    with _app_context():
        runs.mark_failed_if_unfinished(run_id, f"The job failed: {exc_type.__name__}: {exc}")


def _worker_name() -> str:
    """Who runs this job: host and process id (shown on the run page)."""
    return f"{socket.gethostname()}:{os.getpid()}"


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
    ) -> None:
        self.app = app
        self.mode = mode
        self.redis_url = redis_url
        self.queue_name = queue_name
        self.job_timeout = job_timeout
        self._executor: ThreadPoolExecutor | None = None
        self._redis: Any = None
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
        self, func: Callable[[str], None], run_id: str, job_id: str
    ) -> Future[None] | str:
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
                func(run_id)
                future.set_result(None)
            except Exception as exc:  # the job already recorded its failure on the run
                log.exception("csvdirectory job %s failed", job_id)
                future.set_exception(exc)
            return future
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="csvdirectory")
        self._active.add(run_id)
        return self._executor.submit(self._run_in_app, func, run_id, job_id)

    def _run_in_app(self, func: Callable[[str], None], run_id: str, job_id: str) -> None:
        try:
            with self.app.app_context():
                func(run_id)
        except Exception:
            log.exception("csvdirectory job %s failed", job_id)
            raise
        finally:
            self._active.discard(run_id)

    # -- progress and liveness ------------------------------------------------------------

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

    def is_stuck(self, run: Any, now: Any, stuck_after: Any) -> bool:
        """Whether an unfinished run's job can no longer finish it."""
        from datetime import timedelta

        silent = now - (run.heartbeat_at or run.created_at)
        hard_limit = timedelta(seconds=self.job_timeout + 60)
        if self.mode != "rq":
            if run.id in self._active:
                return bool(silent > hard_limit)
            return bool(silent > stuck_after)
        from rq.job import JobStatus

        job = self._fetch(run.job_id)
        status = job.get_status() if job is not None else None
        if status in (JobStatus.QUEUED, JobStatus.DEFERRED, JobStatus.SCHEDULED):
            return False
        if status == JobStatus.STARTED:
            return bool(silent > hard_limit)
        return bool(silent > timedelta(seconds=30))

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
        from rq import get_current_job

        return get_current_job()

    def wait_idle(self, timeout: float = 60) -> None:
        """In-process mode: wait until the background thread has run every job (tests, exit)."""
        if self._executor is not None:
            self._executor.submit(lambda: None).result(timeout=timeout)

    def make_worker(self, *, name: str | None = None) -> Any:
        """An RQ worker on this runner's queue that marks a run failed if its horse is killed."""
        from rq import Worker

        app = self.app

        def horse_killed(job: Any, pid: int, status: int, rusage: Any) -> None:
            from . import runs

            with app.app_context():
                runs.mark_failed_if_unfinished(
                    job.args[0],
                    f"The worker process running this job was killed (exit status {status}). "
                    "Nothing was applied.",
                )

        return Worker(
            [self.queue()],
            connection=self.redis(),
            name=name,
            work_horse_killed_handler=horse_killed,
        )
