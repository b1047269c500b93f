"""Time check_pair() and plan() on large synthetic directories.

Run from the repository root::

    python benchmarks/bench_planner.py            # 100k and 1M rows
    python benchmarks/bench_planner.py 100000     # chosen sizes

Three scenarios per size: ``steady`` (the files say what the directory says: no change),
``churn`` (about 12% of the rows change something, 1% leave, 1% join) and ``initial`` (an empty
directory: every row is new). Times are the best of a few runs (one run at 1M and above). At the
largest size it also reports the peak memory plan() allocates (tracemalloc, a separate run) and
the process's peak RSS.
"""

from __future__ import annotations

import gc
import os
import resource
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from flask_csvdirectory.changes import ChangeSet  # noqa: E402
from flask_csvdirectory.planner import check_pair, plan  # noqa: E402
from flask_csvdirectory.records import (  # noqa: E402
    ALL_TEAMS,
    AccessRecord,
    DirectorySnapshot,
    PersonRecord,
    Role,
    TeamRecord,
)
from flask_csvdirectory.rows import EmployeeRow, UserRow  # noqa: E402

TEAM_COUNT = 200
MANAGERS = 500


def directory(n: int) -> DirectorySnapshot:
    """``n`` people over TEAM_COUNT teams, one in 50 inactive, MANAGERS managers + an admin."""
    teams = [TeamRecord(str(t), f"Team {t}") for t in range(TEAM_COUNT)]
    people = [
        PersonRecord(
            key=str(i),
            email=f"person{i}@example.com",
            first_name=f"First{i}",
            last_name=f"Last{i}",
            title="Engineer",
            team=f"Team {i % TEAM_COUNT}",
            active=i % 50 != 0,
            external_id=f"E{i}",
            extra={"cost_center": str(i % 97)},
        )
        for i in range(n)
    ]
    access = [AccessRecord("person1@example.com", Role.ADMIN, (ALL_TEAMS,), "", "1")]
    access += [
        AccessRecord(
            f"person{i}@example.com", Role.MANAGER, (f"Team {i % TEAM_COUNT}",), "", str(i)
        )
        for i in range(2, 2 + MANAGERS)
    ]
    return DirectorySnapshot.build(people, teams, access)


def users_rows(*, churn: bool) -> list[UserRow]:
    """The admin and the managers; with ``churn`` one in ten manager scopes changes (and the
    managers whose email changes are listed under the new one)."""
    rows = [UserRow(2, "person1@example.com", Role.ADMIN, (ALL_TEAMS,))]
    for i in range(2, 2 + MANAGERS):
        team = (i + (churn and i % 10 == 0)) % TEAM_COUNT
        domain = "new.example.com" if churn and i % 100 == 7 else "example.com"  # see below
        rows.append(UserRow(i + 1, f"person{i}@{domain}", Role.MANAGER, (f"team {team}",)))
    return rows


def employee_rows(n: int, *, churn: bool) -> list[EmployeeRow]:
    """Rows for the active people of :func:`directory`; with ``churn``, every kind of change."""
    rows = []
    for i in range(n):
        if i % 50 == 0 and not (churn and i % 100 == 50):
            continue  # inactive, stays so (churn: half of them come back)
        email, first, team, title, cost = (
            f"person{i}@example.com",
            f"First{i}",
            f"Team {i % TEAM_COUNT}",
            "Engineer",
            str(i % 97),
        )
        if churn:
            bucket = i % 100
            if bucket == 0:
                continue  # leaves: deactivated
            if bucket < 5:
                first = f"Renamed{i}"
            elif bucket < 7:
                team = f"team {(i + 1) % TEAM_COUNT}"  # moved (other spelling)
            elif bucket == 7:
                email = f"person{i}@new.example.com"  # email change, matched by employee_id
            elif bucket == 8:
                team = f"New team {i // 100 % 20}"  # moved into a new team
            elif bucket < 12:
                cost = "changed"
            elif bucket == 12:
                title = "Manager"
        rows.append(
            EmployeeRow(
                line=i + 2,
                email=email,
                team=team,
                first_name=first,
                last_name=f"Last{i}",
                title=title,
                employee_id=f"E{i}",
                extra={"cost_center": cost},
            )
        )
    if churn:  # 1% joiners
        rows += [
            EmployeeRow(n + j + 2, f"joiner{j}@example.com", "Team 1", employee_id=f"J{j}")
            for j in range(n // 100)
        ]
    return rows


def best_of(runs: int, func: Callable[[], object]) -> tuple[float, float, object]:
    """The best wall-clock and CPU seconds of ``runs`` calls, and the last result."""
    wall = cpu = float("inf")
    result = None
    for _ in range(runs):
        gc.collect()
        started, started_cpu = time.perf_counter(), time.process_time()
        result = func()
        wall = min(wall, time.perf_counter() - started)
        cpu = min(cpu, time.process_time() - started_cpu)
    return wall, cpu, result


def bench(n: int, *, measure_memory: bool) -> None:
    runs = 1 if n >= 1_000_000 else 5
    started = time.perf_counter()
    full = directory(n)
    empty = DirectorySnapshot.build([], [TeamRecord(str(t), f"Team {t}") for t in range(200)], [])
    scenarios = {
        "steady": (users_rows(churn=False), employee_rows(n, churn=False), full),
        "churn": (users_rows(churn=True), employee_rows(n, churn=True), full),
        "initial": (users_rows(churn=False), employee_rows(n, churn=False), empty),
    }
    load = os.getloadavg()[0]
    print(f"\n== {n:,} employees, {len(full.people):,}-person directory "
          f"(fixtures built in {time.perf_counter() - started:.1f} s, best of {runs}, "
          f"load average {load:.1f} on {os.cpu_count()} CPUs)")  # fmt: skip
    for name, (users, employees, snapshot) in scenarios.items():
        check_s, check_cpu, errors = best_of(
            runs, lambda u=users, e=employees, s=snapshot: check_pair(u, e, s)
        )
        assert errors == [], errors[:3]  # type: ignore[index]
        plan_s, plan_cpu, changeset = best_of(
            runs, lambda u=users, e=employees, s=snapshot: plan(u, e, s)
        )
        assert isinstance(changeset, ChangeSet)
        counts = {k: v for k, v in changeset.counts().items() if v}
        print(f"{name:8} check_pair {check_s * 1000:6.0f} ms (cpu {check_cpu * 1000:6.0f})   "
              f"plan {plan_s * 1000:6.0f} ms (cpu {plan_cpu * 1000:6.0f})   "
              f"{len(changeset):>7,} changes {counts}")  # fmt: skip
    if measure_memory:
        for label, func, scenario in (
            ("check_pair churn", check_pair, "churn"),
            ("plan churn", plan, "churn"),
            ("plan initial", plan, "initial"),
        ):
            users, employees, snapshot = scenarios[scenario]
            gc.collect()
            tracemalloc.start()
            result = func(users, employees, snapshot)
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
            del result
            print(f"memory   {label:17} peak allocations {peak / 2**20:6.0f} MiB (tracemalloc)")
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
        print(f"memory   process peak RSS {rss:.0f} MiB (fixtures and results included)")


def main(argv: list[str]) -> None:
    sizes = [int(arg) for arg in argv] or [100_000, 1_000_000]
    for n in sizes:
        bench(n, measure_memory=n == max(sizes))


if __name__ == "__main__":
    main(sys.argv[1:])
