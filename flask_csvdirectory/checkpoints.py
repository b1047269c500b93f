"""Named pause points on the job path, for fault-injection tests. Inert in production.

The reading, planning and apply steps call :func:`checkpoint` with a name at the moments a fault
test wants to strike: "reading", "planning", "apply:start", "apply:teams-inserted",
"apply:people-inserted", "apply:people-updated", "apply:access-updated", "apply:copy" (in the
middle of a bulk ``COPY``). Unless ``CSVDIRECTORY_PAUSE_DIR`` names a directory, a checkpoint
returns at once.

With a pause directory, a test arms a point by creating ``<dir>/<name>.pause``. The first job
to reach an armed point takes the file (one shot), writes ``<dir>/<name>.reached`` holding
``{"pid": ..., "backend_pid": ...}`` (its process and, given a connection, its PostgreSQL
backend), then waits until ``<dir>/<name>.release`` exists. While it waits the test kills the
process, terminates the backend, or does whatever fault it injects, then releases it (or not);
a released job removes the point's files, so the point can be armed again.
File names use the point name with ``:`` replaced by ``-``.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from flask import current_app, has_app_context

#: Longest a paused job waits for its release before going on by itself.
MAX_PAUSE_SECONDS = 300.0


def pause_dir() -> Path | None:
    """The configured pause directory, or None (production)."""
    if not has_app_context():
        return None
    value = current_app.config.get("CSVDIRECTORY_PAUSE_DIR")
    return Path(value) if value else None


def checkpoint(name: str, connection: Any = None) -> None:
    """Pause here if a test armed the point ``name`` (see the module docstring).

    ``connection``: a SQLAlchemy connection or session whose PostgreSQL backend pid the test
    should learn (to terminate that backend).
    """
    directory = pause_dir()
    if directory is None:
        return
    stem = directory / name.replace(":", "-")
    armed = stem.with_suffix(".pause")
    taken = stem.with_suffix(".taken")
    try:
        os.rename(armed, taken)  # atomic: one job takes an armed point
    except FileNotFoundError:
        return
    info: dict[str, Any] = {"pid": os.getpid(), "backend_pid": None}
    if connection is not None:
        from sqlalchemy import text

        try:
            info["backend_pid"] = connection.execute(text("SELECT pg_backend_pid()")).scalar()
        except Exception:  # not PostgreSQL
            info["backend_pid"] = None
    reached = stem.with_suffix(".reached")
    reached.with_suffix(".tmp").write_text(json.dumps(info))
    os.replace(reached.with_suffix(".tmp"), reached)
    release = stem.with_suffix(".release")
    deadline = time.monotonic() + MAX_PAUSE_SECONDS
    while not release.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    for done in (release, reached, taken):  # the point can be armed again
        done.unlink(missing_ok=True)
