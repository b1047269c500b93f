"""Time plan_revert() and the applied record on large synthetic directories.

Run from the repository root::

    python benchmarks/bench_revert.py            # 100k and 1M rows
    python benchmarks/bench_revert.py 100000     # chosen sizes

Uses the fixtures of ``bench_planner.py``. Two scenarios per size: ``churn`` (revert a sync where
about 12% of the people changed something, 1% left and 1% joined) and ``initial`` (revert the
first import into an empty directory: every person created; its only admin is kept, since a
revert never leaves no active admin). For each it applies the sync to an
``InMemoryAdapter``, then times ``plan_revert`` against the resulting snapshot (best of a few
runs; one at 1M), checks that applying the revert gives back the people as they were, and
reports the applied record (the change set with its before-values): its stored size and what
reading it back costs a revert (decrypt and load). Recording it costs an apply nothing more: it
is a copy of the stored plan's ciphertext.
"""

from __future__ import annotations

import gc
import os
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_planner import best_of, directory, employee_rows, users_rows  # noqa: E402

from flask_csvdirectory.changes import ChangeSet  # noqa: E402
from flask_csvdirectory.planner import plan  # noqa: E402
from flask_csvdirectory.records import DirectorySnapshot, TeamRecord  # noqa: E402
from flask_csvdirectory.revert import plan_revert  # noqa: E402
from flask_csvdirectory.storage import FileStore, derive_key  # noqa: E402
from flask_csvdirectory.testing import InMemoryAdapter  # noqa: E402

ORG = "bench"


def bench(n: int) -> None:
    runs = 1 if n >= 1_000_000 else 3
    store = FileStore([derive_key("bench")])
    empty = DirectorySnapshot.build(
        [], [TeamRecord(str(t), f"Team {t}") for t in range(200)], []
    )
    load = os.getloadavg()[0]
    print(f"\n== {n:,} employees (best of {runs}, load average {load:.1f} on "
          f"{os.cpu_count()} CPUs)")  # fmt: skip
    for name, churn, before in (("churn", True, directory(n)), ("initial", False, empty)):
        changeset = plan(users_rows(churn=churn), employee_rows(n, churn=churn), before)
        adapter = InMemoryAdapter.from_snapshot(before, ORG)
        adapter.apply(ORG, changeset)
        after = adapter.snapshot(ORG)

        record = store.encrypt(changeset.to_bytes())
        gc.collect()
        started, started_cpu = time.perf_counter(), time.process_time()
        ChangeSet.from_bytes(store.decrypt(record))
        load_s, load_cpu = time.perf_counter() - started, time.process_time() - started_cpu

        wall, cpu, result = best_of(runs, lambda a=changeset, s=after: plan_revert(a, s))
        inverse = result.changeset  # type: ignore[attr-defined]
        counts = {k: v for k, v in inverse.counts().items() if v}
        adapter.apply(ORG, inverse)
        restored = {p.key: p for p in adapter.snapshot(ORG).people}
        assert all(restored[p.key] == p for p in before.people), "not restored"
        created = set(restored) - {p.key for p in before.people}
        kept = {c.subject for c in result.conflicts}  # type: ignore[attr-defined]
        # (the initial import made the only admin: the revert keeps them, as a conflict)
        assert all(not restored[k].active or restored[k].email in kept for k in created)
        print(f"{name:8} sync {len(changeset):>9,} changes   plan_revert {wall * 1000:7.0f} ms "
              f"(cpu {cpu * 1000:7.0f})   {len(inverse):>9,} inverse changes, "
              f"{len(result.conflicts)} conflicts {counts}")  # type: ignore[attr-defined]  # fmt: skip
        print(f"{'':8} applied record {len(record) / 2**20:5.1f} MiB stored, "
              f"decrypt+load {load_s * 1000:6.0f} ms (cpu {load_cpu * 1000:6.0f})")
        del adapter, after, result, inverse, restored
        gc.collect()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"memory   process peak RSS {rss:.0f} MiB (fixtures, adapter and results included)")


def main(argv: list[str]) -> None:
    for n in [int(arg) for arg in argv] or [100_000, 1_000_000]:
        bench(n)


if __name__ == "__main__":
    main(sys.argv[1:])
