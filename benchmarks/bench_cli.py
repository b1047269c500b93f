"""End-to-end CLI benchmark beside the floor: prints figures and the targets, asserts nothing.

Every measurement is a new process, timed from its start to its exit, with its own peak RSS
(``ru_maxrss`` of that one child, from ``wait4``):

- ``first``: ``flask --app benchmarks/cli_app.py csvdirectory sync Users.csv Employees.csv`` on
  an empty directory (N employees in 200 teams, 1,000 users: ``bench_sync.py``'s files);
- ``no-op``: the same command again, nothing to change;
- ``changed``: then a file with 5,000 people changed (title) and 500 dropped (deactivated);
- ``floor``: ``benchmarks/bench_floor.py`` (csv module + one-transaction executemany into
  equivalent tables: the example platform's columns, constraints and indexes) on the same
  Employees.csv, on an empty database of the same kind; the targets' ratio is to this floor;
- ``bare floor``: the same with ``--bare`` (only the primary keys and a unique email), printed
  for reference: what the host's indexes and foreign keys cost every importer.

Each size and stack runs ``--repeat`` times, the repetitions interleaved (all sizes and stacks
once, then again), and the medians are printed with the ratio to the floor of the same run.

Usage::

    python benchmarks/bench_cli.py --rows 10000 --repeat 1              # quick look, SQLite
    python benchmarks/bench_cli.py --db postgresql+psycopg://postgres@127.0.0.1:5432/test_x
    python benchmarks/bench_cli.py --rows 10000,100000,1000000 --repeat 3 \\
        --db postgresql+psycopg://postgres@127.0.0.1:5432/test_x        # the full benchmark

``--db`` adds PostgreSQL (its ``public`` schema is emptied before every first import); SQLite
always runs unless ``--no-sqlite``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_sync import TEAMS, USERS, employees_file, users_file  # noqa: E402

FLASK = str(Path(sys.executable).parent / "flask")
CHANGED, DROPPED = 5_000, 500
#: A fixed key: the benchmark's files are generated, never secret.
ENCRYPTION_KEY = "wCW0hYRmH2ZKhrGUkcr-hVFjCOhOjMkJ4xDFXPvuwS8="
SCENARIOS = ("first", "no-op", "changed")


@dataclass
class Figures:
    """Wall seconds, CPU seconds and peak RSS (MB) of each repetition of one measurement."""

    seconds: list[float] = field(default_factory=list)
    cpu_seconds: list[float] = field(default_factory=list)
    rss_mb: list[float] = field(default_factory=list)

    def add(self, seconds: float, cpu_seconds: float, rss_mb: float) -> None:
        self.seconds.append(seconds)
        self.cpu_seconds.append(cpu_seconds)
        self.rss_mb.append(rss_mb)

    @property
    def median_seconds(self) -> float:
        return statistics.median(self.seconds)

    @property
    def median_cpu_seconds(self) -> float:
        return statistics.median(self.cpu_seconds)

    @property
    def median_rss_mb(self) -> float:
        return statistics.median(self.rss_mb)


def measure(argv: list[str], env: dict[str, str], log: Path) -> tuple[float, float, float]:
    """Run ``argv`` as a new process: its wall seconds, its CPU seconds (user + system: less
    disturbed by a busy machine than wall time) and its own peak RSS in MB.

    Fails with the process's output when it exits non-zero.
    """
    with open(log, "wb") as out:
        actions = [
            (os.POSIX_SPAWN_DUP2, out.fileno(), 1),
            (os.POSIX_SPAWN_DUP2, out.fileno(), 2),
        ]
        started = time.perf_counter()
        pid = os.posix_spawn(argv[0], argv, env, file_actions=actions)
        _, status, usage = os.wait4(pid, 0)
        elapsed = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(argv)} failed:\n{log.read_text(errors='replace')}")
    return elapsed, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024  # Linux: KB


def changed_file(rows: int) -> bytes:
    """``employees_file(rows)`` with the first 5,000 titles changed and the last 500 dropped."""
    header, *lines = employees_file(rows).split(b"\r\n")
    lines = [line for line in lines if line]
    kept = lines[: max(len(lines) - DROPPED, 0)]
    for index in range(min(CHANGED, len(kept))):
        kept[index] = kept[index].replace(b",Associate", b",Senior Associate")
    return b"\r\n".join([header, *kept, b""])


def empty_database(url: str) -> None:
    """Drop everything in a PostgreSQL database's ``public`` schema (SQLite: a new file)."""
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).unlink(missing_ok=True)
        return
    import psycopg

    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://")) as connection:
        connection.execute("DROP SCHEMA public CASCADE")
        connection.execute("CREATE SCHEMA public")


class Stack:
    """One database kind: the URLs of its CLI and floor databases and the commands to run."""

    def __init__(self, name: str, cli_url: str, floor_url: str, workdir: Path) -> None:
        self.name, self.cli_url, self.floor_url, self.workdir = name, cli_url, floor_url, workdir
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("CSVDIRECTORY_")}
        self.env.pop("REDIS_URL", None)
        self.env.update(
            FLASK_APP=str(HERE / "cli_app.py"),
            DATABASE_URL=cli_url,
            SECRET_KEY="bench",
            CSVDIRECTORY_ENCRYPTION_KEYS=ENCRYPTION_KEY,
            BENCH_INSTANCE=str(workdir / "instance"),
            PYTHONPATH=str(ROOT),
        )

    def cli(self, *args: str) -> list[str]:
        return [FLASK, "csvdirectory", *args]

    def run_once(self, rows: int, files: dict[str, Path], results: dict[str, Figures]) -> None:
        """Floor, then first import, no-op and changed re-sync, each a process of its own."""
        log = self.workdir / "last.log"
        empty_database(self.floor_url)
        floor = [sys.executable, str(HERE / "bench_floor.py"), str(files["employees"]),
                 "--db", self.floor_url]
        results["floor"].add(*measure(floor, self.env, log))
        empty_database(self.floor_url)
        results["bare floor"].add(*measure([*floor, "--bare"], self.env, log))
        empty_database(self.cli_url)
        measure(self.cli("settings", "enable"), self.env, log)  # creates the tables
        users = str(files["users"])
        for scenario, employees in (
            ("first", files["employees"]), ("no-op", files["employees"]),
            ("changed", files["changed"]),
        ):
            results[scenario].add(*measure(self.cli("sync", users, str(employees)), self.env, log))
            if "Auto-Approved" not in log.read_text(errors="replace"):
                raise SystemExit(f"{scenario} did not apply:\n{log.read_text(errors='replace')}")


TARGETS = {  # (stack, rows, scenario) -> (max seconds, max floor ratio, max MB), None: no target
    ("sqlite", 100_000, "first"): (2.0, 2.5, None),
    ("sqlite", 100_000, "no-op"): (1.0, None, None),
    ("sqlite", 1_000_000, "first"): (15.0, None, 1024.0),
    ("sqlite", 1_000_000, "no-op"): (None, None, 600.0),
    ("postgresql", 1_000_000, "first"): (None, None, 1024.0),
    ("postgresql", 1_000_000, "no-op"): (None, None, 600.0),
}


def verdict(stack: str, rows: int, scenario: str, figures: Figures, floor: float) -> str:
    target = TARGETS.get((stack, rows, scenario))
    if target is None:
        return ""
    seconds, ratio, megabytes = target
    parts = []
    if seconds is not None:
        parts.append(f"< {seconds:g} s {'met' if figures.median_seconds < seconds else 'MISSED'}")
    if ratio is not None:
        met = figures.median_seconds <= ratio * floor
        parts.append(f"<= {ratio:g}x floor {'met' if met else 'MISSED'}")
    if megabytes is not None:
        met = figures.median_rss_mb < megabytes
        parts.append(f"< {megabytes:g} MB {'met' if met else 'MISSED'}")
    return "target " + ", ".join(parts)


def report(stack: str, rows: int, results: dict[str, Figures], repeat: int) -> None:
    floor = results["floor"].median_seconds
    print(
        f"[{stack}] {rows:,} employees + {USERS:,} users, {TEAMS} teams "
        f"(medians of {repeat}; wall s, CPU s of the process, peak RSS MB):"
    )
    bare = results["bare floor"].median_seconds
    for name, label in (("floor", "floor (csv + executemany)"), ("bare floor", "  bare tables")):
        base = results[name]
        print(
            f"  {label:28} {base.median_seconds:7.2f} s {base.median_cpu_seconds:6.2f} cpu"
            f" {base.median_rss_mb:6.0f} MB"
        )
    for scenario in SCENARIOS:
        figures = results[scenario]
        label = {"first": "first import", "no-op": "no-op re-sync",
                 "changed": f"changed re-sync ({CHANGED:,}/{DROPPED})"}[scenario]
        print(
            f"  {label:28} {figures.median_seconds:7.2f} s {figures.median_cpu_seconds:6.2f} cpu"
            f" {figures.median_rss_mb:6.0f} MB"
            f"  {figures.median_seconds / floor:5.1f}x floor"
            f" ({figures.median_seconds / bare:4.1f}x bare)"
            f"  {verdict(stack, rows, scenario, figures, floor)}".rstrip()
        )
    print(f"  (all runs, s: { {k: v.seconds for k, v in results.items()} })")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--rows", default="10000,100000,1000000",
        help="comma-separated Employees.csv sizes (default: 10000,100000,1000000)",
    )
    parser.add_argument("--repeat", type=int, default=3, help="interleaved runs per figure")
    parser.add_argument(
        "--db", default=os.environ.get("BENCH_DATABASE_URL"),
        help="a PostgreSQL URL to benchmark too (its public schema is emptied, the floor's too)",
    )
    parser.add_argument("--no-sqlite", action="store_true", help="PostgreSQL only")
    parser.add_argument("--json", type=Path, help="also write every figure to this file")
    args = parser.parse_args()
    sizes = [int(value.replace("_", "")) for value in args.rows.split(",")]

    workdir = Path(tempfile.mkdtemp(prefix="csvd-bench-cli-"))
    try:
        stacks = []
        if not args.no_sqlite:
            stacks.append(Stack(
                "sqlite", f"sqlite:///{workdir}/cli.sqlite3", f"sqlite:///{workdir}/floor.sqlite3",
                workdir,
            ))
        if args.db:  # the floor shares the database: its tables are dropped before each run
            stacks.append(Stack("postgresql", args.db, args.db, workdir))
        print(f"flask-csvdirectory CLI benchmark ({os.cpu_count()} cores), sizes {sizes}, "
              f"{args.repeat} interleaved runs")
        files: dict[int, dict[str, Path]] = {}
        for rows in sizes:
            files[rows] = {"users": workdir / "Users.csv",
                           "employees": workdir / f"Employees-{rows}.csv",
                           "changed": workdir / f"Employees-{rows}-changed.csv"}
            files[rows]["users"].write_bytes(users_file())
            files[rows]["employees"].write_bytes(employees_file(rows))
            files[rows]["changed"].write_bytes(changed_file(rows))
        results = {
            (stack.name, rows): {name: Figures() for name in ("floor", "bare floor", *SCENARIOS)}
            for stack in stacks for rows in sizes
        }
        for _ in range(args.repeat):
            for rows in sizes:
                for stack in stacks:
                    stack.run_once(rows, files[rows], results[stack.name, rows])
        for (stack_name, rows), figures in results.items():
            report(stack_name, rows, figures, args.repeat)
        if args.json:
            args.json.write_text(json.dumps(
                {f"{s}/{r}": {k: vars(v) for k, v in f.items()} for (s, r), f in results.items()},
                indent=1,
            ))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
