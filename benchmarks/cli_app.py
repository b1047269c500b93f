"""The example platform as ``benchmarks/bench_cli.py`` runs it (``--app benchmarks/cli_app.py``).

The same app as ``flask --app example_app`` with what repeated benchmark syncs need: no sync
window between runs, no approval threshold or removal safeguard to stop a run, no demo seed.
The database comes from ``DATABASE_URL`` (as for the example platform); the instance folder
(where nothing is written when ``SECRET_KEY`` and ``CSVDIRECTORY_ENCRYPTION_KEYS`` are set)
from ``BENCH_INSTANCE``.
"""

from __future__ import annotations

import os
import sys
from datetime import timedelta
from pathlib import Path

from flask import Flask

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from example_app import create_app as create_example_app  # noqa: E402


def create_app() -> Flask:
    """The example platform, configured for benchmark runs."""
    return create_example_app(
        {
            "EXAMPLE_SEED": False,
            "CSVDIRECTORY_JOBS_MODE": "sync",
            "CSVDIRECTORY_MIN_SYNC_INTERVAL": timedelta(0),
            "CSVDIRECTORY_DEFAULT_APPROVAL_THRESHOLD": 10**9,
            "CSVDIRECTORY_DEFAULT_GUARD_REMOVAL_PERCENT": None,
            "CSVDIRECTORY_DEFAULT_GUARD_REMOVAL_PEOPLE": None,
        },
        instance_path=os.environ.get("BENCH_INSTANCE"),
    )
