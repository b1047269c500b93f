"""Review benchmark: what the risk-first review costs on large change sets. Prints figures.

A directory of N people (200 teams, 1,000 with dashboard access) and a change set touching a
tenth of them in each of: deactivated, moved, updated; plus N/10 created and the access changes.
Timed: ``describe_people`` (at plan time), the people index's size stored (compressed),
``summarize`` + ``confirmation`` (each run page), ``select`` with a search (a filtered page) and
``changes_csv`` (the download).

Usage::

    python benchmarks/bench_review.py                 # 100k and 1M people
    python benchmarks/bench_review.py --people 250000
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from flask_csvdirectory import review  # noqa: E402
from flask_csvdirectory.changes import Change, ChangeKind, ChangeSet  # noqa: E402
from flask_csvdirectory.records import (  # noqa: E402
    AccessRecord,
    DirectorySnapshot,
    PersonRecord,
    Role,
    TeamRecord,
)


def directory(size: int) -> DirectorySnapshot:
    people = [
        PersonRecord(str(n), f"p{n}@example.com", f"First{n}", f"Last{n}", "Associate",
                     f"Team {n % 200}")
        for n in range(size)
    ]
    access = [
        AccessRecord(f"p{n}@example.com", Role.ADMIN if n % 10 == 0 else Role.MANAGER,
                     ("*",) if n % 10 == 0 else (f"Team {n % 200}",))
        for n in range(0, 1000)
    ]
    return DirectorySnapshot.build(people, [TeamRecord(str(t), f"Team {t}") for t in range(200)],
                                   access)


def changeset(size: int) -> ChangeSet:
    tenth = size // 10
    changes: list[Change] = []
    for n in range(tenth):
        changes.append(Change(ChangeKind.EMPLOYEE_DEACTIVATED, f"p{n}@example.com", str(n),
                              {"active": True}, {"active": False}))
        m = n + tenth
        changes.append(Change(ChangeKind.EMPLOYEE_MOVED, f"p{m}@example.com", str(m),
                              {"team": f"Team {m % 200}"}, {"team": "Team 1"}))
        u = n + 2 * tenth
        changes.append(Change(ChangeKind.EMPLOYEE_UPDATED, f"p{u}@example.com", str(u),
                              {"title": "Associate"}, {"title": "Lead"}))
        changes.append(Change(ChangeKind.EMPLOYEE_CREATED, f"new{n}@example.com", None, None,
                              {"email": f"new{n}@example.com", "first_name": "N",
                               "last_name": str(n), "title": "", "team": "Team 2",
                               "external_id": None, "extra": {}}))
    for n in range(0, 1000, 2):
        changes.append(Change(ChangeKind.ACCESS_REVOKED, f"p{n}@example.com", str(n),
                              {"role": "Admin" if n % 10 == 0 else "Manager", "teams": ["*"]}))
    return ChangeSet.of(changes)


def timed(label: str, action):  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    result = action()
    print(f"  {label:<38} {time.perf_counter() - started:8.3f} s")
    return result


def bench(size: int) -> None:
    snapshot, changes = directory(size), changeset(size)
    print(f"{size:,} people, {changes.count:,} changes")
    people = timed("describe_people (plan time)", lambda: review.describe_people(changes,
                                                                                snapshot))
    stored = timed("People.to_bytes", people.to_bytes)
    print(f"  {'people index stored (compressed)':<38} {len(stored) / 1e6:8.2f} MB")
    timed("People.from_bytes (each run page)", lambda: review.People.from_bytes(stored))
    text = timed("summarize + confirmation (each page)",
                 lambda: review.confirmation(review.summarize(changes, people)))
    print(f"  {'confirmation length':<38} {len(text):8d} chars")
    found = timed("select q='team 7' (a search)",
                  lambda: review.select(changes, people, query="team 7"))
    print(f"  {'matches':<38} {len(found):8d}")
    timed("changes_csv (the download)", lambda: review.changes_csv(changes.changes, people))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--people", type=int, action="append")
    for size in parser.parse_args().people or [100_000, 1_000_000]:
        bench(size)


if __name__ == "__main__":
    main()
