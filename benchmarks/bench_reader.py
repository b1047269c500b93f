"""Time and memory of reading and validating a large Employees.csv (generated in memory).

Usage, from the repository root: python -m benchmarks.bench_reader [ROWS ...]
(default: 100000 1000000)

For each size: wall and CPU seconds for the Python reader alone, for parse+validate by the
Python reader (the path of small and unusual files) and for parse+validate by the columnar
reader (pyarrow; what a large well-formed file gets), best of a few runs, without tracing;
then the peak memory traced during parse+validate, not counting the input bytes, and how much
of it the returned rows hold (tracemalloc, in a separate run since tracing slows allocation
down), and the process's maximum RSS (input generation included).
"""

from __future__ import annotations

import gc
import io
import resource
import sys
import time
import tracemalloc

from flask_csvdirectory import columnar
from flask_csvdirectory.formats import employees_format, parse_employees
from flask_csvdirectory.reader import ErrorLog, read_table

TEAMS = [f"Team {n}" for n in range(60)]
TITLES = ["Engineer", "Senior Engineer", "Manager", "Analyst", "Director", ""]


def make_employees_csv(rows: int) -> bytes:
    """An Employees.csv of ``rows`` valid rows, about 80 bytes each."""
    out = io.StringIO()
    out.write("email,employee_id,first_name,last_name,team,title\r\n")
    for n in range(rows):
        out.write(
            f"firstname{n % 997}.lastname{n}@example.com,E{n:08d},Firstname{n % 997},"
            f"Lastname{n % 5003},{TEAMS[n % 60]},{TITLES[n % 6]}\r\n"
        )
    return out.getvalue().encode()


def read_only(data: bytes) -> int:
    """Just the reader: decode, split and trim every record."""
    file_format = employees_format()
    log = ErrorLog(file_format.name)
    table = read_table(data, log, columns=file_format.names, required=file_format.required_names)
    for _record in table:
        pass
    return table.row_count


def best_seconds(function, data: bytes, runs: int) -> tuple[float, float]:
    """Best (wall, CPU) seconds of ``runs`` calls; CPU time is steadier on a shared machine."""
    wall = cpu = float("inf")
    for _ in range(runs):
        gc.collect()
        wall_start, cpu_start = time.perf_counter(), time.process_time()
        function(data)
        wall = min(wall, time.perf_counter() - wall_start)
        cpu = min(cpu, time.process_time() - cpu_start)
    return wall, cpu


def main(sizes: list[int]) -> None:
    print(f"python {sys.version.split()[0]}")
    for rows in sizes:
        data = make_employees_csv(rows)
        runs = 3 if rows <= 200_000 else 1
        parsed = parse_employees(data)
        assert parsed.ok and len(parsed.rows) == rows, parsed.errors[:3]
        del parsed
        reader_s = best_seconds(read_only, data, runs)
        columnar_bytes, columnar.MIN_BYTES = columnar.MIN_BYTES, 1 << 60
        python_s = best_seconds(parse_employees, data, runs)
        columnar.MIN_BYTES = columnar_bytes
        parse_s = best_seconds(parse_employees, data, runs)
        gc.collect()
        tracemalloc.start()
        parsed = parse_employees(data)
        _, peak = tracemalloc.get_traced_memory()
        kept, _ = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        del parsed
        max_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(
            f"{rows:>9,} rows, {len(data) / 1e6:5.1f} MB:"
            f" reader {reader_s[0]:5.2f} s wall / {reader_s[1]:5.2f} s CPU;"
            f" parse+validate (Python reader) {python_s[0]:5.2f} s wall / {python_s[1]:5.2f} s CPU;"
            f" parse+validate (columnar) {parse_s[0]:5.2f} s wall / {parse_s[1]:5.2f} s CPU"
            f" ({parse_s[1] / rows * 1e6:.1f} us/row CPU);"
            f" traced peak {peak / 1e6:5.1f} MB, of which result rows {kept / 1e6:5.1f} MB;"
            f" max RSS so far {max_rss:5.0f} MB"
        )


if __name__ == "__main__":
    main([int(arg) for arg in sys.argv[1:]] or [100_000, 1_000_000])
