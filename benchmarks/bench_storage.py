"""Memory of storing and reading one large file in the encrypted file store (issue 14).

Each step runs in a fresh subprocess and prints the peak of Python allocations (tracemalloc) and
the growth of peak RSS during the step, for the segmented format and for one Fernet token of the
whole file (what the store wrote before; emulated with a segment size larger than the file).

Usage::

    python benchmarks/bench_storage.py                # 80 MB, SQLite
    python benchmarks/bench_storage.py --mb 80 --db postgresql+psycopg://postgres@127.0.0.1:5432/x
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import tracemalloc
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SINGLE = 1 << 40  # a segment size no file reaches: one Fernet token, as before


def rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def figures(traced_peak: int, rss_before: float) -> dict:
    return {
        "traced_peak_mb": round(traced_peak / 2**20),
        "rss_growth_mb": round(peak_rss_mb() - rss_before),
    }


def step(name: str, segment_size: int, mb: int, db_url: str | None, workdir: str) -> dict:
    from flask_csvdirectory.storage import FileStore

    store = FileStore([b"ZmVybmV0LWJlbmNoLWtleS0wMTIzNDU2Nzg5YWJjZGU="], segment_size=segment_size)
    data = os.urandom(mb << 20)
    if name in ("encrypt", "decrypt"):
        stored = store.encrypt_file(data) if name == "decrypt" else b""
        before = rss_mb()
        tracemalloc.start()
        result = store.encrypt_file(data) if name == "encrypt" else store.decrypt(stored)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert len(result) >= len(data)
        return figures(peak, before)

    from example_app import create_app
    from example_app.models import db
    from flask_csvdirectory import runs
    from flask_csvdirectory.models import SyncRun

    app = create_app(
        {
            "SQLALCHEMY_DATABASE_URI": db_url or f"sqlite:///{workdir}/bench.sqlite3",
            "SECRET_KEY": "bench",
            "CSVDIRECTORY_JOBS_MODE": "sync",
            "CSVDIRECTORY_MIN_SYNC_INTERVAL": timedelta(0),
            "EXAMPLE_SEED": False,
        }
    )
    with app.app_context():
        if name == "put":
            from flask_csvdirectory.models import metadata as own_metadata

            db.session.remove()
            own_metadata.drop_all(db.engine)
            db.drop_all()
            db.create_all()
            own_metadata.create_all(db.engine)
            runs.update_settings("default", runs.Actor(None, "bench"), enabled=True)
            run = runs.start_run(
                "default",
                runs.Upload("Users.csv", b"email,role\na@example.com,admin\n"),
                runs.Upload("Employees.csv", b"email\na@example.com\n"),
                runs.Actor(None, "bench"),
                enqueue=False,
            )
            Path(workdir, "run_id").write_text(run.id)
            before = rss_mb()
            tracemalloc.start()
            store.put(db.session, run, "large", "large.csv", data)
            db.session.commit()
        else:
            del data
            run = db.session.get(SyncRun, Path(workdir, "run_id").read_text())
            before = rss_mb()
            tracemalloc.start()
            result = store.get(run, "large")
            assert len(result) == mb << 20
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        db.session.remove()
        db.engine.dispose()
    return figures(peak, before)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mb", type=int, default=80)
    parser.add_argument("--db", default=os.environ.get("BENCH_DATABASE_URL"))
    parser.add_argument("--step")
    parser.add_argument("--segment-size", type=int)
    parser.add_argument("--workdir")
    args = parser.parse_args()
    if args.step:
        print(json.dumps(step(args.step, args.segment_size, args.mb, args.db, args.workdir)))
        return
    from flask_csvdirectory.storage import SEGMENT_SIZE

    for label, size in (("one token (before)", SINGLE), ("segmented", SEGMENT_SIZE)):
        workdir = tempfile.mkdtemp(prefix="csvd-bench-storage-")
        for name in ("encrypt", "decrypt", "put", "get"):
            command = [sys.executable, __file__, "--step", name, "--segment-size", str(size),
                       "--mb", str(args.mb), "--workdir", workdir]
            if args.db:
                command += ["--db", args.db]
            out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
            found = json.loads(out.strip().splitlines()[-1])
            print(
                f"{label:20} {name:8} {args.mb} MB file: Python peak "
                f"{found['traced_peak_mb']:4} MB, peak RSS growth {found['rss_growth_mb']:4} MB"
            )


if __name__ == "__main__":
    main()
