"""End-to-end sync benchmark: prints figures, asserts nothing (targets are read, not tested).

Cases, each in a fresh subprocess so peak memory (ru_maxrss) is its own:

- ``first``: first import of an N-row Employees.csv (200 teams) with a 1,000-row Users.csv
  through ``runs.start_run`` on the example platform and the reference SQLAlchemy adapter
  (store encrypted, parse, validate, plan, apply), then a re-sync of the same files;
- ``noop``: the re-sync alone, in a fresh process, of a directory a first import (in another
  process) filled: its peak RSS is the no-op's own (``--case noop --rows 1000000``);
- ``plan``: read, validate and plan an N-row file against an empty directory (no database).

The files are generated once into a temporary folder and read as one ``bytes`` each, as an
upload arrives, so the figures do not include the generator's own memory.

Usage::

    python benchmarks/bench_sync.py          # SQLite: 100k end to end (3 runs), plan 250k..1M
    python benchmarks/bench_sync.py --db postgresql+psycopg://postgres@127.0.0.1:5432/test
    python benchmarks/bench_sync.py --case first --rows 100000
    python benchmarks/bench_sync.py --case first --rows 1000000 --only-first   # first import
    python benchmarks/bench_sync.py --case noop --rows 1000000                 # no-op re-sync
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TEAMS = 200
USERS = 1000


def employees_file(rows: int) -> bytes:
    """The generated Employees.csv, cached on disk (``CSVD_BENCH_FILES`` names the folder)."""
    cache = os.environ.get("CSVD_BENCH_FILES")
    if cache:
        path = Path(cache) / f"employees-{rows}.csv"
        if not path.exists():
            path.write_bytes(_employees_file(rows))
        return path.read_bytes()
    return _employees_file(rows)


def _employees_file(rows: int) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["email", "employee_id", "first_name", "last_name", "team", "title"])
    for n in range(rows):
        writer.writerow(
            [f"person{n}@example.com", f"E{n:07d}", f"First{n}", f"Last{n}",
             f"Team {n % TEAMS:03d}", "Associate"]
        )
    return out.getvalue().encode()


def users_file() -> bytes:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["email", "name", "role", "teams"])
    for n in range(USERS):
        if n < 10:
            writer.writerow([f"person{n}@example.com", f"Admin {n}", "Admin", "*"])
        else:
            scope = ";".join(f"Team {(n + k) % TEAMS:03d}" for k in range(3))
            writer.writerow([f"person{n}@example.com", f"Manager {n}", "Manager", scope])
    return out.getvalue().encode()


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def case_first(
    rows: int,
    db_url: str | None,
    *,
    workdir: str | None = None,
    labels: tuple[str, ...] = ("first_import", "resync"),
    fresh: bool = True,
) -> dict:
    from example_app import create_app
    from example_app.models import db
    from flask_csvdirectory import runs
    from flask_csvdirectory.models import SyncRun
    from flask_csvdirectory.models import metadata as own_metadata

    workdir = workdir or tempfile.mkdtemp(prefix="csvd-bench-")
    app = create_app(
        {
            "SQLALCHEMY_DATABASE_URI": db_url or f"sqlite:///{workdir}/bench.sqlite3",
            "SECRET_KEY": "bench",
            "CSVDIRECTORY_JOBS_MODE": "sync",
            "CSVDIRECTORY_MIN_SYNC_INTERVAL": timedelta(0),
            "CSVDIRECTORY_DEFAULT_APPROVAL_THRESHOLD": 10**9,
            "EXAMPLE_SEED": False,
        }
    )
    users, employees = users_file(), employees_file(rows)
    result: dict = {"case": "first" if fresh else "noop", "rows": rows}
    with app.app_context():
        if db_url and fresh:  # start from empty tables on a shared server
            db.session.remove()
            own_metadata.drop_all(db.engine)
            db.drop_all()
            db.create_all()
            own_metadata.create_all(db.engine)
        result["db"] = db.engine.dialect.name
        runs.update_settings("default", runs.Actor(None, "bench"), enabled=True)
        for label in labels:
            started = time.perf_counter()
            run = runs.start_run(
                "default", runs.Upload("Users.csv", users),
                runs.Upload("Employees.csv", employees), runs.Actor(None, "bench"),
            )
            elapsed = time.perf_counter() - started
            db.session.expire_all()
            run = db.session.get(SyncRun, run.id)
            assert run.status == "Auto-Approved", run.error_reason
            result[label] = {
                "seconds": round(elapsed, 2),
                "changes": run.change_count,
                "phases": run.timings,
            }
        db.session.remove()
        db.engine.dispose()
    result["peak_rss_mb"] = round(peak_mb())
    return result


def case_plan(rows: int) -> dict:
    from flask_csvdirectory.pipeline import build_plan
    from flask_csvdirectory.records import DirectorySnapshot

    users, employees = users_file(), employees_file(rows)
    baseline = peak_mb()
    started = time.perf_counter()
    outcome = build_plan(users, employees, DirectorySnapshot.build([], [], []))
    elapsed = time.perf_counter() - started
    return {
        "case": "plan",
        "rows": rows,
        "file_mb": round(len(employees) / 2**20, 1),
        "seconds": round(elapsed, 2),
        "us_per_row": round(elapsed / rows * 1e6, 2),
        "changes": outcome.changeset.count,
        "phases": outcome.timings,
        "peak_rss_mb": round(peak_mb()),
        "rss_before_mb": round(baseline),
    }


def run_child(args: list[str]) -> dict:
    output = subprocess.run(
        [sys.executable, __file__, *args], capture_output=True, text=True, check=True, cwd=ROOT
    ).stdout
    return json.loads(output.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", choices=["first", "noop", "plan"])
    parser.add_argument(
        "--only-first", action="store_true", help="first: the first import alone (no re-sync)"
    )
    parser.add_argument("--workdir", help=argparse.SUPPRESS)  # the SQLite folder of a pair
    parser.add_argument("--noop-child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--db", default=os.environ.get("BENCH_DATABASE_URL"))
    parser.add_argument("--repeat", type=int, default=3, help="runs of the end-to-end case")
    args = parser.parse_args()
    if not os.environ.get("CSVD_BENCH_FILES"):
        os.environ["CSVD_BENCH_FILES"] = tempfile.mkdtemp(prefix="csvd-bench-files-")
    if args.case == "first":
        labels = ("first_import",) if args.only_first else ("first_import", "resync")
        print(json.dumps(case_first(args.rows, args.db, workdir=args.workdir, labels=labels)))
        return
    if args.case == "noop" and args.noop_child:
        print(
            json.dumps(
                case_first(
                    args.rows, args.db, workdir=args.workdir, labels=("resync",), fresh=False
                )
            )
        )
        return
    if args.case == "noop":
        workdir = tempfile.mkdtemp(prefix="csvd-bench-")
        db_args = ["--db", args.db] if args.db else []
        common = ["--rows", str(args.rows), "--workdir", workdir, *db_args]
        first = run_child(["--case", "first", "--only-first", *common])
        print(json.dumps(first))
        print(json.dumps(run_child(["--case", "noop", "--noop-child", *common])))
        return
    if args.case == "plan":
        print(json.dumps(case_plan(args.rows)))
        return

    print(f"flask-csvdirectory sync benchmark ({os.cpu_count()} cores)")
    db_args = ["--db", args.db] if args.db else []
    trials = [
        run_child(["--case", "first", "--rows", str(args.rows), *db_args])
        for _ in range(args.repeat)
    ]
    first = trials[0]
    for label, name in (("first_import", "first import"), ("resync", "re-sync (no changes)")):
        seconds = sorted(trial[label]["seconds"] for trial in trials)
        print(
            f"[{first['db']}] {name} of {first['rows']:,} employees + {USERS:,} users, "
            f"{TEAMS} teams: median {statistics.median(seconds)} s, best {seconds[0]} s "
            f"over {len(seconds)} runs ({first[label]['changes']:,} changes; phases of the "
            f"first run {first[label]['phases']})"
        )
    print(f"[{first['db']}] peak RSS {max(trial['peak_rss_mb'] for trial in trials)} MB")
    for rows in (250_000, 500_000, 1_000_000):
        plan = run_child(["--case", "plan", "--rows", str(rows)])
        print(
            f"plan {plan['rows']:>9,} rows ({plan['file_mb']} MB): {plan['seconds']} s, "
            f"{plan['us_per_row']} us/row, peak RSS {plan['peak_rss_mb']} MB "
            f"(phases {plan['phases']})"
        )


if __name__ == "__main__":
    main()
