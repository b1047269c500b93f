"""Time reverting a sync on large synthetic directories; print time and peak memory.

Run from the repository root::

    python benchmarks/bench_revert.py            # 100k and 1M rows
    python benchmarks/bench_revert.py 100000     # chosen sizes
    python benchmarks/bench_revert.py --tracemalloc 100000   # also Python allocations (slower)

Uses the fixtures of ``bench_planner.py``. Two scenarios per size: ``churn`` (revert a sync where
about 12% of the people changed something, 1% left and 1% joined) and ``initial`` (revert the
first import into an empty directory: every person created; its only admin is kept, since a
revert never leaves no active admin). For each it applies the sync to an ``InMemoryAdapter``,
stores the applied record as runs store it (encrypted pages and an index,
:func:`.changestore.record`, in an SQLite file), and then times what a revert run's planning
does: open the record and ``plan_revert`` it against the directory of today, the record streamed
kind by kind from its pages (``revert``). It reports the process's peak RSS during that step
(the kernel's high-water mark, reset just before it) and how far it rose above the RSS before
it, and checks that applying the revert gives back the people as they were. ``plan only`` is
``plan_revert`` of the same change set held in memory (best of a few runs; one at 1M), the
figure the old benchmark printed. The figures measured before this work are printed beside.
"""

from __future__ import annotations

import gc
import json
import os
import pickle
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_planner import best_of, directory, employee_rows, users_rows  # noqa: E402
from sqlalchemy import create_engine  # noqa: E402
from sqlalchemy.orm import Session  # noqa: E402

from flask_csvdirectory import changestore, review  # noqa: E402
from flask_csvdirectory.models import RunStatus, SyncRun, metadata  # noqa: E402
from flask_csvdirectory.planner import plan  # noqa: E402
from flask_csvdirectory.records import DirectorySnapshot, TeamRecord  # noqa: E402
from flask_csvdirectory.revert import plan_revert  # noqa: E402
from flask_csvdirectory.storage import FileStore, derive_key  # noqa: E402
from flask_csvdirectory.testing import InMemoryAdapter  # noqa: E402

ORG = "bench"

#: Measured before the record was streamed (issue 14): (size, scenario) -> what was printed.
BEFORE = {
    (100_000, "initial"): "plan_revert 1.12 s (98,501 changes) + decrypt+load of the "
    "record 1.43 s; process peak 587 MiB",
    (1_000_000, "initial"): "revert of the first import 71 s, 4.2 GiB peak RSS",
}


def _rss_mib(field: str) -> float:
    """``VmRSS`` (now) or ``VmHWM`` (peak) of this process, in MiB."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _reset_peak() -> bool:
    """Reset the kernel's peak-RSS mark of this process (Linux); ``False`` when it cannot."""
    try:
        with open("/proc/self/clear_refs", "w") as clear:
            clear.write("5")
    except OSError:
        return False
    return True


def _store(workdir: str) -> tuple[FileStore, Session]:
    engine = create_engine(f"sqlite:///{workdir}/bench.sqlite3")
    metadata.create_all(engine)
    return FileStore([derive_key("bench")]), Session(engine)


def bench(n: int, workdir: str, trace: bool) -> None:
    runs = 1 if n >= 1_000_000 else 3
    store, session = _store(workdir)
    empty = DirectorySnapshot.build(
        [], [TeamRecord(str(t), f"Team {t}") for t in range(200)], []
    )
    load = os.getloadavg()[0]
    print(f"\n== {n:,} employees (plan only: best of {runs}; load average {load:.1f} on "
          f"{os.cpu_count()} CPUs)")  # fmt: skip
    for name, churn in (("churn", True), ("initial", False)):
        before = directory(n) if churn else empty
        changeset = plan(users_rows(churn=churn), employee_rows(n, churn=churn), before)
        adapter = InMemoryAdapter.from_snapshot(before, ORG)
        adapter.apply(ORG, changeset)
        after = adapter.snapshot(ORG)
        del adapter
        wall, cpu, _ = best_of(runs, lambda a=changeset, s=after: plan_revert(a, s))
        run = SyncRun(org=ORG, channel="api", status=RunStatus.AUTO_APPROVED.value,
                      uploaded_by_name="bench")  # fmt: skip
        session.add(run)
        session.flush()
        changestore.record(store, session, run, changeset, review.People())
        session.commit()
        synced = len(changeset)
        del changeset
        gc.collect()

        with open(f"{workdir}/snapshot.pickle", "wb") as out:
            pickle.dump(after, out, protocol=pickle.HIGHEST_PROTOCOL)
        command = [sys.executable, __file__, "--measure", workdir, str(run.id)]
        if trace:
            command.append("--tracemalloc")
        child = subprocess.run(command, check=True, capture_output=True, text=True)
        measured = json.loads(child.stdout.strip().splitlines()[-1])
        stored = changestore.open_changes(store, session, run)
        assert stored is not None
        result = plan_revert(stored, after)  # again here, to check what it gives
        session.expunge_all()

        inverse = result.changeset
        counts = {k: v for k, v in inverse.counts().items() if v}
        adapter = InMemoryAdapter.from_snapshot(after, ORG)
        adapter.apply(ORG, inverse)
        restored = {p.key: p for p in adapter.snapshot(ORG).people}
        assert all(restored[p.key] == p for p in before.people), "not restored"
        created = set(restored) - {p.key for p in before.people}
        kept = {c.subject for c in result.conflicts}
        # (the initial import made the only admin: the revert keeps them, as a conflict)
        assert all(not restored[k].active or restored[k].email in kept for k in created)
        print(f"{name:8} sync {synced:>9,} changes -> {len(inverse):>9,} inverse changes, "
              f"{len(result.conflicts)} conflicts {counts}")  # fmt: skip
        traced = measured.get("traced")
        print(f"{'':8} revert (read the stored record + plan) {measured['seconds']:6.2f} s "
              f"(cpu {measured['cpu']:6.2f})   plan only {wall:6.2f} s "
              f"(cpu {cpu:6.2f})")  # fmt: skip
        print(f"{'':8} memory: peak RSS {measured['peak']:5.0f} MiB during the revert, "
              f"{measured['peak'] - measured['rss']:+5.0f} MiB above the "
              f"{measured['rss']:.0f} MiB of a process holding the directory snapshot"
              + (f"; Python allocations peak {traced:.0f} MiB" if traced else ""))  # fmt: skip
        if (n, name) in BEFORE:
            print(f"{'':8} before: {BEFORE[n, name]}")
        del adapter, after, result, inverse, restored, stored, before
        gc.collect()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"process  peak RSS over the whole run {rss:.0f} MiB (fixtures and checks included)")


def measure(workdir: str, run_id: str, trace: bool) -> None:
    """In a fresh process: load the directory snapshot, then time and measure what a revert
    run's planning does (open the stored record and plan its inverse); print JSON."""
    store, session = _store(workdir)
    with open(f"{workdir}/snapshot.pickle", "rb") as source:
        snapshot = pickle.load(source)
    gc.collect()
    run = session.get(SyncRun, run_id)
    assert run is not None
    rss_before = _rss_mib("VmRSS")
    peak_known = _reset_peak()
    started, started_cpu = time.perf_counter(), time.process_time()
    stored = changestore.open_changes(store, session, run)
    assert stored is not None
    result = plan_revert(stored, snapshot)
    figures: dict[str, float] = {
        "seconds": time.perf_counter() - started,
        "cpu": time.process_time() - started_cpu,
        "rss": rss_before,
        "peak": _rss_mib("VmHWM") if peak_known else float("nan"),
    }
    if trace:
        del result, stored
        gc.collect()
        tracemalloc.start()
        stored = changestore.open_changes(store, session, run)
        assert stored is not None
        result = plan_revert(stored, snapshot)
        figures["traced"] = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
    print(json.dumps(figures))


def main(argv: list[str]) -> None:
    if argv[:1] == ["--measure"]:
        measure(argv[1], argv[2], "--tracemalloc" in argv)
        return
    trace = "--tracemalloc" in argv
    sizes = [int(arg) for arg in argv if not arg.startswith("--")] or [100_000, 1_000_000]
    with tempfile.TemporaryDirectory(prefix="csvd-bench-revert-") as workdir:
        for n in sizes:
            bench(n, workdir, trace)


if __name__ == "__main__":
    main(sys.argv[1:])
