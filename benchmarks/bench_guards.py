"""Time the guards (guards.evaluate) on large directories: prints figures, asserts nothing.

Usage, from the repository root: python benchmarks/bench_guards.py [PEOPLE ...]
(default: 100000 1000000)

Two plans per size: ``quiet`` (1,000 title edits) and ``mass`` (10 % of the people deactivated
and their access revoked where they have some, one of the 50 admins among them). Times are CPU
seconds, best of 3.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from flask_csvdirectory.changes import Change, ChangeKind, ChangeSet  # noqa: E402
from flask_csvdirectory.guards import GuardContext, evaluate  # noqa: E402
from flask_csvdirectory.records import (  # noqa: E402
    AccessRecord,
    DirectorySnapshot,
    PersonRecord,
    Role,
)


def directory(size: int) -> DirectorySnapshot:
    people = [
        PersonRecord(str(n), f"person{n}@example.com", "F", "L", "Analyst", f"Team {n % 200}")
        for n in range(size)
    ]
    access = [AccessRecord(f"person{n}@example.com", Role.ADMIN, person_key=str(n))
              for n in range(50)]
    access += [AccessRecord(f"person{n}@example.com", Role.MANAGER, (f"Team {n % 200}",),
                            person_key=str(n)) for n in range(50, 1050)]
    return DirectorySnapshot.build(people, [], access)


def plans(size: int) -> dict[str, ChangeSet]:
    quiet = ChangeSet.of(
        Change(ChangeKind.EMPLOYEE_UPDATED, f"person{n}@example.com", str(n),
               {"title": "Analyst"}, {"title": "Senior Analyst"})
        for n in range(1000)
    )
    gone = range(size - size // 10 - 1, size)
    mass = [Change(ChangeKind.EMPLOYEE_DEACTIVATED, f"person{n}@example.com", str(n),
                   {"active": True}, {"active": False}) for n in gone]
    mass += [Change(ChangeKind.EMPLOYEE_DEACTIVATED, "person0@example.com", "0",
                    {"active": True}, {"active": False}),
             Change(ChangeKind.ACCESS_REVOKED, "person0@example.com", "0",
                    {"role": "Admin", "teams": ["*"]})]
    return {"quiet": quiet, "mass": ChangeSet.of(mass)}


def main(sizes: list[int]) -> None:
    print(f"python {sys.version.split()[0]}")
    for size in sizes:
        snapshot = directory(size)
        for name, changeset in plans(size).items():
            best = float("inf")
            for _ in range(3):
                started = time.process_time()
                reasons = evaluate(GuardContext(changeset, snapshot, uploader_key="1",
                                                employees_rows=size - size // 10))
                best = min(best, time.process_time() - started)
            guards = ", ".join(reason.guard for reason in reasons) or "none"
            print(f"{size:>10,} people  {name:5}  {len(changeset):>8,} changes  "
                  f"{best * 1000:8.1f} ms CPU  guards: {guards}")


if __name__ == "__main__":
    main([int(arg) for arg in sys.argv[1:]] or [100_000, 1_000_000])
