"""Review benchmark: what the risk-first review costs on large change sets. Prints figures.

Two parts:

1. **Page latency** (``--pages``, the default): a run of about 100k changes waiting for approval,
   recorded as the runs are (``runs._record_plan``: index, encrypted pages, search text) on the
   example platform, then the dashboard run page and the API ``changes`` page requested through
   the Flask test client: page 1, the last page, a kind filter and a search. The same change set
   stored the old way (one encrypted blob plus the people index, read through the fallback) is
   timed beside it, with the figures measured before paging (issue 14). Each request's peak
   Python allocation (tracemalloc) is printed too.
2. **Pure review functions** (``--functions``): ``describe_people`` (plan time), the people
   index, ``summarize`` + ``confirmation``, ``select`` with a search and ``changes_csv``.

Usage::

    python benchmarks/bench_review.py                          # page latency, SQLite, 100k
    python benchmarks/bench_review.py --db postgresql+psycopg://postgres@127.0.0.1:5432/test
    python benchmarks/bench_review.py --changes 300000
    python benchmarks/bench_review.py --functions --people 100000
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import tracemalloc
from datetime import timedelta
from pathlib import Path
from typing import Any

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

#: Measured before paging (issue 14, SQLite, 100k-change run waiting for approval).
BEFORE = {
    "dashboard page 1": "1.42 s",
    "dashboard last page": "1.17 s",
    "API changes?page=1": "1.41 s",
    "CLI summary after a run (20 lines)": "1.17 s",
}


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


# -- page latency -----------------------------------------------------------------------------


def _record_waiting_run(changes: ChangeSet, snapshot: DirectorySnapshot, legacy: bool) -> str:
    """A run waiting for approval with ``changes`` stored paged (as runs record plans now) or
    as one blob with its people index (as runs recorded them before paging)."""
    from flask_csvdirectory import runs
    from flask_csvdirectory.extension import get_state
    from flask_csvdirectory.models import Phase, RunStatus, SyncRun, utcnow

    state = get_state()
    run = SyncRun(org="default", channel="api", status=RunStatus.PROCESSING.value,
                  uploaded_by_name="bench", started_at=utcnow())
    state.session.add(run)
    state.session.flush()
    started = time.perf_counter()
    if legacy:
        canonical = changes.to_json()
        state.store.put(state.session, run, "changeset", "changes.json.z",
                        changes.to_bytes(canonical))
        people = review.describe_people(changes, snapshot)
        state.store.put(state.session, run, "people", "people.json.z", people.to_bytes())
        run.change_count = changes.count
        run.structural_change_count = changes.structural_count
        run.change_counts = changes.counts()
        run.fingerprint = changes.fingerprint(canonical)
    else:
        runs._record_plan(run, changes, snapshot)
    run.status = RunStatus.WAITING.value
    run.phase = Phase.DONE.value
    state.session.commit()
    label = "old format: one blob + people" if legacy else "paged: index + pages + search"
    print(f"  recorded ({label:<31}) {time.perf_counter() - started:8.3f} s")
    return str(run.id)


def _time_request(
    client: Any, url: str, headers: dict[str, str], repeat: int
) -> tuple[float, float, float]:
    """Median and best seconds over ``repeat`` requests, and the peak traced allocation (MB) of
    one."""
    response = client.get(url, headers=headers)  # warm (templates, statement cache)
    assert response.status_code == 200, (url, response.status_code, response.text[:300])
    seconds = []
    for _ in range(repeat):
        started = time.perf_counter()
        response = client.get(url, headers=headers)
        seconds.append(time.perf_counter() - started)
        assert response.status_code == 200
    tracemalloc.start()
    client.get(url, headers=headers)
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    return statistics.median(seconds), min(seconds), peak


def bench_pages(size: int, db_url: str | None, repeat: int, legacy: bool) -> None:
    from example_app import create_app, seed
    from example_app.models import db
    from flask_csvdirectory import tokens
    from flask_csvdirectory.extension import get_state
    from flask_csvdirectory.models import metadata as own_metadata

    workdir = tempfile.mkdtemp(prefix="csvd-bench-review-")
    app = create_app(
        {
            "SQLALCHEMY_DATABASE_URI": db_url or f"sqlite:///{workdir}/bench.sqlite3",
            "SECRET_KEY": "bench",
            "TESTING": True,
            "WTF_CSRF_ENABLED": False,
            "CSVDIRECTORY_JOBS_MODE": "sync",
            "CSVDIRECTORY_MIN_SYNC_INTERVAL": timedelta(0),
        },
        instance_path=workdir,
    )
    # people for a change set of about ``size`` changes (4 per ten people, see changeset())
    people = size * 10 // 4
    snapshot, changes = directory(people), changeset(people)
    with app.app_context():
        if db_url:  # start from empty tables on a shared server
            db.session.remove()
            own_metadata.drop_all(db.engine)
            db.drop_all()
            db.create_all()
            own_metadata.create_all(db.engine)
            seed()
        dialect = db.engine.dialect.name
        print(f"[{dialect}] a run waiting for approval with {changes.count:,} changes")
        paged_id = _record_waiting_run(changes, snapshot, legacy=False)
        legacy_id = _record_waiting_run(changes, snapshot, legacy=True) if legacy else None
        _token, plaintext = tokens.create_token("default", "bench", "bench")
        config = get_state().config
        prefix, api = config["URL_PREFIX"], config["API_URL_PREFIX"]
        cli_figures = [_time_cli_summary(paged_id, repeat)]
        if legacy_id is not None:
            cli_figures.append(_time_cli_summary(legacy_id, max(1, repeat // 3)))
    del snapshot, changes
    client = app.test_client()
    response = client.post("/login", data={"email": "admin@example.com", "password": "admin"})
    assert response.status_code == 302, response.text
    auth = {"Authorization": f"Bearer {plaintext}"}
    per_review, per_api = 50, 100
    review_pages = -(-size // per_review)
    print(f"  {'request (median of ' + str(repeat) + ')':<44} {'paged':>9} {'best':>7} "
          f"{'peak alloc':>10}" + (f" {'old format':>11} {'peak alloc':>10}" if legacy else "")
          + f"  {'before paging (issue 14)':>24}")
    requests = [
        ("dashboard page 1", "{prefix}/runs/{run}", {}),
        ("dashboard last page", "{prefix}/runs/{run}?page={last}", {}),
        ("dashboard kind filter (moved) page 2", "{prefix}/runs/{run}?kind=employee_moved&page=2",
         {}),
        ("dashboard search q=team 7 page 1", "{prefix}/runs/{run}?q=team+7", {}),
        ("API changes?page=1", "{api}/imports/{run}/changes?page=1&per_page=100", auth),
        ("API changes last page", "{api}/imports/{run}/changes?page={api_last}&per_page=100",
         auth),
        ("API changes?kind=employee_moved&page=50",
         "{api}/imports/{run}/changes?kind=employee_moved&page=50&per_page=100", auth),
    ]
    for label, template, headers in requests:
        fields = {"prefix": prefix, "api": api, "last": review_pages,
                  "api_last": -(-size // per_api)}
        url = template.format(run=paged_id, **fields)
        seconds, best, peak = _time_request(client, url, headers, repeat)
        line = f"  {label:<44} {seconds * 1000:7.1f}ms {best * 1000:5.1f}ms {peak:8.1f}MB"
        if legacy_id is not None:
            url = template.format(run=legacy_id, **fields)
            seconds, _, peak = _time_request(client, url, headers, max(1, repeat // 3))
            line += f" {seconds * 1000:9.1f}ms {peak:8.1f}MB"
        print(line + f"  {BEFORE.get(label, '-'):>24}")
    label = "CLI summary after a run (20 lines)"
    (seconds, best), *old = cli_figures
    line = f"  {label:<44} {seconds * 1000:7.1f}ms {best * 1000:5.1f}ms {'':>10}"
    if old:
        line += f" {old[0][0] * 1000:9.1f}ms {'':>10}"
    print(line + f"  {BEFORE[label]:>24}")


def _time_cli_summary(run_id: str, repeat: int) -> tuple[float, float]:
    """What ``flask csvdirectory sync`` prints after a run (counts and 20 changes), from the
    stored change set: median and best seconds."""
    import contextlib
    import io

    from flask_csvdirectory.cli import _print_plan, _stored_plan
    from flask_csvdirectory.extension import get_state
    from flask_csvdirectory.models import SyncRun

    session = get_state().session
    seconds = []
    for _ in range(repeat):
        session.expire_all()
        started = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):
            _print_plan(_stored_plan(session.get(SyncRun, run_id)), 20)
        seconds.append(time.perf_counter() - started)
    return statistics.median(seconds), min(seconds)


# -- pure review functions ----------------------------------------------------------------------


def timed(label: str, action):  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    result = action()
    print(f"  {label:<38} {time.perf_counter() - started:8.3f} s")
    return result


def bench_functions(size: int) -> None:
    snapshot, changes = directory(size), changeset(size)
    print(f"{size:,} people, {changes.count:,} changes")
    people = timed("describe_people (plan time)", lambda: review.describe_people(changes,
                                                                                snapshot))
    stored = timed("People.to_bytes", people.to_bytes)
    print(f"  {'people index stored (compressed)':<38} {len(stored) / 1e6:8.2f} MB")
    timed("People.from_bytes (old run page)", lambda: review.People.from_bytes(stored))
    text = timed("summarize + confirmation",
                 lambda: review.confirmation(review.summarize(changes, people)))
    print(f"  {'confirmation length':<38} {len(text):8d} chars")
    found = timed("select q='team 7' (a search)",
                  lambda: review.select(changes, people, query="team 7"))
    print(f"  {'matches':<38} {len(found):8d}")
    timed("changes_csv (the download)", lambda: review.changes_csv(changes.changes, people))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--changes", type=int, default=100_000,
                        help="about how many changes the waiting run has (page latency)")
    parser.add_argument("--db", default=os.environ.get("BENCH_DATABASE_URL"),
                        help="a PostgreSQL URL (its tables are dropped); default SQLite")
    parser.add_argument("--repeat", type=int, default=9, help="requests per figure (median)")
    parser.add_argument("--no-legacy", action="store_true",
                        help="skip timing the old single-blob format beside the pages")
    parser.add_argument("--functions", action="store_true",
                        help="time the pure review functions instead")
    parser.add_argument("--people", type=int, action="append")
    args = parser.parse_args()
    if args.functions:
        for size in args.people or [100_000, 1_000_000]:
            bench_functions(size)
        return
    print(f"flask-csvdirectory review page benchmark ({os.cpu_count()} cores)")
    bench_pages(args.changes, args.db, args.repeat, legacy=not args.no_legacy)


if __name__ == "__main__":
    main()
