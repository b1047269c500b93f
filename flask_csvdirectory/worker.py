"""The RQ worker of ``flask csvdirectory worker`` (needs the ``[rq]`` extra)."""

from __future__ import annotations

from typing import Any

from flask import Flask
from rq import Worker

from . import connections, liveness


class CSVDirectoryWorker(Worker):
    """The RQ worker of ``flask csvdirectory worker``, bound to one app.

    - the parent process holds no database connection when it forks: every piece of database
      work it does (ending dead runs, recording a killed work-horse) releases its connections;
    - a work-horse first drops the pools it inherited, so its job opens fresh connections;
    - a killed work-horse ends its run at once with a plain reason;
    - its loop wakes at least once per heartbeat grace and ends dead runs.
    """

    app: Flask

    def main_work_horse(self, job: Any, queue: Any) -> None:
        connections.after_fork(self.app)
        super().main_work_horse(job, queue)

    def run_maintenance_tasks(self) -> None:
        super().run_maintenance_tasks()  # type: ignore[no-untyped-call]
        self.end_dead_runs()

    def end_dead_runs(self) -> None:
        """End runs whose job died (see :mod:`.liveness`); never raises."""
        try:
            with self.app.app_context():
                ended = liveness.end_dead_runs()
            if ended:
                self.log.warning("csvdirectory: ended %d dead run(s)", ended)
        except Exception:
            self.log.exception("csvdirectory: ending dead runs failed")
        finally:
            connections.release_connections(self.app)
