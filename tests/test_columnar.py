"""The columnar reader (Arrow) gives exactly what the Python reader gives: rows, values, every
error with its line, column and value, the row count; and it steps aside for the files it
cannot read the same way."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flask_csvdirectory import columnar, formats
from flask_csvdirectory.adapter import ExtraColumn, FieldLimit
from flask_csvdirectory.rows import EmployeeRow, ParsedFile, UserRow

from .factories import EMPLOYEE_HEADER, employee, employees_csv, to_csv

LIMITS = {"first_name": FieldLimit(12), "email": FieldLimit(40), "title": FieldLimit(20)}


@pytest.fixture
def columnar_used(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[bool]]:
    """Small files go through the columnar path; the list records each read's outcome."""
    monkeypatch.setattr(columnar, "MIN_BYTES", 0)
    outcomes: list[bool] = []
    read = columnar.read_cells

    def recording(*args: object, **kwargs: object) -> object:
        try:
            result = read(*args, **kwargs)  # type: ignore[arg-type]
        except columnar.NotColumnar:
            outcomes.append(False)
            raise
        outcomes.append(True)
        return result

    monkeypatch.setattr(columnar, "read_cells", recording)
    yield outcomes


def parse_both(
    monkeypatch: pytest.MonkeyPatch, data: bytes, **kwargs: object
) -> tuple[ParsedFile[EmployeeRow], ParsedFile[EmployeeRow]]:
    """(columnar, Python) results of the same Employees.csv."""
    monkeypatch.setattr(columnar, "MIN_BYTES", 0)
    fast = formats.parse_employees(data, **kwargs)  # type: ignore[arg-type]
    monkeypatch.setattr(columnar, "MIN_BYTES", 1 << 60)
    slow = formats.parse_employees(data, **kwargs)  # type: ignore[arg-type]
    monkeypatch.setattr(columnar, "MIN_BYTES", 0)
    return fast, slow


def same(fast: ParsedFile[EmployeeRow] | ParsedFile[UserRow], slow: object) -> None:
    assert isinstance(slow, ParsedFile)
    assert fast.rows == slow.rows
    assert fast.errors == slow.errors
    assert (fast.row_count, fast.error_count) == (slow.row_count, slow.error_count)
    assert fast.teams_of_invalid_rows == slow.teams_of_invalid_rows


HOSTILE_CELLS = [
    "plain",
    "  padded  ",
    "Zoë",
    "\u3000wide space\u3000",
    "tab\tinside",
    "=1+2",
    "-cmd",
    "a,b",
    'say "hi"',
    "x" * 30,
    "",
    "   ",
    "ＡＢＣ",
    "zero\u200bwidth",
    "bidi\u202eevil",
    "line\x0bfeed",
    "€",
]
HOSTILE_EMAILS = [
    "ok@example.com",
    "UPPER@Example.COM",
    "  spaced@example.com ",
    "zoë@exämple.com",
    "bad@",
    "@bad.com",
    "two@@example.com",
    "dots..here@example.com",
    "x" * 70 + "@example.com",
    "ok@example..com",
    "ok@-example.com",
    "раypal@example.com",
    "zero\u200bwidth@example.com",
    "ａ@example.com",
    "ada.lovelace@example.com",  # the template's example row
    "dup@example.com",
    "dup@example.com",
    "",
]


def test_hostile_cells_read_alike(
    monkeypatch: pytest.MonkeyPatch, columnar_used: list[bool]
) -> None:
    rows = []
    for n, email in enumerate(HOSTILE_EMAILS):
        for m, cell in enumerate(HOSTILE_CELLS):
            rows.append(
                employee(
                    n * 100 + m,
                    email=email if m == 0 else f"p{n}.{m}@example.com",
                    first_name=cell,
                    title=HOSTILE_CELLS[-1 - m],
                    employee_id="E1" if (n, m) in ((2, 3), (5, 6)) else cell,
                    team=cell,
                )
            )
    fast, slow = parse_both(monkeypatch, employees_csv(rows), limits=LIMITS)
    same(fast, slow)
    assert columnar_used and all(columnar_used)
    assert fast.error_count > 50 and fast.rows


def test_valid_file_reads_alike_in_several_slices(
    monkeypatch: pytest.MonkeyPatch, columnar_used: list[bool]
) -> None:
    monkeypatch.setattr(columnar, "BLOCK_BYTES", 300)
    rows = [employee(n, team=f"Team {n % 3}", title="" if n % 5 else "Lead") for n in range(50)]
    rows[20]["email"] = rows[3]["email"].upper()  # a duplicate across slices
    rows[33]["employee_id"] = rows[4]["employee_id"]
    fast, slow = parse_both(monkeypatch, employees_csv(rows))
    same(fast, slow)
    assert columnar_used == [True]
    assert [e.line for e in fast.errors] == [22, 35]


@pytest.mark.parametrize(
    "text",
    [
        # quoted cells spanning lines: the Python reader keeps the line numbers right
        'email,first_name,last_name,team\na@x.com,"Ann\nMarie",B,T\nbad,C,D,T\n',
        # a blank line, a lone CR, text after a closing quote, a space before a quote
        "email,first_name,last_name,team\na@x.com,A,B,T\n\nbad,C,D,T\n",
        "email,first_name,last_name,team\ra@x.com,A,B,T\rbad,C,D,T\r",
        'email,first_name,last_name,team\na@x.com,"A"x,B,T\nbad,C,D,T\n',
        'email,first_name,last_name,team\na@x.com, "A,B",C,T\n',
        # an unclosed quote at the end, a short row, an extra cell, trailing empty cells
        'email,first_name,last_name,team\na@x.com,A,B,T\nb@x.com,"C,D,T\n',
        "email,first_name,last_name,team\na@x.com,A,B\nb@x.com,C,D,T\n",
        "email,first_name,last_name,team\na@x.com,A,B,T,X\n",
        "email,first_name,last_name,team\na@x.com,A,B,T,,\n",
        "email,first_name,last_name,team,,\na@x.com,A,B,T,,\n",
        # header trouble: duplicates, unknown columns, missing required ones, a blank first line
        "email,email,first_name,last_name,team\na@x.com,b@x.com,A,B,T\n",
        "email,first_name,last_name,team,shoe_size\na@x.com,A,B,T,44\n",
        "email,first_name,team\na@x.com,A,T\n",
        "\nemail,first_name,last_name,team\na@x.com,A,B,T\n",
        # semicolons and tabs, CRLF, a BOM, a file without a final line break, blank rows
        "email;first_name;last_name;team\r\na@x.com;A;B;T\r\n",
        "\ufeffemail\tfirst_name\tlast_name\tteam\na@x.com\tA\tB\tT",
        "email,first_name,last_name,team\na@x.com,A,B,T\n,,,\n  , ,,\nb@x.com,C,D,T\n",
        'email,first_name,last_name,team\n"a@x.com","A ""Al""",B,"T, U"\n',
    ],
)
def test_odd_files_read_alike(monkeypatch: pytest.MonkeyPatch, text: str) -> None:
    same(*parse_both(monkeypatch, text.encode()))


def test_other_encodings_and_nul_read_alike(monkeypatch: pytest.MonkeyPatch) -> None:
    text = "email,first_name,last_name,team\nzoë@x.com,Zoë,B,T\n"
    for data in (
        text.encode("utf-16"),
        text.encode("latin-1"),
        text.encode() + b"c@x.com,\x00,D,T\n",
        b"",
    ):
        same(*parse_both(monkeypatch, data))


def test_extra_columns_read_alike(monkeypatch: pytest.MonkeyPatch) -> None:
    from marshmallow import fields, validate

    extra = [
        ExtraColumn("cost_center", fields.String(validate=validate.Length(max=4))),
        ExtraColumn("level", fields.Integer(load_default=None)),
    ]
    header = [*EMPLOYEE_HEADER, "cost_center", "level"]
    rows = [
        [*employee(n).values(), cc, level]
        for n, (cc, level) in enumerate([("A1", "3"), ("TOOLONG", "x"), ("", ""), ("B2", "7")])
    ]
    limits = {"cost_center": FieldLimit(3)}
    same(*parse_both(monkeypatch, to_csv(header, rows), extra_columns=extra, limits=limits))


def test_users_read_alike(monkeypatch: pytest.MonkeyPatch, columnar_used: list[bool]) -> None:
    rows = [
        ["admin@example.com", "Ada", "Admin", "*"],
        ["m@example.com", "Max", "manager", "Sales; Ops;sales"],
        ["n@example.com", "", "Manager", ""],
        ["o@example.com", "Olga", "Boss", "Sales"],
        ["admin@example.com", "Ada", "Admin", ""],
    ]
    data = to_csv(["email", "name", "role", "teams"], rows)
    fast = formats.parse_users(data)
    monkeypatch.setattr(columnar, "MIN_BYTES", 1 << 60)
    same(fast, formats.parse_users(data))
    assert columnar_used == [True]


CELL = st.text(
    alphabet=st.sampled_from(list('ab Z@.,;"\t\n\r\u00e9\u200b\u3000=-É0')), max_size=8
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=st.lists(st.lists(CELL, min_size=4, max_size=4), max_size=8))
def test_random_files_read_alike(rows: list[list[str]]) -> None:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["email", "first_name", "last_name", "team"])
    for row in rows:
        writer.writerow([f"{row[0]}@x.com" if row[0].isalnum() else row[0], *row[1:]])
    data = out.getvalue().encode()
    with pytest.MonkeyPatch.context() as monkeypatch:
        same(*parse_both(monkeypatch, data, limits=LIMITS))


def test_trouble_found_while_streaming_falls_back_to_the_python_reader(
    monkeypatch: pytest.MonkeyPatch, columnar_used: list[bool]
) -> None:
    """A record far down the file with another number of cells: the columnar read stops there
    and the Python reader reads the whole file again (no row or error is doubled)."""
    monkeypatch.setattr(columnar, "BLOCK_BYTES", 300)
    text = employees_csv(employee(n) for n in range(40)).decode()
    text += "late@example.com,E9,Late,Row,Sales\n" + "dup@example.com,E1,A,B,Sales,T\n"
    fast, slow = parse_both(monkeypatch, text.encode())
    same(fast, slow)
    assert columnar_used[0] is True  # the stream started, then gave up
    assert len(fast.rows) == 41 and [e.line for e in fast.errors] == [42]
